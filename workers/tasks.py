"""Celery tasks: thin wrappers over hurricane.runs.pipeline, with permanent names, ids only as
arguments, explicit queues, retries for transient failures and none for invalid input.

- ``hurricane.advance(search_id)`` (queue ``control``): reads the stored plan and results,
  finishes every step whose units are done, and enqueues the next step's pending units in
  parallel; one advance per search at a time (a Redis lock).
- ``hurricane.run_unit(search_id, step, unit)`` (queue ``train`` or ``profile.<label>``): runs
  one unit's job through the executor, then enqueues an advance (the join).
- ``hurricane.reconcile()`` (beat, ``control``): re-enqueues searches with nothing in flight.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from celery.signals import worker_ready

from hurricane.runs.contract import JobCancelled, JobTransient
from hurricane.runs.executor import BaseExecutor, create_executor
from hurricane.runs.records import (
    SearchNotFound,
    SearchPurged,
    active_searches,
    guarded,
    mark_active,
    read_control,
    stop_requested,
    write_step_state,
)
from hurricane.settings import Settings, get_settings
from hurricane.storage.store import StoreUnavailable
from hurricane.storage.stores import open_store
from hurricane.workers import flight
from hurricane.workers.app import app
from hurricane.workers.dispatch import (
    ADVANCE_TASK,
    CLEANUP_TASK,
    RECONCILE_TASK,
    UNIT_TASK,
    enqueue_advance,
    enqueue_unit,
    redis_client,
    unit_queue,
)

log = logging.getLogger("hurricane.workers")

TRANSIENT = (StoreUnavailable, JobTransient, redis.ConnectionError, redis.TimeoutError,
             ConnectionError)
UNIT_RETRIES = 5


def _backoff(retries: int) -> float:
    return float(min(60, 2 ** (retries + 1)))


@app.task(name=ADVANCE_TASK, bind=True, max_retries=None, soft_time_limit=1800, time_limit=1900)
def advance(self: Task, search_id: str) -> str:
    """Moves a search as far as its stored results allow; returns what it did last."""
    s = get_settings()
    r = redis_client(s.redis_dsn)
    try:
        flight.mark(r, search_id, flight.ADVANCE, "started", task_id=self.request.id)
        lock = flight.search_lock(r, search_id, blocking_timeout=20)
        if not lock.acquire():
            raise self.retry(countdown=2)
        try:
            with flight.renewed(lock):
                return _advance(search_id)
        except SearchPurged:  # a write was refused: the search is being purged
            log.info("advance %s: the search was purged", search_id)
            return "purged"
        finally:
            with contextlib.suppress(redis.RedisError):  # expired, or Redis restarted
                lock.release()
            flight.clear(r, search_id, flight.ADVANCE)
    except TRANSIENT as err:
        log.warning("advance %s: transient failure, retrying: %s", search_id, err)
        raise self.retry(exc=err, countdown=_backoff(min(self.request.retries, 4))) from err


def _advance(search_id: str) -> str:
    from hurricane.runs.pipeline import finish_step, next_work, stored_spec, write_final_report

    s = get_settings()
    store = guarded(open_store(s.store), search_id)
    r = redis_client(s.redis_dsn)
    try:
        spec = stored_spec(store, search_id)
    except SearchNotFound:
        log.warning("advance %s: no such search (purged?)", search_id)
        return "gone"
    for _ in range(64):  # bounded: a plan has a dozen steps
        w = next_work(spec, search_id, store)
        if w.kind == "finish":
            assert w.step is not None
            try:
                finish_step(w.step, spec, search_id, store, executor_name=s.executor)
            except TRANSIENT:
                raise
            except Exception as err:  # recorded by finish_step; retrying cannot fix it
                log.error("search %s: step %s failed: %s", search_id, w.step, err)
                mark_active(store, search_id, False)
                return "failed"
            continue
        if w.kind == "report":
            write_final_report(spec, search_id, store)
            continue
        if w.kind == "run":
            assert w.step is not None
            fl = flight.entries(r, search_id)
            for unit in w.units:
                job = w.jobs[unit]
                if (flight.live(fl.get(flight.field(w.step, unit)), store, search_id, s)
                        or flight.job_running(store, search_id, job.name, s)):
                    continue
                enqueue_unit(app, search_id, w.step, unit, queue=unit_queue(job.node_label),
                             job=job.name, settings=s)
            return f"run {w.step}"
        if w.kind == "failed":
            assert w.step is not None
            write_step_state(store, search_id, w.step, "failed",
                             generation=read_control(store, search_id).generation,
                             error=w.error)
        mark_active(store, search_id, False)
        return w.kind
    raise RuntimeError(f"advance {search_id}: no progress after 64 rounds")


@app.task(name=UNIT_TASK, bind=True, max_retries=UNIT_RETRIES, soft_time_limit=None)
def run_unit(self: Task, search_id: str, step: str, unit: str) -> str:
    """Runs one unit's job (adopting it when it already runs elsewhere), then advances."""
    from hurricane import progress
    from hurricane.runs.pipeline import run_unit as pipeline_run_unit
    from hurricane.runs.pipeline import stored_spec, unit_job
    from hurricane.workers.progress import RedisReporter

    s = get_settings()
    r = redis_client(s.redis_dsn)
    name = flight.field(step, unit)
    outcome = "done"
    try:
        store = guarded(open_store(s.store), search_id)
        try:
            spec = stored_spec(store, search_id)
        except SearchNotFound:
            flight.clear(r, search_id, name)
            return "gone"
        if stop_requested(store, search_id):
            flight.clear(r, search_id, name)
            return "cancelled"
        job = unit_job(spec, search_id, store, step, unit)
        flight.mark(r, search_id, name, "started", task_id=self.request.id, job=job.name,
                    worker=self.request.hostname)
        executor = make_executor(s, lambda: stop_requested(store, search_id))
        t0 = time.perf_counter()
        with progress.use_reporter(RedisReporter(r, search_id, step, unit)):
            try:
                ran = pipeline_run_unit(step, spec, search_id, store, executor, unit)
                outcome = f"{'ran' if ran else 'found'} {step}/{unit} in {time.perf_counter() - t0:.1f} s"
            except SearchPurged:  # stopped, and its unit record taken back: nothing to advance
                outcome = "purged"
            except JobCancelled:
                outcome = "cancelled"
            except TRANSIENT:
                raise
            except Exception as err:  # recorded on the unit by run_unit: the search fails
                log.error("search %s: %s/%s failed: %s", search_id, step, unit, err)
                outcome = "failed"
    except TRANSIENT as err:
        if self.request.retries >= UNIT_RETRIES:
            log.error("search %s: %s/%s gave up after %d retries: %s", search_id, step, unit,
                      self.request.retries, err)
            _record_gave_up(search_id, step, unit, err)
            outcome = "failed"
        else:
            log.warning("search %s: %s/%s transient failure, retry %d: %s", search_id, step, unit,
                        self.request.retries + 1, err)
            with contextlib.suppress(redis.RedisError):
                flight.mark(r, search_id, name, "queued", task_id=self.request.id)
            raise self.retry(exc=err, countdown=_backoff(self.request.retries)) from err
    with contextlib.suppress(redis.RedisError):  # else the reconciler finds the unit done
        flight.clear(r, search_id, name)
    if outcome not in ("cancelled", "purged"):
        enqueue_advance(app, search_id, settings=s)
    return outcome


