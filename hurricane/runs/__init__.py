"""Running a search: the step contract, the steps, records, leases, pipeline, jobs, executors.

strategies  search strategies: the steps each uses, in order (torch-free)
records     durable search records in the store: keys, state, control, summaries
leases      job leases: a job runs at most once at a time, wherever it runs
contract    what a step (one object: units, done test, finish, job, traits) and a job are;
            the step registry
steps       the steps, one module each, and their implementations (a package: importing it
            registers them, torch-free); steps.results: winners and artifacts per device
report      report.json and report.md of a finished search
purge       purging a search: stop its work, then delete, leaving a tombstone
pipeline    running steps: one unit, one step, a whole search; what comes next
jobs        the job entry point a pod or a local process runs (`hurricane job`)
executor    executors: a job in this process or as a local process (Kubernetes: operator)
unitlog     the live tail of a job's output in the store, written by the executors

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.runs import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "contract": ("Artifact", "every_device", "EXIT_INVALID", "JobCancelled", "JobFailed",
                 "JobInvalid", "JobSpec", "JobTransient", "Step", "STEPS", "WHOLE"),
    "executor": ("BaseExecutor", "create_executor", "PROGRESS_PREFIX", "ProgressRelay"),
    "jobs": ("job_main",),
    "leases": ("newest",),
    "pipeline": ("finish_step", "next_work", "planned_jobs", "run_search", "run_step", "run_unit",
                 "unit_job", "write_final_report"),
    "purge": ("purge_search", "sweep", "unfinished"),
    "records": ("active_searches", "guarded", "idempotency_key", "load_meta", "mark_active",
                "new_search_id", "now", "owned_searches", "owners", "read_control", "record_action",
                "report_key", "result_key", "SEARCH_STATES", "SearchConflict", "SearchNotFound",
                "SearchPurged", "stop_requested", "stored_spec", "submit", "summarize", "TERMINAL",
                "write_step_state", "write_unit_state"),
    "report": ("verdict_words",),
    "strategies": ("STRATEGIES",),
    "unitlog": ("UnitLog", "unit_log_key"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
