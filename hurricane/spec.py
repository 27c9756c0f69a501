"""SearchSpec: the user's description of one search, loaded from YAML or JSON."""

from __future__ import annotations

import itertools
import json
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hurricane.nets.oppool import OPS

DatasetName = Literal["digits", "cluttered-digits", "imagefolder", "cifar10", "packed"]
KNOWN_CLASSES = {"digits": 10, "cluttered-digits": 10, "cifar10": 10}

# Hard bounds on counts that nothing legitimate comes near (operators set tighter admission
# limits in the settings): a number no loop, tensor or RNG can take never gets in.
BIG = 2**31 - 1
LayerCount = Annotated[int, Field(gt=0, le=64)]
Channels = Annotated[int, Field(gt=0, le=16_384)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where images come from and how they are split. A search names a source every process
    can reach: bundled data, a directory (on a cluster: a mounted volume), or a packed set
    in object storage (``s3://bucket/prefix``, on the artifact store's endpoint)."""

    name: DatasetName = Field(
        "digits", description="digits (bundled, easy), cluttered-digits (bundled, generated: each "
        "digit on a larger field among fragments of others, plus noise; hard enough that "
        "architectures differ), imagefolder, cifar10, packed (shards written by `hurricane "
        "dataset pack`, streamed)")
    path: str | None = Field(
        None,
        description="imagefolder: a directory with train/ (and optional val/ or test/) "
        "class folders; cifar10: the extracted cifar-10-batches-py directory; packed: a "
        "directory or s3://bucket/prefix holding index.json",
    )
    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="share of the training images held out for search "
        "(not for packed sets: their index fixes the splits)"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5,
        description="share held out for the final test when the dataset has no test split "
        "(not for packed sets)",
    )
    augment: bool = Field(True, description="random crop + flip (cifar10, imagefolder, packed)")
    copies: int = Field(3, ge=1, le=20, description="cluttered-digits: renderings of each of "
                        "the 1,797 bundled digits")
    eval_copies: int | None = Field(
        None, ge=1, le=40, description="cluttered-digits: renderings of each validation and "
        "test digit (at least copies; default: copies). The first copies are those of every "
        "digit, the rest are drawn apart; more make the search's scores and the final test "
        "steadier without adding training images")
    num_workers: int = Field(0, ge=0, le=64, description="packed: DataLoader worker processes "
                             "that read, decode and augment batches (0: in the training process)")
    shuffle_window: int | None = Field(
        None, ge=1, le=1_000_000, description="packed: shards whose images are shuffled together (a node's "
        "shard cache should hold this many); default: about 1 GiB of shards. Part of the "
        "sample order: keep it when resuming")

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, v: object) -> object:
        return str(v) if isinstance(v, PurePath) else v

    @model_validator(mode="after")
    def _eval_copies(self) -> DatasetSpec:
        if self.eval_copies is not None:
            if self.name != "cluttered-digits":
                raise ValueError(f"eval_copies applies to dataset 'cluttered-digits' only, "
                                 f"not {self.name!r}; remove it")
            if self.eval_copies < self.copies:
                raise ValueError(f"eval_copies {self.eval_copies} is below copies "
                                 f"{self.copies}; allowed: {self.copies} to 40")
        return self

    @model_validator(mode="after")
    def _path_needed(self) -> DatasetSpec:
        if self.name in ("digits", "cluttered-digits"):
            return self
        if not self.path:
            raise ValueError(f"dataset {self.name!r} needs 'path' (a directory"
                             + (" or s3://bucket/prefix)" if self.name == "packed" else ")"))
        if "://" in self.path:
            scheme = self.path.split("://", 1)[0]
            if self.name != "packed" or scheme != "s3":
                allowed = ("a directory or s3://bucket/prefix" if self.name == "packed"
                           else "a directory; pack it (`hurricane dataset pack`) to read it "
                           "from object storage as dataset 'packed'")
                raise ValueError(f"path {self.path!r}: {scheme}:// is not a source for dataset "
                                 f"{self.name!r}; allowed: {allowed}")
            bucket = self.path.removeprefix("s3://").split("/", 1)[0]
            if not bucket:
                raise ValueError(f"path {self.path!r} names no bucket; allowed: "
                                 "s3://bucket/prefix")
        return self


