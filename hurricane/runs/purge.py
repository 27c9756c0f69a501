"""Purging a search: its running work is stopped before anything is deleted, and a tombstone
stays behind so that nothing which outlives the purge writes into the purged prefix.

1. The tombstone (``index/purged/<id>.json``, outside the search's prefix) is written and the
   search cancelled. From then on every write of the search's work is refused
   (``records.GuardedStore``), and every executor stops the search's jobs: the process
   executor's poll, the inline executor's progress check and the Kubernetes executor's
   follow loop all ask ``records.stop_requested``.
2. The purge waits, bounded, until no unit is still running: a unit's ``running`` record
   stands for the call that runs it, which deletes it as its last act once the search is
   purged (after its job has stopped and its lease thread has ended). A record whose worker is
   known to be dead (its pid gone on this host, or its job lease without heartbeat) is not
   waited for.
3. Everything under the search's prefix and its index entries is deleted; the tombstone
   records what was deleted and any unit that had not stopped when the wait ended.

A purge in progress is marked (``index/purging/<id>.json``) until it is done: the reconciler
finishes one whose caller died half-way (``unfinished``, ``sweep``).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hurricane.machine import pid_alive
from hurricane.runs.contract import WHOLE
from hurricane.runs.leases import newest
from hurricane.runs.records import (
    active_key,
    load_meta,
    now,
    owned_searches,
    owner_prefix,
    parse_time,
    purged_key,
    read_control,
    record_action,
)
from hurricane.storage.store import ArtifactNotFound, ArtifactStore, search_key

ACTIVE_UNIT_STATES = ("running", "queued")  # a task works on the unit (queued: for admission)


@dataclass(frozen=True)
class PurgeResult:
    """What a purge did: objects deleted, seconds it waited for running work, and the units
    that were still running when the wait ended (empty when everything stopped)."""

    deleted: int
    waited_s: float
    unstopped: tuple[str, ...]


def purging_key(search_id: str) -> str:
    return f"index/purging/{search_id}.json"


def _job_name(search_id: str, step: str, unit: str) -> str:
    return "-".join((search_id, step) if unit == WHOLE else (search_id, step, unit))


def _dead(store: ArtifactStore, search_id: str, step: str, unit: str, rec: dict[str, Any], *,
          stale_s: float) -> bool:
    """The worker that wrote a running record is known to be gone: its process on this host,
    or (elsewhere) its job's lease of this attempt, which has stopped beating."""
    pid = rec.get("pid")
    if rec.get("host") == socket.gethostname() and pid:
        return not pid_alive(int(pid))
    lease = newest(store, search_id, _job_name(search_id, step, unit))
    if lease is None or not rec.get("started"):
        return False
    this_attempt = float(lease.doc.get("started", 0)) >= parse_time(str(rec["started"])) - 1
    return this_attempt and lease.state == "running" and lease.age_s() > stale_s


def running_units(store: ArtifactStore, search_id: str, *, stale_s: float) -> list[str]:
    """``step/unit`` of every unit a live task still works on."""
    prefix = search_key(search_id, "state")
    out = []
    for key in store.list(prefix):
        rel = key[len(prefix) + 1:]
        if "/" not in rel:
            continue
        try:
            rec = store.get_json(key)
        except ArtifactNotFound:
            continue
        step, unit = rel.split("/", 1)
        unit = unit.removesuffix(".json")
        if rec.get("state") in ACTIVE_UNIT_STATES and not _dead(store, search_id, step, unit, rec,
                                                               stale_s=stale_s):
            out.append(f"{step}/{unit}")
    return out


def stop_and_wait(store: ArtifactStore, search_id: str, *, by: str, wait_s: float,
                  poll_s: float, stale_s: float) -> tuple[float, tuple[str, ...]]:
    """Steps 1 and 2: tombstone, cancel, then wait until no unit runs (at most ``wait_s``).
    Returns the seconds waited and the units still running when it gave up."""
    meta = load_meta(store, search_id)
    store.put_json(purging_key(search_id), {"search_id": search_id, "since": time.time()},
                   if_absent=True)
    store.put_json(purged_key(search_id), {"search_id": search_id, "owner": meta.get("owner"),
                                           "by": by, "at": now(), "state": "stopping"},
                   if_absent=True)
    if not store.exists(search_key(search_id, "report.json")) \
            and not read_control(store, search_id).cancelled:
        record_action(store, search_id, "cancel", by=by, reason="purge")
    t0 = time.monotonic()
    deadline = t0 + wait_s
    while True:
        running = running_units(store, search_id, stale_s=stale_s)
        if not running or time.monotonic() >= deadline:
            return round(time.monotonic() - t0, 3), tuple(running)
        time.sleep(poll_s)


def delete_search(store: ArtifactStore, search_id: str, owner: str) -> int:
    """Step 3: the search's index entries and every object under its prefix."""
    store.delete(active_key(search_id))
    for stamp, sid in owned_searches(store, owner):
        if sid == search_id:
            store.delete(f"{owner_prefix(owner)}/{stamp}-{sid}")
    return store.delete_prefix(search_key(search_id))


def purge_search(store: ArtifactStore, search_id: str, *, by: str, wait_s: float = 20.0,
                 poll_s: float = 0.2, stale_s: float = 30.0,
                 hold: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
                 ) -> PurgeResult:
    """Stops the search's running work, then deletes every object of it and its index entries
    (the tombstone stays). ``hold()`` is entered around the deletion (the service: the lock
    that an advance of the search holds). Raises SearchNotFound when there is no such search;
    what a purge interrupted half-way left is removed by ``sweep``."""
    owner = str(load_meta(store, search_id).get("owner"))
    waited, unstopped = stop_and_wait(store, search_id, by=by, wait_s=wait_s, poll_s=poll_s,
                                      stale_s=stale_s)
    with hold() if hold is not None else contextlib.nullcontext():
        deleted = delete_search(store, search_id, owner)
    with contextlib.suppress(Exception):  # the deletion is done; the tombstone only reports
        store.put_json(purged_key(search_id), {
            **store.get_json(purged_key(search_id)), "state": "deleted", "deleted": deleted,
            "waited_s": waited, "unstopped": list(unstopped), "finished": now()})
    store.delete(purging_key(search_id))
    return PurgeResult(deleted, waited, unstopped)


def unfinished(store: ArtifactStore, *, older_than_s: float) -> list[str]:
    """Purges begun longer ago than ``older_than_s`` and never finished (their caller died)."""
    out = []
    for name in store.children("index/purging"):
        try:
            since = float(store.get_json(f"index/purging/{name}").get("since", 0))
        except ArtifactNotFound:
            continue
        if time.time() - since > older_than_s:
            out.append(name.removesuffix(".json"))
    return out


def sweep(store: ArtifactStore, search_id: str) -> int:
    """After a purge (the worker's cleanup, once the search's jobs are gone): deletes whatever
    is under a purged search's prefix (a purge interrupted half-way, a write that was already
    on its way when the tombstone came). 0 for a search that was not purged."""
    try:
        doc = store.get_json(purged_key(search_id))
    except ArtifactNotFound:
        return 0
    n = delete_search(store, search_id, str(doc.get("owner")))
    store.delete(purging_key(search_id))
    return n
