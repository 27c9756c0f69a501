"""Durable search records in the artifact store: keys, creation, per-step and per-unit state,
user actions (cancel, resume), and the status summary computed on read (torch-free).

Concurrency rule: no object is read-modify-written. Each writer owns its objects (a step's
state belongs to whoever finishes the step, a unit's state to the task running it), results
are created once (``if_absent``), and user actions are appended as numbered objects.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hurricane.runs.strategies import STRATEGIES
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactNotFound, ArtifactStore, ObjectInfo, search_key

TERMINAL = ("succeeded", "failed", "cancelled")
SEARCH_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
UNIT_STATES = ("queued", "running", "retrying", "succeeded", "failed", "cancelled")


class SearchConflict(ValueError):
    """A search id is already taken by a different spec."""


class SearchNotFound(KeyError):
    def __str__(self) -> str:
        return f"no search {self.args[0]!r}"


class SearchPurged(SearchNotFound):
    """The search was purged while this process worked on it: it stops and writes nothing."""

    def __str__(self) -> str:
        return (f"search {self.args[0]!r} was purged: its work stopped and wrote nothing more "
                "(submit the spec again to run it anew)")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def parse_time(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


# -- keys -------------------------------------------------------------------------------------

def spec_key(search_id: str) -> str:
    return search_key(search_id, "spec.json")


def meta_key(search_id: str) -> str:
    return search_key(search_id, "search.json")


def result_key(search_id: str, step: str) -> str:
    return search_key(search_id, step, "result.json")


def report_key(search_id: str, name: str = "report.json") -> str:
    return search_key(search_id, name)


def step_state_key(search_id: str, step: str) -> str:
    return search_key(search_id, "state", f"{step}.json")


def unit_state_key(search_id: str, step: str, unit: str) -> str:
    return search_key(search_id, "state", step, f"{unit}.json")


def actions_prefix(search_id: str) -> str:
    return search_key(search_id, "actions")


def active_key(search_id: str) -> str:
    return f"index/active/{search_id}"


def owner_prefix(owner: str) -> str:
    return f"index/owners/{owner}"


def purged_key(search_id: str) -> str:
    """The tombstone of a purged search: outside its prefix, so it outlives the deletion."""
    return f"index/purged/{search_id}.json"


def idempotency_key(owner: str, key: str) -> str:
    return f"index/idempotency/{owner}/{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


# -- creation ---------------------------------------------------------------------------------

def new_search_id(spec: SearchSpec) -> str:
    return f"{spec.name}-{secrets.token_hex(4)}"


def submit(spec: SearchSpec, store: ArtifactStore, search_id: str | None = None, *,
           owner: str | None = "local") -> str:
    """Records ``spec`` under a search id (new, or an existing one holding the same spec and,
    unless ``owner`` is None, the same owner). Every write is create-only, so a submission
    interrupted halfway is completed by the next one and two racing submissions agree."""
    sid = search_id or new_search_id(spec)
    if store.exists(purged_key(sid)):
        raise SearchConflict(f"search {sid!r} was purged; its id is not used again (submit "
                             "without a search id, or with another one)")
    stored = spec.model_dump(mode="json")
    # compared after validation, so a spec stored before a new field existed still matches
    if (not store.put_json(spec_key(sid), stored, if_absent=True)
            and SearchSpec.model_validate(store.get_json(spec_key(sid))).model_dump(mode="json")
            != stored):
        raise SearchConflict(
                f"search {sid!r} already exists with a different spec; use another --search-id "
                "(nothing stored was changed)")
    created, who = now(), owner or "local"
    meta = {"search_id": sid, "name": spec.name, "owner": who, "created": created,
            "strategy": spec.strategy, "plan": list(STRATEGIES.get(spec.strategy).plan(spec)),
            "devices": [d.name for d in spec.devices]}
    if store.put_json(meta_key(sid), meta, if_absent=True):
        stamp = created.replace("-", "").replace(":", "").replace("+0000", "Z")
        store.put_json(f"{owner_prefix(who)}/{stamp}-{sid}", {"search_id": sid},
                       if_absent=True)
    elif owner is not None and store.get_json(meta_key(sid)).get("owner") != owner:
        raise SearchConflict(f"search {sid!r} belongs to another user")
    return sid


def stored_spec(store: ArtifactStore, search_id: str) -> SearchSpec:
    """The spec a search was submitted with, read from its record (a file: spec.read_spec_file)."""
    try:
        return SearchSpec.model_validate(store.get_json(spec_key(search_id)))
    except ArtifactNotFound:
        raise SearchNotFound(search_id) from None


def load_meta(store: ArtifactStore, search_id: str) -> dict[str, Any]:
    try:
        return store.get_json(meta_key(search_id))  # type: ignore[no-any-return]
    except ArtifactNotFound:
        raise SearchNotFound(search_id) from None


def mark_active(store: ArtifactStore, search_id: str, active: bool = True) -> None:
    """The reconciler's index of searches that may still have work to do."""
    if active:
        store.put_json(active_key(search_id), {"search_id": search_id}, if_absent=True)
    else:
        store.delete(active_key(search_id))


