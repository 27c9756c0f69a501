"""Response schemas, one per direction (what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProgressPublic(_Open):
    description: str
    completed: int
    total: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    updated: float | None = None


class UnitPublic(_Open):
    state: str = Field(description="queued, running, retrying, succeeded, failed, cancelled")
    reason: str | None = Field(None, description="why a queued unit waits, e.g. Kueue's "
                               "message: no quota yet, or evicted (preempted)")
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    queued_s: float | None = Field(None, description="seconds spent waiting for admission")
    evictions: int | None = Field(None, description="times its job was evicted after running")
    attempt: int | None = None
    error: str | None = None
    progress: ProgressPublic | None = None


class StepPublic(_Open):
    state: str = Field(description="pending, running, queued (its jobs wait for admission, "
                       "e.g. by Kueue; see reason; also after a resume), succeeded, failed")
    reason: str | None = Field(None, description="why a queued step waits")
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list, description="e.g. a supernet that did "
                                "not learn: its ranking is unreliable")
    units: dict[str, UnitPublic] = Field(default_factory=dict, description="per device (or ALL)")


class DevicePublic(_Open):
    step: str | None = Field(None, description="the search step that found the architecture")
    arch: str | None = None
    supernet_top1: float | None = None
    top1: float | None = Field(None, description="test top-1 of the retrained winner")
    predicted_latency_ms: float | None = None
    measured_latency_ms: float | None = Field(None, description="the median of the final "
                                              "check's rounds")
    latency_check: dict[str, Any] | None = Field(
        None, description="the final check: verdict (within, over, inconclusive), median_ms, "
        "low_ms/high_ms (the interval at confidence), rounds_ms, spread, reason")
    budget_ms: float | None = None


class SupernetVerdict(_Open):
    reliable: bool = Field(description="every test passed: the supernet's ranking can be "
                           "trusted to pick among architectures")
    tests: dict[str, bool] = Field(default_factory=dict, description="learned (mean accuracy "
                                   "above the floor), consistent (split-half rank agreement), "
                                   "stable (rank agreement with the check before)")
    accuracy_mean: float | None = None
    split_half_rho: float | None = Field(None, description="rank agreement of random "
                                         "architectures' scores on two halves of the "
                                         "validation split under two BN recalibrations")
    consistency_needed: float | None = None
    stability_rho: float | None = None
    stability_needed: float | None = None
    iterations: int | None = Field(None, description="iterations the supernet trained")
    warning: str | None = Field(None, description="what failed and what to change")


class SearchPublic(BaseModel):
    search_id: str
    name: str
    owner: str
    strategy: str
    state: str = Field(description="queued, running, succeeded, failed, cancelled")
    created: str
    finished: str | None = None
    generation: int = Field(description="runs so far: one more per resume")
    plan: list[str]
    targets: list[str] = Field(description="the target devices")
    steps: dict[str, StepPublic]
    devices: dict[str, DevicePublic]
    failed_step: str | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list, description="what makes the result "
                                "doubtful though the search ran, e.g. a supernet that did not "
                                "learn (its winner is close to a random pick)")
    supernets: dict[str, SupernetVerdict] = Field(
        default_factory=dict, description="each supernet training's ranking verdict, by its "
        "label (stage1, stage2 (<arch>), proxyless (<device>)); absent until measured")
    cancelled_at: str | None = None


class StepsDone(BaseModel):
    done: int = Field(description="steps succeeded")
    total: int = Field(description="steps in the plan")


class DeviceResult(BaseModel):
    top1: float | None = Field(None, description="test top-1 of the retrained winner")
    latency_ms: float | None = Field(None, description="measured if known, else predicted")
    budget_ms: float | None = None


class SearchSummary(BaseModel):
    search_id: str
    name: str
    owner: str
    strategy: str
    state: str
    created: str
    finished: str | None = None
    devices: list[str]
    progress: StepsDone
    results: dict[str, DeviceResult] = Field(description="per target device")


class SearchesPublic(BaseModel):
    data: list[SearchSummary]
    count: int
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class SearchCreated(BaseModel):
    search_id: str
    state: str
    location: str
    created: bool = Field(description="false when an Idempotency-Key replayed an earlier POST")


class ArtifactPublic(BaseModel):
    key: str = Field(description="relative to the search (e.g. retrain/cpu/final.pt)")
    size: int | None = None
    sha256: str | None = None
    url: str = Field(description="a time-limited download URL (presigned)")


class ArtifactsPublic(BaseModel):
    data: list[ArtifactPublic]
    count: int
    expires_s: int


class TableImported(BaseModel):
    name: str
    layers: int
    ops: list[str]
    entries: int
    fixed_ms: float
    imported_by: str
    owner: str | None = Field(None, description="whose table it is; null: shared by an admin")
    shared: bool = False


class TablePublic(BaseModel):
    name: str
    owner: str | None = Field(None, description="whose table it is; null: shared by an admin")
    shared: bool
    imported_by: str | None = None
    imported_at: str | None = None
    table: dict[str, Any] = Field(description="device, fixed_ms, ops {layer: {op: ms}}, iqr")


# -- insights (GET /v1/searches/{id}/insights) ---------------------------------------------------

class SupernetInsight(_Open):
    loss_curve: list[list[float]] = Field(default_factory=list, description="[iteration, "
                                          "mean training loss] pairs, at most 200")
    iterations: int | None = None
    final_loss: float | None = None
    quality: dict[str, Any] | None = Field(None, description="random architectures scored "
                                           "through the supernet: reliable, accuracy_mean, "
                                           "split_half_rho, tests, accuracies (by arch), …")


class EvolutionInsight(_Open):
    budget_ms: float | None = None
    evaluated: int | None = Field(None, description="architectures scored through the supernet")
    history: list[dict[str, Any]] = Field(default_factory=list, description="per iteration: "
                                          "iteration, evaluated, best_accuracy, best_arch")
    pareto: list[dict[str, Any]] = Field(default_factory=list, description="arch, accuracy, "
                                         "latency_ms of the accuracy/latency Pareto set")
    top: list[dict[str, Any]] = Field(default_factory=list, description="the best under budget")
    rescored: dict[str, Any] | None = None


class SpaceInsight(_Open):
    kind: str = Field(description="pool, hardware or manual")
    num_layers: int
    ops: list[str]
    choices: list[list[str]] = Field(description="the candidate ops of each layer")
    scores: dict[str, dict[str, dict[str, float | None]]] | None = Field(
        None, description="hardware space: {device: {layer: {op: Eq. 2 score}}}")
    chosen: dict[str, list[list[str]]] | None = Field(
        None, description="hardware space: {device the space was generated for: choices}")


class TableInsight(_Open):
    fixed_ms: float
    ops: dict[str, dict[str, float]] = Field(description="{layer: {op: ms}}")
    source: str = Field(description="profiled (measured by the search) or imported")


class PredictorPoint(_Open):
    arch: str
    measured_ms: float
    predicted_ms: float
    table_ms: float | None = None
    split: str = Field(description="train (fitted on) or test (held out)")


class PredictorInsight(_Open):
    metrics: dict[str, float | None] | None = Field(None, description="held out: mape, "
                                                    "within_10pct, srcc, max_ape")
    table_sum: dict[str, float | None] | None = None
    points: list[PredictorPoint] = Field(default_factory=list)


class CorrelationInsight(_Open):
    devices: list[str]
    srcc: list[list[float | None]] | None = Field(None, description="rows and columns in "
                                                  "devices' order")
    source: str | None = Field(None, description="measured (the predictor step's "
                               "architectures) or tables (sampled, priced by each table)")
    proxy: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per device "
                                             "served by a proxy: proxy, k, srcc, action, …")


class LayerInsight(_Open):
    index: int
    op: str
    kernel: int
    expansion: int
    se: bool
    stride: int
    cin: int
    cout: int
    hw: int = Field(description="input height and width")
    macs: int
    params: int


class WinnerInsight(DevicePublic):
    macs: int | None = Field(None, description="multiply-adds of one image, whole network")
    params: int | None = None
    layers: list[LayerInsight] | None = None


class InsightsPublic(_Open):
    search_id: str
    strategy: str
    state: str
    supernets: dict[str, SupernetInsight] = Field(description="per supernet training")
    evolution: dict[str, dict[str, EvolutionInsight]] = Field(description="{step: {device: …}}")
    space: SpaceInsight | None = None
    tables: dict[str, TableInsight] = Field(description="per device")
    predictors: dict[str, PredictorInsight] = Field(description="per measured device")
    correlation: CorrelationInsight | None = Field(None, description="two devices or more")
    winners: dict[str, WinnerInsight] = Field(description="per device")


class UnitLogPublic(_Open):
    step: str
    unit: str
    state: str = Field(description="the unit's state (pending before it ran)")
    attempt: int | None = None
    lines: list[str] = Field(description="the newest lines, oldest first")
    updated: float | None = Field(None, description="when the tail was written (Unix time)")
    exit_code: int | None = Field(None, description="once the job ended")