class BackboneSpec(_Strict):
    """SPOS-style backbone: stem, 4 stages of learnable layers, head."""

    input_size: int = Field(224, ge=32, le=1024, description="square input side in pixels")
    num_classes: int = Field(1000, ge=2, le=100_000)
    layers_per_stage: tuple[LayerCount, ...] = Field((4, 4, 8, 4), min_length=1, max_length=6)
    stage_channels: tuple[Channels, ...] = Field((64, 160, 320, 640), min_length=1, max_length=6)
    stem_channels: int = Field(16, gt=0, le=16_384)
    head_channels: int = Field(1024, gt=0, le=16_384)
    width_mult: float = Field(1.0, gt=0, le=4)
    dropout: float = Field(0.1, ge=0, lt=1)
    downsample_shortcut: bool = Field(
        True, description="every candidate of a stride-2 layer gets a projection shortcut "
        "(2x2 average pool, 1x1 conv, BN) added to its output, shared by the candidates in the "
        "supernet: without it the supernet does not learn once stride-2 layers are searched "
        "(bench/supernet_learning.py); false gives the paper's plain ops")

    @model_validator(mode="after")
    def _consistent(self) -> BackboneSpec:
        if len(self.layers_per_stage) != len(self.stage_channels):
            raise ValueError(
                f"layers_per_stage has {len(self.layers_per_stage)} stages but stage_channels "
                f"has {len(self.stage_channels)}; give one channel count per stage"
            )
        chans = (self.stem_channels, *self.stage_channels)
        if any(b <= a for a, b in itertools.pairwise(chans)):
            raise ValueError(
                "stage_channels must increase strictly from stem_channels "
                f"(got {list(chans)}): ShuffleNet-style ops need cout > cin at stride 2"
            )
        down = 2 ** (len(self.stage_channels) + 1)
        if self.input_size % down:
            raise ValueError(
                f"input_size must be a multiple of {down} (stem and every stage halve it), "
                f"got {self.input_size}"
            )
        return self

    @property
    def num_layers(self) -> int:
        return sum(self.layers_per_stage)


def check_ops(ops: tuple[str, ...]) -> tuple[str, ...]:
    """Op names of a space: every one known, none repeated (the error names them)."""
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ValueError(f"unknown operator(s) {bad}; allowed: {', '.join(OPS.names())}")
    if len(set(ops)) != len(ops):
        raise ValueError("operators must not repeat")
    return ops


class SpaceSpec(_Strict):
    """Candidate operators per learnable layer."""

    kind: Literal["pool", "hardware", "manual"] = Field(
        "pool", description="pool: every op of `ops` at every layer; hardware: HURRICANE Eq. 2 "
        "on the first device's latency table; manual: SPOS's Choice_3/5/7 + ChoiceX")
    ops: tuple[str, ...] = Field(
        default_factory=lambda: tuple(OPS.names()),
        min_length=1,
        description="the operator pool; default: all 32 ops of HURRICANE Table 2",
    )
    alpha: float = Field(0.05, ge=0, le=4, description="Eq. 2 exponent of FLOPs × Params "
                         "(not given in the paper; 0.05 measured best in bench/space_latency.py)")
    top_p: int = Field(4, ge=1, le=64, description="ops kept per layer (hardware space)")
    explore_layers: int = Field(4, ge=0, le=1000, description="last layers that get an exploring op")
    explore_rule: Literal["bounded", "capacity", "next"] = Field(
        "bounded", description="how the exploring op is picked from the ops outside the top p: "
        "bounded = highest FLOPs × Params no slower than the layer's slowest chosen op; "
        "capacity = highest FLOPs × Params (METHOD.md literal); next = next-ranked by Eq. 2")

    _ops = field_validator("ops")(classmethod(lambda cls, v: check_ops(tuple(v))))

    @model_validator(mode="after")
    def _top_p(self) -> SpaceSpec:
        if self.kind == "hardware" and self.top_p > len(self.ops):
            raise ValueError(f"top_p ({self.top_p}) exceeds the {len(self.ops)} ops of the pool")
        return self


