"""What the search routes do, without HTTP: submit, view (records + progress + winners),
list, cancel, resume, purge and artifacts. Torch-free."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from celery import Celery

from hurricane.latency import tables
from hurricane.runs.records import (
    TERMINAL,
    SearchNotFound,
    active_searches,
    idempotency_key,
    load_meta,
    mark_active,
    owned_searches,
    owners,
    record_action,
    report_key,
    result_key,
    submit,
    summarize,
)
from hurricane.runs.steps.results import device_artifacts, device_winners
from hurricane.service.tokens import User
from hurricane.settings import Settings
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactNotFound, ArtifactStore, search_key
from hurricane.workers import flight
from hurricane.workers.dispatch import enqueue_advance, enqueue_cleanup, revoke_queued

log = logging.getLogger("hurricane.api")

INTERNAL = ("state/", "actions/", "jobs/", "logs/")  # records, not artifacts
# A status read whose view is older than status_cache_s starts a refresh in the background and
# gets the view it had (stale while revalidating), unless that view is older than STALE_MAX_S:
# a slow or frozen object store delays the view, never the request.
STALE_MAX_S = 300.0
META_TTL_S = 600.0  # a search's creation record never changes; a purge here drops it at once
REFRESH_THREADS = 4


class Conflict(ValueError):
    """The request contradicts the search's state (HTTP 409); the message says why."""


class TooManyActive(RuntimeError):
    """The user already has as many queued or running searches as allowed (HTTP 429)."""

    def __init__(self, user: str, active: int, limit: int) -> None:
        self.active, self.limit = active, limit
        super().__init__(f"user {user!r} has {active} queued or running searches; the limit is "
                         f"{limit} (setting HURRICANE_MAX_ACTIVE_SEARCHES): wait for one to "
                         "finish, or cancel one")


@dataclass
class _Cached:
    at: float
    value: dict[str, Any]


def _result(store: ArtifactStore, search_id: str, step: str) -> dict[str, Any] | None:
    try:
        return store.get_json(result_key(search_id, step))  # type: ignore[no-any-return]
    except ArtifactNotFound:
        return None


def fetched(meta: dict[str, Any], device: str) -> list[str]:
    """What `hurricane fetch` downloads for ``device``: the artifacts the search's steps
    publish for it (keys relative to the search), then the report."""
    return [*device_artifacts(meta["plan"], device).values(), "report.json", "report.md"]


