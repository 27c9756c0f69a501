"""The step contract: what a step is (units of work, their jobs, a finish, its traits), what a
job is, and the registry steps are found in. Depends on nothing but the spec, the device
profiles and the store (torch-free: the API and the operator read steps' traits)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hurricane.registry import Registry
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore

# Exit codes of `hurricane job` that tell the caller what kind of failure it was.
EXIT_INVALID = 65  # EX_DATAERR: the input cannot work (spec, budget, table): never retried
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the object store was unreachable: retry later
WHOLE = "ALL"  # the unit name of a step that runs one job for all devices (device names are lowercase)


@dataclass(frozen=True)
class JobSpec:
    """A unit of work that a pod (or a local process) runs: one step of one search, for one
    device or all of them. Fully described by its command and environment."""

    search_id: str
    step: str
    store_url: str
    device: str | None = None
    nprocs: int = 1  # processes per node (torchrun when > 1)
    nodes: int = 1  # nodes (pods) of a distributed job
    max_restarts: int = 0  # torchrun restarts of all ranks after one failed
    node_label: str | None = None  # a device pool (hurricane.io/device): a measuring job
    resources: dict[str, str] = field(default_factory=dict)  # extended resources it needs
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "-".join(p for p in (self.search_id, self.step, self.device) if p)

    @property
    def unit(self) -> str:
        return self.device or WHOLE

    def command(self) -> list[str]:
        cmd = ["python", "-m", "hurricane", "job", self.step, "--search", self.search_id,
               "--store", self.store_url]
        return [*cmd, "--device", self.device] if self.device else cmd


class JobFailed(RuntimeError):
    """A job exited unsuccessfully; the message carries the tail of its log."""


class JobInvalid(JobFailed):
    """A job refused its input (exit code 65): running it again cannot help."""


class JobTransient(JobFailed):
    """A job lost its object store or its process (signal, exit code 75): worth a retry."""


class JobCancelled(RuntimeError):
    """The search was cancelled while the job ran; the job was stopped."""


class Executor(Protocol):
    name: str

    def run(self, job: JobSpec) -> None: ...


UnitsFn = Callable[[SearchSpec, str, ArtifactStore], list[str]]
DoneFn = Callable[[SearchSpec, str, ArtifactStore, str], bool]
FinishFn = Callable[[SearchSpec, str, ArtifactStore], dict[str, Any]]
# a step's stored result -> {label: one supernet training's entry (iterations, loss_curve,
# final_loss, quality)}
SupernetsFn = Callable[[dict[str, Any]], dict[str, dict[str, Any]]]
JobFn = Callable[[SearchSpec, str, ArtifactStore, "str | None"], None]
Pool = Literal["device", "training"]


def _no_units(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    return []


def _never_done(spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> bool:
    return False


def every_device(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """One unit per target device."""
    return [d.name for d in spec.devices]


def searched_devices(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """One unit per device with its own search (not served by a proxy device)."""
    return [d.name for d in spec.devices if d.proxy is None]


def one_unit(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """One unit for the whole search (WHOLE)."""
    return [WHOLE]


def resolve(ref: Any) -> Any:
    """``ref`` itself, or for a ``"module:attribute"`` string the attribute it names, imported
    on first use: a step's declaration stays torch-free (the API reads it) while its job and
    finish live beside the torch code they call."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"not a 'module:attribute' reference: {ref!r}")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Artifact:
    """A file a step publishes for each device: ``name`` (what `hurricane fetch` saves it as)
    and its key under the search, ``key`` formatted with ``device``. ``reported``: listed in
    report.json's artifacts (metrics.json is fetched, its numbers are in the report itself)."""

    name: str
    key: str
    reported: bool = True

    def of(self, device: str) -> str:
        return self.key.format(device=device)