class DeviceTarget(_Strict):
    """A device to search for and its latency budget."""

    name: str = Field("cpu", pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$",
                      description="a device profile (`hurricane devices list`), or any name with 'table'")
    table: str | None = Field(
        None, min_length=1, max_length=4096,
        description="a latency table for hardware the cluster lacks: a CSV/JSON file (local "
        "runs), or 'imported' for the table imported into the service with PUT "
        "/v1/devices/{name}/table")
    latency_budget_ms: float | None = Field(None, gt=0, description="absolute budget in ms")
    budget_fraction: float | None = Field(
        None, ge=0, le=1,
        description="budget between the fastest (0) and slowest (1) architecture of the "
        "space on this device; portable across machines",
    )
    proxy: str | None = Field(
        None, description="another target whose search serves this device (one proxy device): "
        "its Pareto architectures are reused when latencies rank alike (SRCC >= "
        "one_proxy.threshold on one_proxy.samples architectures), else its latency predictor "
        "is adapted to this device and evolution reruns on its supernet")

    samples: int | None = Field(
        None, ge=3, le=1000,
        description="a new device from a few measurements: its layer table is not profiled; "
        "this many architectures (chosen to separate the known devices) are timed on it, and "
        "its latency predictor is built from every known device's table (the search's other "
        "devices, the tables imported for its owner) with those measurements deciding how to "
        "combine and correct them")

    @model_validator(mode="after")
    def _one_budget(self) -> DeviceTarget:
        if (self.latency_budget_ms is None) == (self.budget_fraction is None):
            raise ValueError("give exactly one of 'latency_budget_ms' or 'budget_fraction'")
        if self.samples is not None and (self.proxy is not None or self.table is not None):
            raise ValueError("'samples' (a few-shot device) cannot be combined with 'proxy' or "
                             "'table': a few-shot device is measured, and its prior is every "
                             "known device")
        return self


class ProfileSpec(_Strict):
    """How operators are timed on each device."""

    warmup: int = Field(5, ge=0, le=1000)
    repeats: int = Field(20, ge=3, le=10000)
    batch_size: int = Field(1, ge=1, le=256)
    threads: int = Field(1, ge=1, le=256)
    measure_final: int = Field(30, ge=0, le=10000, description="end-to-end timings of winners "
                               "per round of the final check")
    final_rounds: int = Field(3, ge=2, le=50, description="independent rounds the final check "
                              "times a winner in (each its own warm-up and repeats)")
    final_max_rounds: int = Field(7, ge=2, le=100, description="rounds the final check may add "
                                  "while the rounds spread by over 10% or their interval "
                                  "straddles the budget")
    final_confidence: float = Field(0.9, ge=0.5, lt=1, description="confidence of the final "
                                    "check's interval: within budget, over budget or "
                                    "inconclusive")

    @model_validator(mode="after")
    def _rounds(self) -> ProfileSpec:
        if self.final_max_rounds < self.final_rounds:
            raise ValueError(f"final_max_rounds ({self.final_max_rounds}) must be >= "
                             f"final_rounds ({self.final_rounds})")
        return self


class TrainSettings(_Strict):
    """SGD with momentum, linear lr decay, SPOS weight decay groups, label smoothing."""

    iterations: int = Field(150_000, ge=1, le=BIG)
    batch_size: int = Field(1024, ge=1, le=1 << 20)
    lr: float = Field(0.5, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0, description="none on BatchNorm and biases")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    checkpoint_every: int = Field(1000, ge=1, le=BIG)
    keep_checkpoints: int = Field(2, ge=1, le=1000)
    threads: int | None = Field(None, ge=1, le=1024, description="torch threads; default: all cores")


class PredictorSpec(_Strict):
    """The latency predictor: architectures measured end to end on each device, then fitted."""

    enabled: bool = Field(True, description="fit one per measurable device (tables need none)")
    samples: int = Field(100, ge=10, le=100_000, description="architectures measured end to end")
    holdout: float = Field(0.3, gt=0, lt=0.9, description="share held out to report accuracy")
    repeats: int = Field(10, ge=3, le=10_000, description="timed runs per architecture")
    log_target: bool | None = Field(
        None, description="fit log latency (multiplicative errors) or raw ms; null: chosen per "
        "device by leave-one-out error")
    pair_scale: float | None = Field(
        None, ge=0, le=10, description="strength of pairwise (layer, op) interactions (0: "
        "additive); null: chosen per device from 0, 0.03, 0.1, 0.3 by leave-one-out error")
    table_offset: bool | None = Field(
        None, description="the layer table's sum as the prior mean (true) or as a feature; "
        "null: chosen per device by leave-one-out error")


