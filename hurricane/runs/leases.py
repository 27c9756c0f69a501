"""Job leases in the artifact store: a job is started at most once at a time, wherever the
caller runs. A lease is a numbered, create-once object (``jobs/<job>/lease-<n>.json``) whose
holder rewrites it with a heartbeat while the job runs and with the outcome when it ends; a
second caller finds a live lease and adopts the job (waits for its outcome) instead of
starting another, and takes over (lease n + 1) only once the heartbeat has gone stale."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from hurricane.machine import pid_alive
from hurricane.storage.store import ArtifactNotFound, ArtifactStore, search_key


def lease_prefix(search_id: str, job_name: str) -> str:
    return search_key(search_id, "jobs", job_name)


@dataclass(frozen=True)
class LeaseView:
    """The newest lease of a job as read from the store."""

    number: int
    doc: dict[str, Any]

    @property
    def state(self) -> str:
        return str(self.doc.get("state", "running"))

    def age_s(self) -> float:
        return time.time() - float(self.doc.get("heartbeat", 0.0))

    def live(self, stale_s: float) -> bool:
        """Running, with a recent heartbeat; a holder on this host whose process is gone is
        dead at once."""
        if self.state != "running" or self.age_s() > stale_s:
            return False
        if self.doc.get("host") == socket.gethostname() and self.doc.get("holder_pid"):
            return pid_alive(int(self.doc["holder_pid"]))
        return True


def newest(store: ArtifactStore, search_id: str, job_name: str) -> LeaseView | None:
    names = [n for n in store.children(lease_prefix(search_id, job_name))
             if n.startswith("lease-") and n.endswith(".json")]
    for name in sorted(names, key=lambda n: int(n[6:-5]), reverse=True):
        try:
            return LeaseView(int(name[6:-5]),
                             store.get_json(f"{lease_prefix(search_id, job_name)}/{name}"))
        except ArtifactNotFound:
            continue
    return None


class Lease:
    """A held lease: heartbeats from a background thread until ``release``."""

    def __init__(self, store: ArtifactStore, search_id: str, job_name: str, number: int,
                 doc: dict[str, Any], heartbeat_s: float) -> None:
        self.store, self.key = store, f"{lease_prefix(search_id, job_name)}/lease-{number}.json"
        self.number, self.doc, self.heartbeat_s = number, doc, heartbeat_s
        self.search_id, self.job_name = search_id, job_name
        self.lost = threading.Event()  # another caller holds a newer lease
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_name}", daemon=True)
        self._thread.start()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.doc.update(fields)
            self.doc["heartbeat"] = time.time()
            self.store.put_json(self.key, self.doc)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                cur = newest(self.store, self.search_id, self.job_name)
                if cur is not None and cur.number > self.number:
                    # our heartbeats did not reach the store in time and another caller took
                    # the job over: stop ours (at most one runs after a short overlap)
                    self.lost.set()
                    return
                self.update()
            except Exception:  # a missed beat is retried next period
                continue

    def release(self, state: str, **fields: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.heartbeat_s + 1)
        if not self.lost.is_set():
            self.update(state=state, finished=time.time(), **fields)


def acquire(store: ArtifactStore, search_id: str, job_name: str, *, heartbeat_s: float,
            stale_s: float) -> Lease | LeaseView:
    """Takes the job's lease and returns it, or returns the live lease someone else holds."""
    while True:
        cur = newest(store, search_id, job_name)
        if cur is not None and cur.live(stale_s):
            return cur
        number = 1 if cur is None else cur.number + 1
        doc = {"job": job_name, "holder": uuid.uuid4().hex, "host": socket.gethostname(),
               "holder_pid": os.getpid(), "state": "running", "started": time.time(),
               "heartbeat": time.time(), "previous": None if cur is None else cur.doc}
        doc["previous"] = None if cur is None else {k: cur.doc.get(k) for k in
                                                    ("holder", "host", "state", "heartbeat")}
        key = f"{lease_prefix(search_id, job_name)}/lease-{number}.json"
        if store.put_json(key, doc, if_absent=True):
            return Lease(store, search_id, job_name, number, doc, heartbeat_s)
        # another caller took number n + 1 first: look again (it is live, so we adopt it)