@dataclass(frozen=True)
class Step:
    """A pipeline step, declared in one place with everything the planner, the job runner,
    the Kubernetes manifests, the report and the API need to know of it.

    Its heavy work is split into units (a device name, or WHOLE): each unit is one job, done
    once its outputs exist in the store; units of a step are independent (the service runs
    them in parallel, the embedded runner in turn). ``finish`` runs after every unit is done:
    it reads their outputs (and may compute light work in process) and returns the step's
    result, which is stored once. ``units``, ``done``, ``finish`` and ``run`` (the job function
    a pod runs for one unit) are functions or ``"module:function"`` references (:func:`resolve`).

    Traits: ``pool`` where its jobs run (``device``: the unit's device node pool, measuring;
    ``training``: anywhere on the training pool); ``distributed``: launched by torchrun with
    the spec's ``training`` world; ``reads_images``: gets the dataset volume and shard cache;
    ``winner``: its result's ``devices`` map holds each device's architecture (``winner``,
    ``supernet_accuracy``, ``latency_ms``, ``budget_ms``), a later winner step's replacing an
    earlier one's; ``artifacts``: the files it publishes per device; ``planned_units``: its
    units when planned ahead of the results they depend on (at most); ``supernets``: the
    supernet trainings its result holds, by label (the report's iterations and quality)."""

    name: str
    finish: FinishFn | str
    units: UnitsFn | str = _no_units
    done: DoneFn | str = _never_done
    run: JobFn | str | None = None
    pool: Pool = "training"
    distributed: bool = False
    reads_images: bool = False
    winner: bool = False
    artifacts: tuple[Artifact, ...] = ()
    planned_units: UnitsFn | str | None = None
    supernets: SupernetsFn | str | None = None

    def supernet_runs(self, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The supernet trainings in this step's ``result``, by label (none for most steps)."""
        return {} if self.supernets is None else resolve(self.supernets)(result)  # type: ignore[no-any-return]

    def unit_names(self, spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
        return resolve(self.units)(spec, search_id, store)  # type: ignore[no-any-return]

    def is_done(self, spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> bool:
        return bool(resolve(self.done)(spec, search_id, store, unit))

    def result(self, spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
        return resolve(self.finish)(spec, search_id, store)  # type: ignore[no-any-return]

    def job_function(self) -> JobFn:
        if self.run is None:
            raise LookupError(f"step {self.name} runs no job")
        return resolve(self.run)  # type: ignore[no-any-return]

    def pending(self, spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
        return [u for u in self.unit_names(spec, search_id, store)
                if not self.is_done(spec, search_id, store, u)]

    def units_at_most(self, spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
        """The units a search of ``spec`` may run, before any result exists: its units when
        they depend on nothing stored, else ``planned_units`` (default: one per device)."""
        try:
            return self.unit_names(spec, search_id, store)
        except Exception:  # needs results of earlier steps: every unit it may run
            return resolve(self.planned_units or every_device)(spec, search_id, store)  # type: ignore[no-any-return]

    def job(self, spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> JobSpec:
        """The job of one unit: on the unit's device pool (``pool="device"``) or the training
        pool, with the spec's torchrun world when ``distributed``."""
        if self.run is None:
            raise LookupError(f"step {self.name} runs no job")
        from hurricane.latency.devices import device_profile

        device = None if unit == WHOLE else unit
        prof = None
        if device is not None and self.pool == "device":
            target = next(d for d in spec.devices if d.name == device)
            prof = device_profile(device, table=str(target.table) if target.table else None)
        t, d = spec.training, self.distributed
        return JobSpec(search_id=search_id, step=self.name, store_url=store.url, device=device,
                       node_label=prof.node_label if prof else None,
                       resources=dict(prof.resources) if prof else {},
                       nprocs=t.processes_per_node if d else 1, nodes=t.nodes if d else 1,
                       max_restarts=t.max_restarts if d else 0)


STEPS: Registry[Step] = Registry("step")
"""Every step, by name: importing ``hurricane.runs.steps`` registers the built-in ones."""