# Named sets of the supernet's sampling fields (``supernet.recipe``), measured against each
# other by bench/supernet_recipes.py (docs/method.md). "shrink" is the default: on the 10-layer
# recipes-deep space it took random architectures to 61.9% through the supernet at 1,000
# iterations (Kendall tau 0.54 against training them alone), where "spos" reached 26.0% (tau
# -0.16).
SUPERNET_RECIPES: dict[str, dict[str, Any]] = {
    "spos": {"sampling": "uniform", "paths": 1, "distill": False, "shrink_phases": 0,
             "shrink_until": 0.5},
    "sandwich": {"sampling": "sandwich", "paths": 4, "distill": True, "shrink_phases": 0,
                 "shrink_until": 0.5},
    "fair": {"sampling": "fair", "paths": 1, "distill": False, "shrink_phases": 0,
             "shrink_until": 0.5},
    "shrink": {"sampling": "sandwich", "paths": 4, "distill": True, "shrink_phases": 3,
               "shrink_until": 0.5},
}
Recipe = Literal["spos", "sandwich", "fair", "shrink", "custom"]
DEFAULT_RECIPE: Recipe = "shrink"
_D = SUPERNET_RECIPES[DEFAULT_RECIPE]  # the fields' defaults (the schema shows them)


def _resolve_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """Fills the sampling fields a supernet section leaves out from its ``recipe`` (default
    ``shrink``), and names the recipe the fields amount to: ``custom`` when a field given
    explicitly departs from the named one. A section that gives every sampling field and no
    recipe (a spec stored before recipes existed) keeps its fields and gets the matching name."""
    keys = SUPERNET_RECIPES[DEFAULT_RECIPE].keys()
    name = data.get("recipe")
    if name is None and all(k in data for k in keys):
        data["recipe"] = next((n for n, r in SUPERNET_RECIPES.items()
                               if all(data[k] == v for k, v in r.items())), "custom")
        return data
    name = DEFAULT_RECIPE if name is None else name
    if isinstance(name, str) and name in SUPERNET_RECIPES:
        base = SUPERNET_RECIPES[name]
        resolved = {k: data.get(k, v) for k, v in base.items()}
        if resolved["sampling"] == "fair" and "paths" not in data:
            resolved["paths"] = 1  # fair sets its own number of paths
        data.update(resolved)
        data["recipe"] = name if resolved == base else "custom"
    return data


