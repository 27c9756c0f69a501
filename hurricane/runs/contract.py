"""The step contract: what a step is (units of work, their jobs, a finish), what a job is, and
the registries steps and jobs are found in. Depends on nothing but the spec and the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
JobOfFn = Callable[[SearchSpec, str, ArtifactStore, str], JobSpec]
FinishFn = Callable[[SearchSpec, str, ArtifactStore], dict[str, Any]]
JobFn = Callable[[SearchSpec, str, ArtifactStore, "str | None"], None]


def _no_units(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    return []


def _never_done(spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> bool:
    return False


def _no_job(spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> JobSpec:
    raise LookupError("this step runs no job")


@dataclass(frozen=True)
class Step:
    """A pipeline step. Its heavy work is split into units (a device name, or WHOLE): each
    unit is one job, done once its outputs exist in the store; units of a step are
    independent (the service runs them in parallel, the embedded runner in turn). ``finish``
    runs after every unit is done: it reads their outputs (and may compute light work in
    process) and returns the step's result, which is stored once."""

    name: str
    finish: FinishFn
    units: UnitsFn = _no_units
    done: DoneFn = _never_done
    job: JobOfFn = _no_job

    def pending(self, spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
        return [u for u in self.units(spec, search_id, store)
                if not self.done(spec, search_id, store, u)]


STEPS: Registry[Step] = Registry("step")
JOBS: Registry[JobFn] = Registry("job")
