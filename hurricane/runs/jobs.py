"""The job entry point: what a pod (or a local process) runs for one step of one search, and
the exit codes that tell its caller whether to retry."""

from __future__ import annotations

import logging
import os
import signal
import traceback

from hurricane.runs.contract import EXIT_INVALID, EXIT_TRANSIENT
from hurricane.runs.records import SearchNotFound, SearchPurged, guarded, stored_spec
from hurricane.storage.store import ArtifactStore, StoreUnavailable
from hurricane.storage.stores import open_store

log = logging.getLogger("hurricane.jobs")


def run_job(step: str, search_id: str, store: ArtifactStore, *, device: str | None = None) -> None:
    """One step's heavy work for one device (or all), reading the stored spec. Its writes go
    through the search's guard: once the search is purged the job stops at its next write
    (SearchPurged) and nothing lands in the purged prefix."""
    from hurricane.runs.steps.results import step_of  # importing the steps registers them

    store = guarded(store, search_id)
    step_of(step).job_function()(stored_spec(store, search_id), search_id, store, device)


def invalid_input_errors() -> tuple[type[BaseException], ...]:
    """Failures that running the job again cannot fix: the spec, the budget, the device."""
    from hurricane.latency.backends import DeviceUnavailable
    from hurricane.search.evolution import InfeasibleBudget
    from hurricane.spec import SpecError

    return (SpecError, InfeasibleBudget, DeviceUnavailable, SearchNotFound, ValueError)


def job_main(step: str, search_id: str, store_url: str, device: str | None) -> int:
    """Runs the job and maps its failure onto an exit code: 0 done, 65 invalid input (never
    retried), 75 object store unreachable (retried), 1 anything else."""
    from hurricane.nets.distributed import finish
    from hurricane.nets.train import Preempted

    try:
        run_job(step, search_id, open_store(store_url), device=device)
        finish()
    except Preempted as err:
        # asked to stop (SIGTERM) and stopped at a checkpoint: end the way SIGTERM ends a
        # process, so callers see a signal (Kubernetes: an evicted or disrupted pod; the local
        # executor: a transient failure, retried) and never a failed job
        log.warning("job %s/%s: %s", step, device or "all", err)
        logging.shutdown()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return EXIT_TRANSIENT
    except StoreUnavailable as err:
        log.error("job %s/%s: %s", step, device or "all", err)
        return EXIT_TRANSIENT
    except SearchPurged as err:  # or its record is gone: either way nothing more is written
        log.warning("job %s/%s: %s", step, device or "all", err)
        return EXIT_INVALID
    except invalid_input_errors() as err:
        log.error("job %s/%s: invalid input: %s: %s", step, device or "all",
                  type(err).__name__, err)
        return EXIT_INVALID
    except Exception:  # the traceback is the job's last output
        log.error("job %s/%s failed:\n%s", step, device or "all", traceback.format_exc())
        return 1
    return 0
