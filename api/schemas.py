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
    measured_latency_ms: float | None = None
    budget_ms: float | None = None


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
    cancelled_at: str | None = None


class SearchSummary(BaseModel):
    search_id: str
    name: str
    owner: str
    strategy: str
    state: str
    created: str
    finished: str | None = None
    devices: list[str]


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
