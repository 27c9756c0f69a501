"""The step contract: named steps of (spec, search_id, store, executor), idempotent, and the
embedded runner that loops over a strategy's steps."""

from __future__ import annotations

import datetime as dt
import secrets
import time
import traceback
from collections.abc import Callable
from typing import Any

from hurricane import progress
from hurricane.executor import Executor
from hurricane.registry import Registry
from hurricane.spec import SearchSpec
from hurricane.store import ArtifactStore, search_key
from hurricane.strategies import STRATEGIES

StepFn = Callable[[SearchSpec, str, ArtifactStore, Executor], dict[str, Any]]
JobFn = Callable[[SearchSpec, str, ArtifactStore, "str | None"], None]

STEPS: Registry[StepFn] = Registry("step")
JOBS: Registry[JobFn] = Registry("job")


class SearchConflict(ValueError):
    """A search id is already taken by a different spec."""


def result_key(search_id: str, step: str) -> str:
    return search_key(search_id, step, "result.json")


def spec_key(search_id: str) -> str:
    return search_key(search_id, "spec.json")


def status_key(search_id: str) -> str:
    return search_key(search_id, "status.json")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_search_id(spec: SearchSpec) -> str:
    return f"{spec.name}-{secrets.token_hex(4)}"


def submit(spec: SearchSpec, store: ArtifactStore, search_id: str | None = None) -> str:
    """Records ``spec`` under a search id; an existing id must hold the same spec."""
    sid = search_id or new_search_id(spec)
    key = spec_key(sid)
    stored = spec.model_dump(mode="json")
    if store.exists(key):
        # compared after validation, so a spec stored before a new field existed still matches
        if SearchSpec.model_validate(store.get_json(key)).model_dump(mode="json") != stored:
            raise SearchConflict(
                f"search {sid!r} already exists with a different spec; use another --search-id "
                "(nothing stored was changed)")
    else:
        store.put_json(key, stored)
        store.put_json(status_key(sid), {"search_id": sid, "state": "submitted",
                                         "created": now(), "steps": {}})
    return sid


def load_spec(store: ArtifactStore, search_id: str) -> SearchSpec:
    return SearchSpec.model_validate(store.get_json(spec_key(search_id)))


def _update_status(store: ArtifactStore, search_id: str, step: str | None = None,
                   **fields: Any) -> None:
    key = status_key(search_id)
    status: dict[str, Any] = (store.get_json(key) if store.exists(key)
                              else {"search_id": search_id, "steps": {}})
    if step is None:
        status.update(fields)
    else:
        status["steps"].setdefault(step, {}).update(fields)
    store.put_json(key, status)


def run_step(name: str, spec: SearchSpec, search_id: str, store: ArtifactStore,
             executor: Executor) -> dict[str, Any]:
    """Runs one step unless its result already exists (then returns the stored one)."""
    key = result_key(search_id, name)
    if store.exists(key):
        return store.get_json(key)  # type: ignore[no-any-return]
    fn = STEPS.get(name)
    _update_status(store, search_id, name, state="running", started=now())
    t0 = time.perf_counter()
    try:
        out = fn(spec, search_id, store, executor)
    except BaseException as err:
        _update_status(store, search_id, name, state="failed", error=f"{type(err).__name__}: {err}",
                       seconds=round(time.perf_counter() - t0, 3))
        raise
    seconds = time.perf_counter() - t0
    out = {**out, "_meta": {"step": name, "seconds": round(seconds, 3), "finished": now(),
                            "executor": getattr(executor, "name", type(executor).__name__)}}
    store.put_json(key, out)
    _update_status(store, search_id, name, state="succeeded", seconds=round(seconds, 3))
    return out


def run_job(step: str, search_id: str, store: ArtifactStore, *, device: str | None = None) -> None:
    """The body of a pod (or local process): one step's heavy work, reading the stored spec."""
    import hurricane.steps  # noqa: F401  (registers the step and job functions)

    JOBS.get(step)(load_spec(store, search_id), search_id, store, device)


def run_search(spec: SearchSpec, store: ArtifactStore, executor: Executor,
               search_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The embedded runner: submits (or resumes) a search and runs its strategy's steps."""
    import hurricane.steps  # noqa: F401
    from hurricane.report import write_report

    sid = submit(spec, store, search_id)
    steps = STRATEGIES.get(spec.strategy).plan(spec)
    _update_status(store, sid, state="running", strategy=spec.strategy, plan=list(steps))
    for i, name in enumerate(steps, 1):
        progress.message(f"[{i}/{len(steps)}] {name}")
        try:
            run_step(name, spec, sid, store, executor)
        except BaseException as err:
            _update_status(store, sid, state="failed", failed_step=name,
                           error=f"{type(err).__name__}: {err}",
                           traceback=traceback.format_exc(limit=5))
            raise
    report = write_report(spec, sid, store)
    _update_status(store, sid, state="succeeded", finished=now())
    return sid, report