def make_executor(s: Settings, cancelled: Callable[[], bool] | None) -> BaseExecutor:
    """The executor of the settings: local processes (stopped when ``cancelled``), in the
    worker, or Kubernetes Jobs (hurricane.operator: deleted when ``cancelled``)."""
    if s.executor == "kubernetes":
        return create_executor("kubernetes", settings=s, cancelled=cancelled, echo=True)
    if s.executor == "process":
        return create_executor("process", echo=True, cancelled=cancelled)
    return create_executor(s.executor, cancelled=cancelled)


@app.task(name=CLEANUP_TASK, bind=True, max_retries=5, soft_time_limit=300, time_limit=330)
def cleanup(self: Task, search_id: str) -> str:
    """After a purge: removes what the search left outside the store (its Kubernetes Jobs,
    through their owner object), then sweeps its prefix once more (what a purge interrupted
    half-way left, or a write already on its way when the purge began)."""
    from hurricane.runs.purge import sweep

    s = get_settings()
    try:
        if s.executor == "kubernetes":
            make_executor(s, None).delete_search(search_id)
        swept = sweep(open_store(s.store), search_id)
    except Exception as err:
        raise self.retry(exc=err, countdown=_backoff(self.request.retries)) from err
    if swept:
        log.warning("cleanup %s: removed %d objects left under the purged search", search_id,
                    swept)
    return f"swept {swept} objects" + (", owner object deleted" if s.executor == "kubernetes"
                                       else "")


def _record_gave_up(search_id: str, step: str, unit: str, err: BaseException) -> None:
    from hurricane.runs.records import write_unit_state

    try:
        store = open_store(get_settings().store)
        write_unit_state(store, search_id, step, unit, "failed",
                         generation=read_control(store, search_id).generation,
                         error=f"gave up after {UNIT_RETRIES} retries: {type(err).__name__}: {err}")
    except Exception:  # the store is what failed; the reconciler retries later
        log.exception("could not record the failure of %s/%s", step, unit)


@app.task(name=RECONCILE_TASK, bind=True, max_retries=0, soft_time_limit=600, time_limit=660)
def reconcile(self: Task) -> list[str]:
    """Re-enqueues an advance for every active search with nothing queued or running: its
    tasks were lost (Redis flushed, workers gone) or it was never enqueued."""
    s = get_settings()
    r = redis_client(s.redis_dsn)
    # renewed while it runs: a worker killed mid-reconcile holds it up for a minute at most
    lock = r.lock("hurricane:lock:reconcile", timeout=flight.LOCK_TTL_S, blocking_timeout=0,
                  thread_local=False)
    if not lock.acquire():
        return []
    try:
        with flight.renewed(lock):
            return _reconcile(r, s)
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()


def _reconcile(r: redis.Redis, s: Any) -> list[str]:
    from hurricane.runs.purge import sweep, unfinished

    store = open_store(s.store)
    for sid in unfinished(store, older_than_s=s.purge_wait_s + 60):
        log.warning("reconcile: finishing the purge of %s (its caller stopped half-way): "
                    "%d objects removed", sid, sweep(store, sid))
    revived = []
    for sid in active_searches(store):
        if not flight.busy(r, store, sid, s):
            enqueue_advance(app, sid, settings=s)
            revived.append(sid)
    if revived:
        log.info("reconcile: re-enqueued %s", ", ".join(revived))
    return revived


@worker_ready.connect
def _reconcile_at_start(sender: Any = None, **_: Any) -> None:
    """A (re)started worker looks for lost searches at once."""
    try:
        app.send_task(RECONCILE_TASK, queue="control")
    except Exception:
        log.exception("could not enqueue the start-up reconcile")