class SupernetTrainSpec(TrainSettings):
    """Supernet training: weight sharing, how paths are sampled (``recipe``), quality checks."""

    stop_loss: float | None = Field(
        None, gt=0, description="stop a stage once the mean training loss of the last "
        "`stop_window` steps is at or below this (the paper stops each stage at SPOS's loss "
        "level); `iterations` stays the cap and the lr schedule's length")
    stop_window: int = Field(50, ge=1, le=BIG, description="steps averaged for `stop_loss`")
    sharing: Literal["none", "family", "layer"] = Field(
        "family", description="which candidates of a layer compute from the same weights: none "
        "(plain SPOS, every candidate its own), family (OFA-style: one weight per family and "
        "role, a candidate takes its channels and the centre of the kernel; one downsampling "
        "shortcut per layer), layer (family, plus one output projection for the whole "
        "layer); "
        "bench/supernet_ranking.py measures them")
    recipe: Recipe = Field(
        DEFAULT_RECIPE, description="a named set of sampling, paths, distill, shrink_phases "
        "and shrink_until (fields given explicitly override it; the spec then records "
        "'custom'): spos (uniform, 1 path), sandwich (sandwich, 4 paths, in-place "
        "distillation), fair (FairNAS), shrink (sandwich with distillation and progressive "
        "shrinking over the first half: the default, measured best by "
        "bench/supernet_recipes.py); custom: no named defaults")
    sampling: Literal["uniform", "fair", "sandwich"] = Field(
        _D["sampling"], description="paths trained per step: uniform (SPOS: `paths` random paths), "
        "fair (FairNAS: every candidate of every layer once per step, as many paths as the "
        "widest layer has candidates), sandwich (BigNAS: the largest path, the smallest and "
        "`paths` - 2 random ones); bench/supernet_recipes.py measures them")
    paths: int = Field(_D["paths"], ge=1, le=64, description="paths per step for uniform and "
                       "sandwich sampling (each a forward and backward pass; their gradients add up)")
    distill: bool = Field(
        _D["distill"], description="in-place distillation: the step's first path (sandwich: the "
        "largest; otherwise the largest path is added) learns from the labels, the others from "
        "its predictions")
    shrink_phases: int = Field(
        _D["shrink_phases"], ge=0, le=16, description="progressive shrinking (OFA): during the first "
        "`shrink_until` of the iterations, split into this many phases, phase p trains only "
        "each layer's ceil(n·p/phases) largest candidates; 0: off")
    shrink_until: float = Field(_D["shrink_until"], gt=0, lt=1, description="share of the "
                                "iterations that progressive shrinking spans")
    quality_archs: int = Field(
        10, ge=0, le=1000, description="random architectures of the stage's space scored "
        "through the trained supernet (BN recalibrated, validation split) to measure whether it "
        "learned; 0: not measured")
    quality_margin: float = Field(
        0.2, ge=0, lt=1, description="the supernet's ranking is reported unreliable when those "
        "architectures' mean accuracy is below chance + this share of the way to 100%")
    rank_consistency: float = Field(
        0.5, ge=-1, le=1, description="unreliable when two halves of the validation split, "
        "each after its own BN recalibration, rank the quality architectures with a lower "
        "Spearman correlation (evaluation noise as large as what it ranks by)")
    rank_stability: float = Field(
        0.6, ge=-1, le=1, description="unreliable when the quality architectures' ranking "
        "correlates less than this (Spearman) with the previous check's (still moving)")
    check_every: int | None = Field(
        None, ge=1, le=BIG, description="iterations between quality checks while the supernet trains "
        "(from min_iterations); null: one check after three quarters and one at the end")
    min_iterations: int = Field(0, ge=0, le=BIG, description="no quality check (so no early end) "
                                "before this many iterations")
    until_reliable: bool = Field(
        False, description="iterations become a cap: training ends at the first check whose "
        "verdict passes (learned, consistent and stable); needs check_every. The iterations "
        "used are recorded")

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        return _resolve_recipe(dict(data)) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _sampling(self) -> SupernetTrainSpec:
        if self.sampling == "sandwich" and self.paths < 2:
            raise ValueError(f"sampling 'sandwich' trains the largest and the smallest path "
                             f"each step: paths must be >= 2, got {self.paths}")
        if self.until_reliable and self.check_every is None:
            raise ValueError("until_reliable needs check_every: the iterations between the "
                             "checks that may end the training")
        if self.sampling == "fair" and self.paths != 1:
            raise ValueError("sampling 'fair' sets its own number of paths (the widest layer's "
                             f"candidates): leave paths at 1, got {self.paths}")
        return self


class OneProxySpec(_Strict):
    """Devices served by a proxy device's search (`devices[].proxy`)."""

    threshold: float = Field(0.9, gt=0, le=1, description="SRCC at or above which the "
                             "proxy's Pareto architectures are reused (one-proxy paper: 0.9)")
    samples: int = Field(60, ge=5, le=10_000, description="architectures measured on the "
                         "target (or priced on its table) to decide and to adapt")
    repeats: int = Field(10, ge=3, le=10_000, description="timed runs per architecture")