def active_searches(store: ArtifactStore) -> list[str]:
    return store.children("index/active")


def owned_searches(store: ArtifactStore, owner: str) -> list[tuple[str, str]]:
    """(created stamp, search id) of one owner's searches, oldest first."""
    out = []
    for name in store.children(owner_prefix(owner)):
        stamp, _, sid = name.partition("-")
        out.append((stamp, sid))
    return out


def owners(store: ArtifactStore) -> list[str]:
    return store.children("index/owners")


# -- user actions (append-only) ---------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """What the user asked for, folded from the action log: the run generation (one more per
    resume) and whether the search is cancelled."""

    generation: int = 0
    cancelled: bool = False
    actions: tuple[dict[str, Any], ...] = ()


def read_control(store: ArtifactStore, search_id: str) -> Control:
    gen, cancelled, acts = 0, False, []
    for name in store.children(actions_prefix(search_id)):
        try:
            a = store.get_json(f"{actions_prefix(search_id)}/{name}")
        except ArtifactNotFound:
            continue
        acts.append(a)
        if a["action"] == "cancel":
            cancelled = True
        elif a["action"] == "resume":
            gen, cancelled = gen + 1, False
    return Control(gen, cancelled, tuple(acts))


def record_action(store: ArtifactStore, search_id: str, action: str, *, by: str = "local",
                  reason: str | None = None) -> Control:
    """Appends ``cancel`` or ``resume`` under the next free sequence number."""
    if action not in ("cancel", "resume"):
        raise ValueError(f"unknown action {action!r}; allowed: cancel, resume")
    for _ in range(100):
        n = len(store.children(actions_prefix(search_id))) + 1
        doc = {"action": action, "at": now(), "by": by, "reason": reason}
        if store.put_json(f"{actions_prefix(search_id)}/{n:06d}.json", doc, if_absent=True):
            break
    return read_control(store, search_id)


# -- purged searches: the tombstone and the guard ---------------------------------------------

def is_purged(store: ArtifactStore, search_id: str) -> bool:
    return store.exists(purged_key(search_id))


def stop_requested(store: ArtifactStore, search_id: str) -> bool:
    """Whether the search's running work must stop: it was purged (the tombstone stays after
    the cancel record is deleted with everything else) or cancelled."""
    return is_purged(store, search_id) or read_control(store, search_id).cancelled


class GuardedStore(ArtifactStore):
    """``store`` as the work on one search sees it: once the search's tombstone exists, every
    write under the search's prefix (and of its active-index entry) raises SearchPurged
    instead of landing, so a job, task or lease that outlives a purge writes nothing into the
    purged prefix. Reads and deletions pass through; the purge itself waits for running work
    to stop (``hurricane.runs.purge``), which closes the window between a check and its write."""

    def __init__(self, inner: ArtifactStore, search_id: str) -> None:
        self.inner, self.search_id = inner, search_id
        self._prefix = search_key(search_id) + "/"
        self._active = active_key(search_id)
        self._purged = False  # a tombstone is never removed: seen once, it stays seen

    def _check(self, key: str) -> None:
        if not (key.startswith(self._prefix) or key == self._active):
            return
        if self._purged or self.inner.exists(purged_key(self.search_id)):
            self._purged = True
            raise SearchPurged(self.search_id)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        self._check(key)
        return self.inner.put_bytes(key, data, if_absent=if_absent)

    def put_file(self, key: str, path: str | Path) -> None:
        self._check(key)
        self.inner.put_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def get_file(self, key: str, path: str | Path) -> None:
        self.inner.get_file(key, path)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str) -> builtins.list[str]:
        return self.inner.list(prefix)

    def children(self, prefix: str) -> builtins.list[str]:
        return self.inner.children(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def uri(self, key: str = "") -> str:
        return self.inner.uri(key)

    @property
    def url(self) -> str:
        return self.inner.url

    def presign_get(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        return self.inner.presign_get(key, expires_s, filename=filename)


def guarded(store: ArtifactStore, search_id: str) -> ArtifactStore:
    """``store`` guarded for work on ``search_id`` (once: a guarded store is not wrapped again)."""
    if isinstance(store, GuardedStore) and store.search_id == search_id:
        return store
    return GuardedStore(store, search_id)


# -- step and unit state ----------------------------------------------------------------------

def write_step_state(store: ArtifactStore, search_id: str, step: str, state: str, *,
                     generation: int, **fields: Any) -> None:
    store.put_json(step_state_key(search_id, step),
                   {"state": state, "generation": generation, "updated": now(), **fields})


def write_unit_state(store: ArtifactStore, search_id: str, step: str, unit: str, state: str, *,
                     generation: int, **fields: Any) -> None:
    store.put_json(unit_state_key(search_id, step, unit),
                   {"state": state, "generation": generation, "updated": now(),
                    "host": socket.gethostname(), "pid": os.getpid(), **fields})


def read_unit_state(store: ArtifactStore, search_id: str, step: str,
                    unit: str) -> dict[str, Any] | None:
    try:
        return store.get_json(unit_state_key(search_id, step, unit))  # type: ignore[no-any-return]
    except ArtifactNotFound:
        return None


@dataclass
class Timer:
    """Started/finished stamps and seconds of one step or unit."""

    started: str = field(default_factory=now)
    t0: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.t0, 3)


# -- the status summary (computed on read) ----------------------------------------------------

def read_states(store: ArtifactStore, search_id: str) -> dict[str, dict[str, Any]]:
    """Every step's state record with its units' records under ``units``."""
    steps: dict[str, dict[str, Any]] = {}
    prefix = search_key(search_id, "state")
    for key in store.list(prefix):
        rel = key[len(prefix) + 1:]
        try:
            doc = store.get_json(key)
        except ArtifactNotFound:
            continue
        if "/" in rel:
            step, unit = rel.split("/", 1)
            steps.setdefault(step, {}).setdefault("units", {})[unit.removesuffix(".json")] = doc
        else:
            entry = steps.setdefault(rel.removesuffix(".json"), {})
            entry.update(doc)
    return steps


def summarize(store: ArtifactStore, search_id: str) -> dict[str, Any]:
    """The search's status: state, plan, per-step and per-unit state with timings, errors."""
    meta = load_meta(store, search_id)
    control = read_control(store, search_id)
    gen = control.generation
    states = read_states(store, search_id)
    done = store.exists(report_key(search_id))
    steps: dict[str, dict[str, Any]] = {}
    failed: tuple[str, str] | None = None
    running = started = False
    for name in meta["plan"]:
        rec = dict(states.get(name, {}))
        units = rec.pop("units", {})
        if rec.get("generation", gen) < gen and rec.get("state") == "failed":
            rec["state"] = "queued"  # a failed attempt of an earlier run; resumed since
        units = {u: ({**r, "state": "queued"} if r.get("generation", gen) < gen
                     and r.get("state") in ("failed", "cancelled") else r)
                 for u, r in units.items()}
        state = rec.get("state") or ("running" if units else "pending")
        if state != "succeeded":
            if any(u.get("state") == "failed" for u in units.values()) or state == "failed":
                state = "failed"
            elif any(u.get("state") in ("running", "retrying") for u in units.values()):
                state = "running"
            elif waiting := [r for r in units.values() if r.get("state") == "queued"
                             and r.get("reason") and r.get("generation", gen) == gen]:
                state = "queued"  # its jobs wait for admission (a cluster queue's quota)
                rec["reason"] = waiting[0]["reason"]
        if state == "failed" and failed is None:
            err = rec.get("error") or next((f"{u}: {r.get('error')}" for u, r in units.items()
                                            if r.get("state") == "failed"), None)
            failed = (name, str(err))
        running |= state == "running"
        started |= state != "pending"
        steps[name] = {**rec, "state": state, "units": units}
    if control.cancelled:
        search_state = "cancelled"
    elif done:
        search_state = "succeeded"
    elif failed:
        search_state = "failed"
    elif running or started:
        search_state = "running"
    else:
        search_state = "queued"
    out: dict[str, Any] = {
        "search_id": search_id, "name": meta["name"], "owner": meta["owner"],
        "strategy": meta["strategy"], "devices": meta.get("devices", []),
        "created": meta["created"], "state": search_state, "generation": gen,
        "plan": meta["plan"], "steps": steps,
    }
    warnings = [w for s in steps.values() for w in s.get("warnings") or ()]
    if warnings:
        out["warnings"] = warnings
    verdicts = {label: v for s in steps.values() for label, v in (s.get("supernets") or {}).items()}
    if verdicts:
        out["supernets"] = verdicts
    if failed and search_state == "failed":
        out["failed_step"], out["error"] = failed
    if control.cancelled:
        out["cancelled_at"] = next(a["at"] for a in reversed(control.actions)
                                   if a["action"] == "cancel")
    finished = [str(s["finished"]) for s in steps.values() if s.get("finished")]
    if search_state in TERMINAL and finished:
        out["finished"] = max(finished)
    return out