def winners(store: ArtifactStore, search_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Per device: the architecture found so far, its supernet top-1 and predicted latency,
    then (once retrained and exported) its test top-1 and measured latency."""
    out: dict[str, Any] = {}
    found = device_winners(meta["plan"], lambda s: _result(store, search_id, s))
    for dev, (s, r) in found.items():
        out[dev] = {"step": s, "arch": r["winner"], "supernet_top1": r["supernet_accuracy"],
                    "predicted_latency_ms": r["latency_ms"], "budget_ms": r["budget_ms"]}
    retrain = _result(store, search_id, "retrain") or {}
    for dev, r in retrain.get("devices", {}).items():
        out.setdefault(dev, {})["top1"] = r.get("test_top1")
    export = _result(store, search_id, "export") or {}
    for dev, r in export.get("devices", {}).items():
        out.setdefault(dev, {}).update(measured_latency_ms=r.get("measured_latency_ms"),
                                       predicted_latency_ms=r.get("predicted_latency_ms"),
                                       **({"latency_check": r["latency_check"]}
                                          if r.get("latency_check") else {}))
    return out


def summary_numbers(view: dict[str, Any]) -> dict[str, Any]:
    """A listing's progress (steps succeeded of the plan) and per-device results: the retrained
    top-1, the latency (measured if known, else predicted) and the budget, null until known."""
    done = sum(1 for s in view["plan"] if view["steps"].get(s, {}).get("state") == "succeeded")
    results = {}
    for dev in view["targets"]:
        w = view["devices"].get(dev) or {}
        measured = w.get("measured_latency_ms")
        results[dev] = {"top1": w.get("top1"), "budget_ms": w.get("budget_ms"),
                        "latency_ms": w.get("predicted_latency_ms") if measured is None
                        else measured}
    return {"progress": {"done": done, "total": len(view["plan"])}, "results": results}


class SearchService:
    def __init__(self, settings: Settings, store: ArtifactStore, celery: Celery,
                 r: redis.Redis) -> None:
        self.settings, self.store, self.celery, self.redis = settings, store, celery, r
        self._cache: dict[str, _Cached] = {}
        self._meta: dict[str, _Cached] = {}
        self._encoded: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._lock = threading.Lock()
        self._refreshing: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- reading ------------------------------------------------------------------------------

    def cached_meta(self, search_id: str) -> dict[str, Any] | None:
        hit = self._meta.get(search_id)
        return hit.value if hit and time.monotonic() - hit.at < META_TTL_S else None

    def cached_view_json(self, search_id: str) -> bytes | None:
        """The encoded view when it is fresh enough to serve without touching the store."""
        hit = self._cache.get(search_id)
        enc = self._encoded.get(search_id)
        if hit is None or enc is None or enc[0] is not hit.value:
            return None
        age = time.monotonic() - hit.at
        if age < self.settings.status_cache_s or (hit.value["state"] in TERMINAL and age < 5.0):
            return enc[1]
        return None

    def meta(self, search_id: str) -> dict[str, Any]:
        """The search's creation record (immutable: kept a few seconds per process)."""
        now = time.monotonic()
        hit = self._meta.get(search_id)
        if hit and now - hit.at < META_TTL_S:
            return hit.value
        meta = load_meta(self.store, search_id)
        with self._lock:
            if len(self._meta) > 10_000:
                self._meta.clear()
            self._meta[search_id] = _Cached(now, meta)
        return meta

    def view_json(self, search_id: str) -> bytes:
        """``view`` encoded once per refresh (the status route's hot path)."""
        v = self.view(search_id)
        hit = self._encoded.get(search_id)
        if hit is not None and hit[0] is v:
            return hit[1]
        body = json.dumps(v, default=str).encode()
        self._encoded[search_id] = (v, body)
        return body

    def view(self, search_id: str, *, fresh: bool = False) -> dict[str, Any]:
        """The search's summary with per-unit progress and per-device winners; reused for
        ``status_cache_s`` (terminal searches for 5 s). Older, it is refreshed in the
        background and the caller gets the view it had until the refresh is done (never one
        older than ``STALE_MAX_S``). ``fresh``, a first read, or a ``status_cache_s`` of 0
        read the store at once."""
        ttl = self.settings.status_cache_s
        now = time.monotonic()
        hit = self._cache.get(search_id)
        if hit and not fresh and (now - hit.at < ttl or (hit.value["state"] in TERMINAL
                                  and now - hit.at < 5.0)):
            return hit.value
        if fresh or hit is None or ttl == 0 or now - hit.at > STALE_MAX_S:
            return self._compute(search_id)
        # a refresh that finds the search gone (purged by another API process) forgets it:
        # the next read computes at once and answers 404
        self._refresh(search_id)
        return hit.value

    def _refresh(self, search_id: str) -> concurrent.futures.Future[dict[str, Any]]:
        """One background refresh per search at a time."""
        with self._lock:
            fut = self._refreshing.get(search_id)
            if fut is None:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        REFRESH_THREADS, thread_name_prefix="status-refresh")
                fut = self._pool.submit(self._compute, search_id, True)
                self._refreshing[search_id] = fut
            return fut

    def _forget(self, search_id: str) -> None:
        with self._lock:
            self._cache.pop(search_id, None)
            self._encoded.pop(search_id, None)
            self._meta.pop(search_id, None)

    def _compute(self, search_id: str, background: bool = False) -> dict[str, Any]:
        try:
            return self._summary(search_id)
        except SearchNotFound:
            self._forget(search_id)  # purged (perhaps by another API process)
            raise
        finally:
            if background:
                with self._lock:
                    self._refreshing.pop(search_id, None)

    def _summary(self, search_id: str) -> dict[str, Any]:
        now = time.monotonic()
        v = summarize(self.store, search_id)
        v["targets"] = v["devices"]
        v["devices"] = winners(self.store, search_id, v)
        v["progress"] = self._progress(search_id) if v["state"] not in TERMINAL else {}
        for key, p in v["progress"].items():
            step, _, unit = key.partition("/")
            u = v["steps"].get(step, {}).get("units", {}).get(unit)
            if u is not None and u.get("state") in ("running", "retrying"):
                u["progress"] = p
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
                self._encoded.clear()
            old = self._cache.get(search_id)
            if old is None or old.at <= now:  # a refresh begun earlier never overwrites a newer view
                self._cache[search_id] = _Cached(now, v)
        return v

    def _progress(self, search_id: str) -> dict[str, Any]:
        try:
            raw = self.redis.hgetall(flight.progress_key(search_id))
        except redis.RedisError:
            return {}  # transient by design: the durable state is still shown
        out = {}
        for k, val in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                out[k.decode() if isinstance(k, bytes) else str(k)] = json.loads(val)
        return out

    def list_searches(self, user: User, *, state: str | None, limit: int, cursor: str | None,
             owner: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The caller's searches (an admin's: everyone's, or ``owner``'s), newest first."""
        who = [owner] if owner else (owners(self.store) if user.is_admin else [user.name])
        entries = sorted(((stamp, sid) for o in who for stamp, sid in owned_searches(self.store, o)),
                         reverse=True)
        if cursor:
            entries = [e for e in entries if f"{e[0]}-{e[1]}" < cursor]
        out: list[dict[str, Any]] = []
        nxt = None
        for stamp, sid in entries:
            try:
                v = self.view(sid)
            except SearchNotFound:
                continue
            if state and v["state"] != state:
                continue
            out.append({k: v[k] for k in ("search_id", "name", "owner", "strategy", "state",
                                          "created")}
                       | {"finished": v.get("finished"), "devices": v["targets"]}
                       | summary_numbers(v))
            if len(out) == limit:
                nxt = f"{stamp}-{sid}"
                break
        return out, nxt

    # -- writing ------------------------------------------------------------------------------

    def active_count(self, user: str) -> int:
        """The user's searches that are queued or running (two listings, no per-search read)."""
        active = set(active_searches(self.store))
        return sum(1 for _, sid in owned_searches(self.store, user) if sid in active)

    @contextlib.contextmanager
    def _admission(self, user: User) -> Iterator[None]:
        """Checks the user's active searches and holds a per-user lock (Redis, so every API
        process agrees) until the new one is recorded: two racing POSTs cannot both pass."""
        limit = self.settings.max_active_searches
        if user.is_admin and self.settings.admins_exempt:
            yield
            return
        lock = self.redis.lock(f"hurricane:lock:admit:{user.name}", timeout=60,
                               blocking_timeout=15)
        try:
            held = bool(lock.acquire())
        except redis.RedisError:
            held = False  # the count is still checked; only the race stays open meanwhile
        try:
            n = self.active_count(user.name)
            if n >= limit:
                raise TooManyActive(user.name, n, limit)
            yield
        finally:
            if held:
                with contextlib.suppress(redis.RedisError):
                    lock.release()

    def submit(self, spec: SearchSpec, user: User, *,
               idempotency: str | None = None) -> tuple[str, bool]:
        """Records the search and enqueues it; (id, created). With an idempotency key a
        retried submission returns the first one's id; the same key with another spec is a
        conflict. A user at their limit of active searches gets TooManyActive."""
        digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True)
                                .encode()).hexdigest()
        claim: dict[str, Any] | None = None
        if idempotency is not None:
            from hurricane.runs.records import new_search_id

            key = idempotency_key(user.name, idempotency)
            claim = {"search_id": new_search_id(spec), "spec_sha256": digest}
            if not self.store.put_json(key, claim, if_absent=True):
                claim = self.store.get_json(key)
                if claim["spec_sha256"] != digest:
                    raise Conflict("this Idempotency-Key was used for another spec; use a new key")
                if self.store.exists(search_key(claim["search_id"], "search.json")):
                    return claim["search_id"], False
        with self._admission(user):
            sid = submit(spec, self.store, claim["search_id"] if claim else None,
                         owner=user.name)
            for d in spec.devices:  # the search keeps the imported table it was submitted with
                if d.table == "imported":
                    found = tables.resolve(self.store, user.name, d.name)
                    if found is None:
                        raise Conflict(f"the table of device {d.name!r} was deleted meanwhile")
                    self.store.put_bytes(search_key(sid, "inputs", "tables", f"{d.name}.json"),
                                         self.store.get_bytes(found[0]), if_absent=True)
                    # a few-shot device's predictor (POST /v1/devices/{name}/adapt) with it
                    pkey = found[0].rsplit("/", 1)[0] + "/predictor.json"
                    if self.store.exists(pkey):
                        self.store.put_bytes(
                            search_key(sid, "inputs", "tables", f"{d.name}.predictor.json"),
                            self.store.get_bytes(pkey), if_absent=True)
            mark_active(self.store, sid)
        self._enqueue(sid)
        with contextlib.suppress(Exception):  # read here, in a worker thread, not by the route
            self.meta(sid)
            self.view(sid, fresh=True)
        return sid, True

    def _enqueue(self, search_id: str) -> None:
        try:
            enqueue_advance(self.celery, search_id, settings=self.settings)
        except Exception as err:
            log.warning("search %s recorded but not enqueued (%s): the reconciler will pick it "
                        "up", search_id, type(err).__name__)

    def cancel(self, search_id: str, user: User) -> dict[str, Any]:
        v = self.view(search_id, fresh=True)
        if v["state"] == "succeeded":
            raise Conflict("the search already succeeded; nothing to cancel (DELETE with "
                           "?purge=true removes it)")
        if v["state"] != "cancelled":
            record_action(self.store, search_id, "cancel", by=user.name)
            mark_active(self.store, search_id, False)
            with contextlib.suppress(Exception):
                revoke_queued(self.celery, search_id, settings=self.settings)
        return self.view(search_id, fresh=True)

    def resume(self, search_id: str, user: User) -> dict[str, Any]:
        v = self.view(search_id, fresh=True)
        if v["state"] not in ("failed", "cancelled"):
            raise Conflict(f"the search is {v['state']}; only failed or cancelled searches resume")
        with self._admission(user):
            record_action(self.store, search_id, "resume", by=user.name)
            mark_active(self.store, search_id)
        self._enqueue(search_id)
        return self.view(search_id, fresh=True)

    def purge(self, search_id: str, user: User) -> int:
        """Stops the search's running work, then deletes every object of it and its index
        entries (``hurricane.runs.purge``: a tombstone stays, so nothing that outlives the purge
        writes into the prefix); returns how many objects were deleted."""
        from hurricane.runs.purge import purge_search

        self.meta(search_id)  # SearchNotFound: 404
        s = self.settings
        with contextlib.suppress(Exception):
            revoke_queued(self.celery, search_id, settings=s)
        result = purge_search(self.store, search_id, by=user.name, wait_s=s.purge_wait_s,
                              poll_s=min(0.2, s.cancel_poll_s), stale_s=s.job_stale_s,
                              hold=lambda: self._advance_lock(search_id))
        if result.unstopped:
            log.warning("purge %s: %s still ran after %.0f s; deleted anyway (they write "
                        "nothing more)", search_id, ", ".join(result.unstopped), result.waited_s)
        with contextlib.suppress(Exception):  # its Jobs go with their owner object
            enqueue_cleanup(self.celery, search_id)
            if result.unstopped:  # sweep again once what still ran has surely ended
                enqueue_cleanup(self.celery, search_id, countdown=s.stop_wait_s)
        self._forget(search_id)
        return result.deleted

    @contextlib.contextmanager
    def _advance_lock(self, search_id: str) -> Iterator[None]:
        """The search's advance lock for the deletion (none when Redis cannot give it: the
        tombstone still refuses every write of the search's work)."""
        lock = None
        try:
            lock = flight.search_lock(self.redis, search_id, blocking_timeout=10)
            if not lock.acquire():
                lock = None
        except redis.RedisError:
            lock = None
        try:
            if lock is None:
                yield
            else:
                with flight.renewed(lock):
                    yield
        finally:
            if lock is not None:
                with contextlib.suppress(redis.RedisError):
                    lock.release()

    # -- artifacts ----------------------------------------------------------------------------

    def artifacts(self, search_id: str, *, prefix: str = "", checksums: bool = False,
                  records: bool = False) -> list[dict[str, Any]]:
        base = f"searches/{search_id}/"
        keys = self.store.list(base + prefix.strip("/") if prefix.strip("/") else base.rstrip("/"))
        out = []
        for k in keys:
            rel = k[len(base):]
            if not records and rel.startswith(INTERNAL):
                continue
            item: dict[str, Any] = {"key": rel}
            if checksums:
                info = self.store.stat(k)
                item.update(size=info.size, sha256=info.sha256)
            out.append(item)
        return out

    def report(self, search_id: str, fmt: str) -> bytes:
        name = "report.md" if fmt == "md" else "report.json"
        return self.store.get_bytes(report_key(search_id, name))


def sign(settings: Settings, key: str, expires: int) -> str:
    secret = settings.signing_key.get_secret_value().encode()
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(settings: Settings, key: str, expires_s: int) -> str:
    """An API-served download path (local-directory store): valid until it expires."""
    expires = int(time.time()) + expires_s
    return f"/v1/files/{quote(key)}?expires={expires}&sig={sign(settings, key, expires)}"


def check_signature(settings: Settings, key: str, expires: int, sig: str) -> bool:
    if not settings.signing_key.get_secret_value() or expires < time.time():
        return False
    return hmac.compare_digest(sign(settings, key, expires), sig)
