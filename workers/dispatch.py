"""Enqueuing by task name (ids only), with the flight record kept beside the queue; used by
the API, the tasks and the reconciler. Torch-free."""

from __future__ import annotations

import functools
import logging

import redis
from celery import Celery

from hurricane.settings import Settings, get_settings
from hurricane.workers import flight
from hurricane.workers.app import CONTROL, TRAIN, profile_queue

log = logging.getLogger("hurricane.workers")

ADVANCE_TASK = "hurricane.advance"
UNIT_TASK = "hurricane.run_unit"
RECONCILE_TASK = "hurricane.reconcile"
CLEANUP_TASK = "hurricane.cleanup"


@functools.lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30)


def unit_queue(node_label: str | None) -> str:
    """Device-pinned work goes to that device pool's queue; the rest to ``train``."""
    return profile_queue(node_label) if node_label else TRAIN


def enqueue_advance(app: Celery, search_id: str, *, settings: Settings | None = None,
                    countdown: float | None = None) -> str:
    s = settings or get_settings()
    r = redis_client(s.redis_dsn)
    res = app.send_task(ADVANCE_TASK, args=[search_id], queue=CONTROL, countdown=countdown)
    flight.mark(r, search_id, flight.ADVANCE, "queued", task_id=res.id)
    return str(res.id)


def enqueue_unit(app: Celery, search_id: str, step: str, unit: str, *, queue: str,
                 job: str, settings: Settings | None = None) -> str:
    s = settings or get_settings()
    r = redis_client(s.redis_dsn)
    res = app.send_task(UNIT_TASK, args=[search_id, step, unit], queue=queue)
    flight.mark(r, search_id, flight.field(step, unit), "queued", task_id=res.id, queue=queue,
                job=job)
    log.info("search %s: enqueued %s/%s on %s", search_id, step, unit, queue)
    return str(res.id)


def revoke_queued(app: Celery, search_id: str, *, settings: Settings | None = None) -> int:
    """Revokes the search's queued tasks (running ones stop on their own: their executor
    sees the durable cancel record)."""
    s = settings or get_settings()
    r = redis_client(s.redis_dsn)
    ids = [e["task_id"] for e in flight.entries(r, search_id).values()
           if e.get("state") == "queued" and e.get("task_id")]
    if ids:
        app.control.revoke(ids)
    return len(ids)


def enqueue_cleanup(app: Celery, search_id: str, *, countdown: float | None = None) -> str:
    """After a purge: the worker side removes what lives outside the store (Kubernetes Jobs)
    and sweeps the purged prefix once more."""
    return str(app.send_task(CLEANUP_TASK, args=[search_id], queue=CONTROL,
                             countdown=countdown).id)
