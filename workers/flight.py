"""What is in flight for a search, kept in Redis beside the queues it describes: queued and
started tasks per (step, unit), and the search's pending advance. Lost together with the
queues when Redis is flushed, which is exactly when the reconciler must re-enqueue."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis

from hurricane.runs.leases import newest
from hurricane.settings import Settings
from hurricane.storage.store import ArtifactStore

ADVANCE = "advance"
ADVANCE_STALE_S = 300.0  # an advance is short: started longer ago than this, its worker died


LOCK_TTL_S = 60.0  # a held search lock is renewed every quarter of this while its holder lives


def search_lock(r: redis.Redis, search_id: str, *, blocking_timeout: float) -> Any:
    """The lock an advance of the search holds (a purge takes it too before deleting, so that
    no advance is half-way through its writes then). It expires LOCK_TTL_S after its holder
    stopped renewing it (``renewed``): a worker killed while holding it blocks the search for
    a minute, not for the advance's whole time limit."""
    return r.lock(f"hurricane:lock:{search_id}", timeout=LOCK_TTL_S,
                  blocking_timeout=blocking_timeout, thread_local=False)


@contextlib.contextmanager
def renewed(lock: Any) -> Iterator[None]:
    """Renews an acquired lock from a background thread until the block ends."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_TTL_S / 4):
            with contextlib.suppress(redis.RedisError):  # lost, or Redis restarted
                lock.reacquire()

    t = threading.Thread(target=renew, name="search-lock", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)


def flight_key(search_id: str) -> str:
    return f"hurricane:flight:{search_id}"


def progress_key(search_id: str) -> str:
    return f"hurricane:progress:{search_id}"


def field(step: str, unit: str) -> str:
    return f"{step}/{unit}"


def mark(r: redis.Redis, search_id: str, name: str, state: str, **extra: Any) -> None:
    r.hset(flight_key(search_id), name, json.dumps({"state": state, "at": time.time(), **extra}))
    r.expire(flight_key(search_id), 7 * 24 * 3600)


def clear(r: redis.Redis, search_id: str, name: str) -> None:
    r.hdel(flight_key(search_id), name)


def entries(r: redis.Redis, search_id: str) -> dict[str, dict[str, Any]]:
    raw = r.hgetall(flight_key(search_id))
    out = {}
    for k, v in raw.items():
        try:
            out[k.decode() if isinstance(k, bytes) else k] = json.loads(v)
        except (ValueError, TypeError):
            continue
    return out


def live(entry: dict[str, Any] | None, store: ArtifactStore, search_id: str,
         settings: Settings) -> bool:
    """Whether a flight entry still stands for work that will happen: queued (within the
    visibility timeout), or started with a live job lease (or too recently to have one)."""
    if entry is None:
        return False
    age = time.time() - float(entry.get("at", 0))
    if entry.get("state") == "queued":
        return age < settings.visibility_timeout_s
    job = entry.get("job")
    if job is None:  # a started advance
        return age < ADVANCE_STALE_S
    lease = newest(store, search_id, str(job))
    if lease is None or lease.doc.get("started", 0) < float(entry.get("at", 0)) - 1:
        return age < settings.job_stale_s  # started, its job not (yet) leased
    return lease.live(settings.job_stale_s)


def job_running(store: ArtifactStore, search_id: str, job: str, settings: Settings) -> bool:
    """A live lease: the job runs somewhere, whatever Redis remembers."""
    lease = newest(store, search_id, job)
    return lease is not None and lease.live(settings.job_stale_s)


def busy(r: redis.Redis, store: ArtifactStore, search_id: str, settings: Settings) -> bool:
    """Anything queued or running for the search."""
    return any(live(e, store, search_id, settings) for e in entries(r, search_id).values())
