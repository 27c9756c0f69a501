"""Runs steps: one unit of a step (its job, unless its outputs exist), a whole step (its
units, then its finish, stored once), what a search needs next, and the embedded runner that
loops over a strategy's steps. The Celery tasks call exactly these functions."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from hurricane import progress
from hurricane.runs.contract import STEPS, Executor, JobCancelled, JobSpec, Step
from hurricane.runs.records import (
    SearchConflict,
    SearchPurged,
    Timer,
    guarded,
    is_purged,
    load_meta,
    mark_active,
    now,
    parse_time,
    read_control,
    read_unit_state,
    record_action,
    report_key,
    result_key,
    stop_requested,
    stored_spec,
    submit,
    summarize,
    unit_state_key,
    write_step_state,
    write_unit_state,
)
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, search_key

__all__ = [
    "STEPS",
    "SearchConflict",
    "Work",
    "next_work",
    "run_search",
    "run_step",
    "run_unit",
    "step",
    "stored_spec",
    "submit",
]


def step(name: str) -> Step:
    from hurricane.runs.steps.results import step_of  # importing the steps registers them

    return step_of(name)


def planned_jobs(spec: SearchSpec, search_id: str, store: ArtifactStore,
                 store_url: str | None = None) -> list[tuple[str, str, JobSpec]]:
    """(step, unit, job) of every job a search of ``spec`` would run, in plan order, before
    any has run (``store`` holds nothing of the search). A step whose units depend on earlier
    results (one training per distinct winner) is planned at its most: one unit per device it
    can run for. ``store_url`` replaces the jobs' store (the cluster's, for a dry run)."""
    import dataclasses

    from hurricane.runs.strategies import STRATEGIES

    out = []
    for name in STRATEGIES.get(spec.strategy).plan(spec):
        s = step(name)
        for unit in s.units_at_most(spec, search_id, store):
            job = s.job(spec, search_id, store, unit)
            if store_url is not None:
                job = dataclasses.replace(job, store_url=store_url)
            out.append((name, unit, job))
    return out


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def unit_job(spec: SearchSpec, search_id: str, store: ArtifactStore, name: str,
             unit: str) -> JobSpec:
    return step(name).job(spec, search_id, store, unit)


def run_unit(name: str, spec: SearchSpec, search_id: str, store: ArtifactStore,
             executor: Executor, unit: str, *, generation: int | None = None) -> bool:
    """Runs one unit's job unless its outputs exist; records the unit's state. True when it
    ran a job (False: already done). Failures are recorded and raised: a retryable one
    (JobTransient) as ``retrying``, the caller decides whether to try again.

    The ``running`` record is written before anything else and stands for this call until it
    ends: a purge waits for it to go. When the search is cancelled the unit ends
    ``cancelled`` (JobCancelled); when it is purged (before or while the job runs) every write
    is refused, the job is stopped and the record is deleted as the last act (SearchPurged)."""
    from hurricane.runs.contract import JobTransient

    store = guarded(store, search_id)
    s = step(name)
    if s.is_done(spec, search_id, store, unit):
        return False
    gen = read_control(store, search_id).generation if generation is None else generation
    prev = read_unit_state(store, search_id, name, unit) or {}
    attempt = int(prev.get("attempt", 0)) + 1 if prev.get("generation") == gen else 1
    timer = Timer()
    waits = _Waits()
    write_unit_state(store, search_id, name, unit, "running", generation=gen,
                     started=timer.started, attempt=attempt)

    def on_state(state: str, reason: str) -> None:  # the executor: waiting for admission, …
        waits.change(state)
        write_unit_state(store, search_id, name, unit, state, generation=gen,
                         started=timer.started, attempt=attempt, **waits.fields(),
                         **({"reason": reason} if reason else {}))

    def end(state: str, **extra: Any) -> None:
        waits.change(state)
        write_unit_state(store, search_id, name, unit, state, generation=gen,
                         started=timer.started, finished=now(), seconds=timer.seconds(),
                         attempt=attempt, **waits.fields(), **extra)

    def gone() -> SearchPurged:  # this call's record was its last word: take it back
        with contextlib.suppress(Exception):
            store.delete(unit_state_key(search_id, name, unit))
        return SearchPurged(search_id)

    try:
        # registered first, checked second: a purge that wrote its tombstone before this
        # record landed is seen here; one that came after finds the record and waits for it
        if stop_requested(store, search_id):
            raise JobCancelled(f"{name}/{unit}: the search was cancelled before its job started")
        with progress.use_state_hook(on_state):
            executor.run(s.job(spec, search_id, store, unit))
    except BaseException as err:
        if isinstance(err, SearchPurged) or _purged(store, search_id):
            raise gone() from err
        try:
            if isinstance(err, JobCancelled):
                end("cancelled", error=_error(err))
            elif isinstance(err, JobTransient):
                end("retrying", error=_error(err)[-2000:])
            else:
                end("failed", error=_error(err)[-2000:])
        except SearchPurged:
            raise gone() from err
        raise
    try:
        end("succeeded")
    except SearchPurged as err:
        raise gone() from err
    return True


def _purged(store: ArtifactStore, search_id: str) -> bool:
    """Whether the search was purged, as far as the store says now (an unreachable store: no)."""
    try:
        return is_purged(store, search_id)
    except Exception:
        return False


class _Waits:
    """Time a unit spent queued (e.g. waiting for Kueue to admit or re-admit its job) and how
    often it was evicted after running: recorded beside its wall-clock seconds."""

    def __init__(self) -> None:
        self.queued_s = 0.0
        self.evictions = 0
        self.since: float | None = None
        self.ran = False

    def change(self, state: str) -> None:
        t = time.monotonic()
        if state == "queued":
            if self.since is None:
                self.since = t
                self.evictions += self.ran
        else:
            if self.since is not None:
                self.queued_s += t - self.since
                self.since = None
            self.ran |= state == "running"

    def fields(self) -> dict[str, Any]:
        queued = self.queued_s + (time.monotonic() - self.since if self.since is not None else 0)
        out: dict[str, Any] = {}
        if queued or self.since is not None:
            out["queued_s"] = round(queued, 3)
        if self.evictions:
            out["evictions"] = self.evictions
        return out


def _step_timer(store: ArtifactStore, search_id: str, name: str, generation: int) -> Timer:
    """A step finished apart from its units (the service): its time runs from its first
    unit's start in this generation, so a step's seconds are wall time wherever it ran."""
    starts = []
    for unit in store.children(search_key(search_id, "state", name)):
        st = read_unit_state(store, search_id, name, unit.removesuffix(".json")) or {}
        if st.get("generation") == generation and st.get("started"):
            starts.append(str(st["started"]))
    if not starts:
        return Timer()
    first = min(starts)
    return Timer(started=first, t0=time.perf_counter() - (time.time() - parse_time(first)))


def finish_step(name: str, spec: SearchSpec, search_id: str, store: ArtifactStore, *,
                executor_name: str, timer: Timer | None = None,
                generation: int | None = None) -> dict[str, Any]:
    """Every unit is done: computes the step's result and stores it once (a concurrent
    finisher's result wins and is returned)."""
    key = result_key(search_id, name)
    if store.exists(key):
        return store.get_json(key)  # type: ignore[no-any-return]
    gen = read_control(store, search_id).generation if generation is None else generation
    timer = timer or _step_timer(store, search_id, name, gen)
    try:
        out = step(name).result(spec, search_id, store)
    except BaseException as err:
        write_step_state(store, search_id, name, "failed", generation=gen, started=timer.started,
                         finished=now(), seconds=timer.seconds(), error=_error(err)[-2000:])
        raise
    seconds = timer.seconds()
    out = {**out, "_meta": {"step": name, "seconds": seconds, "finished": now(),
                            "executor": executor_name}}
    if not store.put_json(key, out, if_absent=True):
        return store.get_json(key)  # type: ignore[no-any-return]
    write_step_state(store, search_id, name, "succeeded", generation=gen, started=timer.started,
                     finished=out["_meta"]["finished"], seconds=seconds,
                     **{k: out[k] for k in ("warnings", "supernets") if out.get(k)})
    return out


