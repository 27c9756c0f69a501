"""The Celery app: Redis broker and result backend, the queues, and deliberate timeouts.

Importing this module imports neither torch nor the tasks (the API sends tasks by name).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Celery

from hurricane.settings import Settings, get_settings

log = logging.getLogger("hurricane.workers")

CONTROL = "control"  # advancing searches, finishing steps, reconciling: short tasks
TRAIN = "train"  # supernet training, evolution, retraining: any node
PROFILE_PREFIX = "profile."  # profile.<device label>: only that device pool's workers


def profile_queue(label: str) -> str:
    return f"{PROFILE_PREFIX}{label}"


def create_app(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery("hurricane", broker=s.redis_dsn, backend=s.redis_dsn,
                 include=["hurricane.workers.tasks"])
    transport = {
        # Redis hands an unacknowledged task to another worker after this long. Jobs run
        # inside tasks (acks_late), so it must outlast the longest job; a redelivery that does
        # happen adopts the running job through its lease instead of starting a second one.
        "visibility_timeout": s.visibility_timeout_s,
    }
    app.conf.update(
        task_acks_late=True,  # a task lost with its worker is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds only the task it runs
        task_default_queue=CONTROL,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_expires=timedelta(days=1),
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # ride out a Redis restart of any length
        # a Redis restart must not cancel a running training job; its task finishes normally
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry_policy={"max_retries": 10, "interval_start": 0.2,
                                   "interval_step": 0.5, "interval_max": 3},
        beat_schedule={"reconcile": {"task": "hurricane.reconcile",
                                     "schedule": s.reconcile_interval_s,
                                     "options": {"queue": CONTROL, "expires": s.reconcile_interval_s}}},
        worker_hijack_root_logger=False,
        task_annotations={"hurricane.run_unit": {"time_limit": s.job_timeout_s}},
    )
    return app


def survive_broker_loss() -> None:
    """Keeps a worker alive when Redis goes away while it holds unacknowledged tasks.

    After a lost broker connection, kombu (5.7) still uses the old channel: closing it
    restores the unacknowledged messages, and a task that ends acknowledges its message,
    both through a connection that is gone, which raises ``AttributeError: 'NoneType' object
    has no attribute 'hostname'`` (or ``'client'``), and Celery stops the worker
    ("Unrecoverable error"). Found by bench/soak.py: a Redis restart killed the control worker
    and every search stalled. The old channel's connection parameters are asked for there:
    with the connection gone that is now the connection error it is, which kombu and Celery
    handle (the consumer reconnects; the restore and the ack are dropped: a restarted Redis
    lost those messages anyway, and the reconciler re-enqueues what a search still needs)."""
    import redis
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "hurricane_guard", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed (Redis went away)")
        return original(self, asynchronous=asynchronous)

    _connparams.hurricane_guard = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]


survive_broker_loss()
app = create_app()


def point_at(celery: Celery, settings: Settings) -> None:
    """Re-points an app at the Redis of ``settings`` (tests, embedding): its configuration and
    its pooled connections (Celery's own reset after a fork drops them)."""
    celery.conf.update(broker_url=settings.redis_dsn, result_backend=settings.redis_dsn)
    celery._after_fork()