class ProxylessSpec(TrainSettings):
    """The ProxylessNAS baseline: weights (SPOS recipe, training split) and path gates
    (Adam on the validation split) trained together; one search per device."""

    iterations: int = Field(150_000, ge=1, le=BIG, description="all steps, warm-up included")
    warmup_fraction: float = Field(0.25, ge=0, lt=1, description="first share of steps that "
                                   "train weights only on uniform paths (official: 40/160 epochs)")
    arch_lr: float = Field(1e-3, gt=0, description="Adam lr of the path logits")
    arch_update_every: int = Field(5, ge=1, le=BIG, description="weight steps per architecture step")
    binary_mode: Literal["two", "full"] = Field(
        "two", description="two: two sampled candidates per layer take part in the gate "
        "gradient (ProxylessNAS' memory trick); full: every candidate")
    latency_loss: Literal["linear", "mul"] = Field(
        "linear", description="linear: CE + λ·(E[lat] − T)/T; mul: CE·(log E[lat]/log T)^β")
    latency_lambda: float = Field(0.1, ge=0, description="λ of the linear latency loss")
    latency_beta: float = Field(0.3, ge=0, description="β of the multiplicative latency loss")


class TrainingSpec(_Strict):
    """Where and how the supernet stages and the retraining run: processes per node × nodes
    (torchrun; the global batch is split across them and gradients averaged), and the GPU
    path. Evolution, profiling and ProxylessNAS run in one process."""

    nodes: int = Field(1, ge=1, le=256, description="machines (pods) per training job; a "
                       "local run has one")
    processes_per_node: int = Field(1, ge=1, le=64, description="training processes per "
                                    "node (one per GPU on a GPU node)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the process sees a GPU (cuda:LOCAL_RANK), else CPU")
    bf16: bool = Field(False, description="bfloat16 autocast (CUDA only)")
    channels_last: bool = Field(False, description="channels-last memory format (CUDA)")
    sync_bn: bool = Field(False, description="BatchNorm statistics over the global batch of all "
                          "processes, so more processes train exactly like one (two all-reduces "
                          "per BatchNorm layer and step: 0.7-0.8x the speed of one process on 2 CPU "
                          "cores, bench/ddp_scaling.py); false: each process normalises its share "
                          "(standard data parallelism; 1.7-1.8x)")
    max_restarts: int = Field(3, ge=0, le=100, description="torchrun restarts all ranks this "
                              "often after one fails; training continues from the newest checkpoint")

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


class HurricaneSpec(_Strict):
    """Algorithm 1's two stages (strategy `hurricane`)."""

    t: int | None = Field(
        None, ge=1, le=1000, description="early layers fixed to a_win0 in Stage 1 and searched in "
        "Stage 2; default 40% of the layers (8 of 20, as the paper)")
    stop_after_stage1: bool = Field(False, description="retrain Stage 1's winner (no Stage 2)")
    stage2_iterations: int | None = Field(
        None, ge=1, le=BIG, description="Stage 2 iteration cap; default supernet.iterations")
    stage2_init: Literal["stage1", "scratch"] = Field(
        "stage1", description="Stage 2 starts from Stage 1's weights for every op they share, "
        "or from scratch")


class EvolutionSpec(_Strict):
    """SPOS evolution under the latency budget."""

    iterations: int = Field(20, ge=1, le=1_000_000)
    population: int = Field(50, ge=2, le=1_000_000)
    top_k: int = Field(10, ge=1, le=1_000_000)
    crossover: int = Field(25, ge=0, le=1_000_000)
    mutation: int = Field(25, ge=0, le=1_000_000)
    mutation_prob: float = Field(0.1, gt=0, le=1)
    max_tries: int = Field(
        20_000, ge=1, le=10_000_000, description="bound on rejection-sampling attempts per generation"
    )
    bn_batches: int = Field(10, ge=1, le=100_000, description="training batches for BN recalibration")
    bn_batch_size: int = Field(256, ge=1, le=1 << 20)
    eval_batches: int | None = Field(None, ge=1, le=BIG, description="validation batches; all if unset")
    keep_top: int = Field(10, ge=1, le=10_000, description="architectures returned")
    budget_confidence: float | None = Field(
        None, ge=0.5, lt=1, description="accept an architecture only when it is within the "
        "budget with this probability under the latency predictor's calibrated interval "
        "(split conformal on its held-out architectures), e.g. 0.9; null: the point "
        "prediction decides")
    rescore: int = Field(
        5, ge=0, le=100, description="evolution's best candidates (at most keep_top) scored "
        "again, each over rescore_recalibrations BN recalibrations on the whole validation "
        "split, and re-ranked by the mean: evolution's first is the best of some hundred noisy "
        "scores; 0 or 1: off")
    rescore_recalibrations: int = Field(3, ge=1, le=32, description="BN recalibrations "
                                        "(other training batches each) per rescored candidate")
    finalists: int = Field(
        0, ge=0, le=100, description="evolution's top candidates (at most keep_top) fine-tuned "
        "alone from the supernet's weights and re-ranked by validation accuracy; 0 or 1: the "
        "supernet's order stands (the default: measured on cluttered-digits, 5 finalists x 300 "
        "steps picked no better than the supernet, bench/results/supernet_ranking_finalists.json)")
    finalist_iterations: int = Field(300, ge=1, le=BIG, description="fine-tuning steps per finalist "
                                     "(batches of supernet.batch_size)")
    finalist_lr: float = Field(0.02, gt=0, description="fine-tuning learning rate (linear decay)")

    @model_validator(mode="after")
    def _sizes(self) -> EvolutionSpec:
        if self.top_k > self.population:
            raise ValueError(f"top_k ({self.top_k}) must not exceed population ({self.population})")
        return self