def run_step(name: str, spec: SearchSpec, search_id: str, store: ArtifactStore,
             executor: Executor) -> dict[str, Any]:
    """Runs one step unless its result already exists (then returns the stored one): its
    pending units in turn, then its finish."""
    key = result_key(search_id, name)
    if store.exists(key):
        return store.get_json(key)  # type: ignore[no-any-return]
    s = step(name)
    gen = read_control(store, search_id).generation
    timer = Timer()
    write_step_state(store, search_id, name, "running", generation=gen, started=timer.started)
    try:
        for unit in s.pending(spec, search_id, store):
            run_unit(name, spec, search_id, store, executor, unit, generation=gen)
    except BaseException as err:
        write_step_state(store, search_id, name, "failed", generation=gen, started=timer.started,
                         finished=now(), seconds=timer.seconds(), error=_error(err)[-2000:])
        raise
    return finish_step(name, spec, search_id, store,
                       executor_name=getattr(executor, "name", type(executor).__name__),
                       timer=timer, generation=gen)


@dataclass(frozen=True)
class Work:
    """What a search needs next: ``run`` these units of ``step``; ``finish`` ``step``;
    ``report``; or nothing (``succeeded``, ``failed``, ``cancelled``)."""

    kind: str
    step: str | None = None
    units: tuple[str, ...] = ()
    jobs: dict[str, JobSpec] = field(default_factory=dict)
    error: str | None = None


def next_work(spec: SearchSpec, search_id: str, store: ArtifactStore) -> Work:
    """Reads the stored plan and results: the first step without a result decides."""
    control = read_control(store, search_id)
    if control.cancelled:
        return Work("cancelled")
    gen = control.generation
    for name in load_meta(store, search_id)["plan"]:
        if store.exists(result_key(search_id, name)):
            continue
        s = step(name)
        pending = s.pending(spec, search_id, store)
        if not pending:
            return Work("finish", name)
        failed = []
        for u in pending:
            st = read_unit_state(store, search_id, name, u)
            if st and st.get("state") == "failed" and st.get("generation") == gen:
                failed.append(f"{u}: {st.get('error')}")
        if failed:
            return Work("failed", name, error="; ".join(failed))
        return Work("run", name, tuple(pending),
                    {u: s.job(spec, search_id, store, u) for u in pending})
    if not store.exists(report_key(search_id)):
        return Work("report")
    return Work("succeeded")


def write_final_report(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    """report.json and report.md, once; marks the search inactive."""
    from hurricane.runs.report import build_report, render_markdown

    key = report_key(search_id)
    if store.exists(key):
        mark_active(store, search_id, False)
        return store.get_json(key)  # type: ignore[no-any-return]
    report = build_report(spec, search_id, store)
    store.put_bytes(report_key(search_id, "report.md"), render_markdown(report).encode())
    if not store.put_json(key, report, if_absent=True):
        report = store.get_json(key)
    mark_active(store, search_id, False)
    return report


def run_search(spec: SearchSpec, store: ArtifactStore, executor: Executor,
               search_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The embedded runner: submits (or resumes) a search and runs its strategy's steps in
    this process, writing the same records the service writes."""
    sid = submit(spec, store, search_id, owner=None)  # resumes anyone's search in this store
    status = summarize(store, sid)
    if status["state"] in ("failed", "cancelled"):
        record_action(store, sid, "resume", by="hurricane run")  # a rerun is a resume
    plan = status["plan"]
    for i, name in enumerate(plan, 1):
        progress.message(f"[{i}/{len(plan)}] {name}")
        run_step(name, spec, sid, store, executor)
    return sid, write_final_report(spec, sid, store)