class RetrainSpec(TrainSettings):
    """Training the winner from scratch, then exporting it."""

    iterations: int = Field(100_000, ge=1, le=BIG)
    batch_size: int = Field(256, ge=1, le=1 << 20)
    lr: float = Field(0.1, gt=0)
    onnx_opset: int = Field(18, ge=18, le=23)


class SearchSpec(_Strict):
    """One hardware-aware architecture search."""

    name: str = Field("search", pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
                      description="lowercase letters, digits and '-' (used in job names)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds every random choice of the "
                      "search (numpy, torch): 0 to 2^32 - 1")
    strategy: str = Field("spos", description="search strategy (`hurricane strategies`)")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)  # type: ignore[arg-type]
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)  # type: ignore[arg-type]
    space: SpaceSpec = Field(default_factory=SpaceSpec)  # type: ignore[arg-type]
    devices: tuple[DeviceTarget, ...] = Field(
        default_factory=lambda: (DeviceTarget(name="cpu", table=None, latency_budget_ms=None,
                                                  budget_fraction=0.5, proxy=None),),
        min_length=1,
    )
    profile: ProfileSpec = Field(default_factory=ProfileSpec)  # type: ignore[arg-type]
    predictor: PredictorSpec = Field(default_factory=PredictorSpec)  # type: ignore[arg-type]
    supernet: SupernetTrainSpec = Field(default_factory=SupernetTrainSpec)  # type: ignore[arg-type]
    evolution: EvolutionSpec = Field(default_factory=EvolutionSpec)  # type: ignore[arg-type]
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)  # type: ignore[arg-type]
    hurricane: HurricaneSpec = Field(default_factory=HurricaneSpec)  # type: ignore[arg-type]
    proxyless: ProxylessSpec = Field(default_factory=ProxylessSpec)  # type: ignore[arg-type]
    one_proxy: OneProxySpec = Field(default_factory=OneProxySpec)  # type: ignore[arg-type]
    training: TrainingSpec = Field(default_factory=TrainingSpec)  # type: ignore[arg-type]

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from hurricane.runs.strategies import STRATEGIES

        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy {v!r}; allowed: {', '.join(STRATEGIES.names())}")
        return v

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, v: tuple[DeviceTarget, ...]) -> tuple[DeviceTarget, ...]:
        from hurricane.latency.devices import DEVICES

        names = [d.name for d in v]
        for d in v:
            if d.table is None and d.name not in DEVICES:
                raise ValueError(f"unknown device {d.name!r}; allowed: {', '.join(DEVICES.names())}"
                                 " (or give 'table': a latency table file)")
        if len(set(names)) != len(names):
            raise ValueError(f"devices must not repeat, got {names}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _classes_from_dataset(cls, data: Any) -> Any:
        """A dataset with a known class count sets backbone.num_classes unless it is given."""
        if not isinstance(data, dict):
            return data
        ds = data.get("dataset") or {}
        name = ds.get("name", "digits") if isinstance(ds, dict) else getattr(ds, "name", None)
        bb = data.get("backbone")
        known = KNOWN_CLASSES.get(name) if isinstance(name, str) else None
        if known is None or (bb is not None and not isinstance(bb, dict)):
            return data
        if bb is None or "num_classes" not in bb:
            data = {**data, "backbone": {**(bb or {}), "num_classes": known}}
        return data

    @model_validator(mode="after")
    def _dataset_classes(self) -> SearchSpec:
        known = KNOWN_CLASSES.get(self.dataset.name)
        if known is not None and self.backbone.num_classes != known:
            raise ValueError(
                f"backbone.num_classes must be {known} for dataset {self.dataset.name!r}, "
                f"got {self.backbone.num_classes}"
            )
        return self

    @model_validator(mode="after")
    def _proxies(self) -> SearchSpec:
        searched = {d.name for d in self.devices if d.proxy is None}
        for i, d in enumerate(self.devices):
            if d.proxy is None:
                continue
            if d.proxy not in searched:
                raise ValueError(
                    f"devices[{i}].proxy must name another device of this search that has no "
                    f"proxy itself; allowed: {', '.join(sorted(searched)) or '(none)'}; "
                    f"got {d.proxy!r}")
            if self.strategy == "proxyless":
                raise ValueError(f"devices[{i}].proxy needs an evolution-based strategy "
                                 "(spos, hurricane): proxyless keeps no Pareto set to reuse")
        if self.devices[0].samples is not None and (self.space.kind == "hardware"
                                                   or self.strategy == "hurricane"):
            raise ValueError("devices[0].samples: the hardware-aware space is built from the "
                             "first device's profiled layer table; put a profiled device first, "
                             "or use space.kind pool/manual with strategy spos")
        if self.predictor.enabled is False and any(d.samples for d in self.devices):
            raise ValueError("devices[].samples needs predictor.enabled: the few-shot device's "
                             "predictor is its latency model")
        return self

    @model_validator(mode="after")
    def _topology(self) -> SearchSpec:
        t = self.training
        world = t.world_size
        if world > 1:
            for name, bs in (("supernet", self.supernet.batch_size),
                             ("retrain", self.retrain.batch_size)):
                if bs % world:
                    raise ValueError(
                        f"{name}.batch_size ({bs}) must be a multiple of the training world size "
                        f"{world} (training.nodes {t.nodes} × training.processes_per_node "
                        f"{t.processes_per_node}): each process trains on an equal share")
            if self.strategy == "proxyless":
                raise ValueError("strategy proxyless trains in one process: training.nodes and "
                                 "training.processes_per_node must be 1")
        if (t.bf16 or t.channels_last) and t.device == "cpu":
            raise ValueError("training.bf16 and training.channels_last are CUDA paths: "
                             "training.device must be cuda or auto")
        return self

    @model_validator(mode="after")
    def _two_stage_split(self) -> SearchSpec:
        n = self.backbone.num_layers
        if self.hurricane.t is not None and self.hurricane.t >= n:
            raise ValueError(f"hurricane.t must be between 1 and {n - 1} (the backbone has {n} "
                             f"learnable layers), got {self.hurricane.t}")
        return self

    @property
    def stage_split(self) -> int:
        """t of Algorithm 1: layers [0, t) are Stage 2's, [t, n) Stage 1's."""
        n = self.backbone.num_layers
        return self.hurricane.t if self.hurricane.t is not None else max(1, min(n - 1, round(0.4 * n)))


class SpecError(ValueError):
    """A spec file could not be read or is invalid; the message names each bad field."""


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(spec)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return f"{err.error_count()} error(s) in search spec:\n" + "\n".join(lines)


def parse_spec(data: Any) -> SearchSpec:
    try:
        return SearchSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err)) from None


def read_spec_file(path: str | Path) -> SearchSpec:
    """Loads a spec from a .yaml/.yml/.json file; raises SpecError with field-level messages."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise SpecError(f"cannot read spec {p}: {err.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SpecError(f"{p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a search spec is a mapping of fields, got {type(data).__name__}")
    return parse_spec(data)


def spec_schema() -> dict[str, Any]:
    return SearchSpec.model_json_schema()
