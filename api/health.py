"""Liveness, readiness (Redis and the store reachable), Prometheus metrics, and the downloads
the API serves itself for a local-directory store (signed, time-limited URLs)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hurricane.api.deps import RedisDep, SettingsDep, StoreDep
from hurricane.api.service import check_signature
from hurricane.latency.devices import DEVICES
from hurricane.runs.records import SEARCH_STATES, TERMINAL, SearchNotFound, owned_searches, owners, summarize
from hurricane.settings import Settings
from hurricane.storage.store import ArtifactStore, LocalStore, check_key
from hurricane.workers.app import CONTROL, TRAIN, profile_queue

router = APIRouter(tags=["health"])
files = APIRouter(tags=["artifacts"])

STEP_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 48 * 3600)
# The method label takes these values and "other": a client's made-up methods never add series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis or the store is unreachable"}})
def readyz(s: SettingsDep, store: StoreDep, r: RedisDep) -> JSONResponse:
    """Ready to serve: Redis answers a PING and the object store a listing."""
    checks: dict[str, str] = {}
    try:
        r.ping()
        checks["redis"] = "ok"
    except redis.RedisError as err:
        checks["redis"] = f"unreachable: {type(err).__name__}"
    try:
        t0 = time.monotonic()
        store.children("index")
        checks["store"] = "ok" if time.monotonic() - t0 < 10 else "slow"
    except Exception as err:
        checks["store"] = f"unreachable: {type(err).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)


class SearchCollector:
    """Searches by state, step durations and queue depth, computed at scrape time (terminal
    searches are summarised once and remembered)."""

    def __init__(self, settings: Settings, store: ArtifactStore, r: redis.Redis) -> None:
        self.settings, self.store, self.redis = settings, store, r
        self._done: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._last: tuple[float, list[Any]] | None = None

    def collect(self) -> Any:
        with self._lock:
            if self._last and time.monotonic() - self._last[0] < 5.0:
                yield from self._last[1]
                return
            families = self._families()
            self._last = (time.monotonic(), families)
        yield from families

    def _families(self) -> list[Any]:
        counts = dict.fromkeys(SEARCH_STATES, 0)
        durations: dict[str, list[float]] = {}
        for owner in owners(self.store):
            for _, sid in owned_searches(self.store, owner):
                v = self._done.get(sid)
                if v is None:
                    try:
                        v = summarize(self.store, sid)
                    except SearchNotFound:
                        continue
                    if v["state"] in TERMINAL and not self.store.exists(f"index/active/{sid}"):
                        self._done[sid] = v
                counts[v["state"]] = counts.get(v["state"], 0) + 1
                for step, st in v["steps"].items():
                    if st.get("state") == "succeeded" and st.get("seconds") is not None:
                        durations.setdefault(step, []).append(float(st["seconds"]))
        g = GaugeMetricFamily("hurricane_searches", "Searches by state", labels=["state"])
        for state, n in counts.items():
            g.add_metric([state], n)
        h = HistogramMetricFamily("hurricane_step_duration_seconds",
                                  "Wall time of finished steps", labels=["step"])
        for step, xs in durations.items():
            buckets = [(str(b), sum(x <= b for x in xs)) for b in STEP_BUCKETS]
            h.add_metric([step], [*buckets, ("+Inf", len(xs))], sum_value=sum(xs))
        q = GaugeMetricFamily("hurricane_queue_depth", "Tasks waiting per queue", labels=["queue"])
        labels = sorted({DEVICES.get(n).node_label for n in DEVICES})
        for name in (CONTROL, TRAIN, *(profile_queue(lb) for lb in labels)):
            try:
                q.add_metric([name], float(self.redis.llen(name)))
            except redis.RedisError:
                continue
        return [g, h, q]


class Metrics:
    """The registry of one app: HTTP request counts and latencies plus the search collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hurricane_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("hurricane_http_request_duration_seconds", "HTTP latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.collector: SearchCollector | None = None

    def attach(self, collector: SearchCollector) -> None:
        if self.collector is None:
            self.collector = collector
            self.registry.register(collector)  # type: ignore[arg-type]


class MetricsMiddleware:
    """Counts requests by route template (not raw path: ids would explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = method_label(scope["method"])
            self.metrics.requests.labels(method, path, str(status[0])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - t0)


async def metrics_allowed(request: Request, s: SettingsDep) -> None:
    """/metrics per HURRICANE_METRICS: disabled (404), token (the bearer token whose SHA-256
    is HURRICANE_METRICS_TOKEN_SHA256, else 401), or open."""
    if s.metrics == "disabled":
        raise HTTPException(404, "metrics are disabled: set HURRICANE_METRICS=token (with "
                            "HURRICANE_METRICS_TOKEN_SHA256) or open (chart: security.metrics)")
    if s.metrics == "token":
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if (scheme.lower() != "bearer" or not token.strip()
                or not hmac.compare_digest(digest, s.metrics_token_sha256 or "")):
            raise HTTPException(401, "metrics need the metrics token (Authorization: Bearer "
                                "<token>)", headers={"WWW-Authenticate": "Bearer"})


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_allowed)],
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
                       401: {"description": "HURRICANE_METRICS=token and no or another token"},
                       404: {"description": "HURRICANE_METRICS=disabled (the default)"}})
def metrics(request: Request, s: SettingsDep, store: StoreDep, r: RedisDep) -> Response:
    """Prometheus metrics: searches by state, step durations, queue depth, HTTP requests
    (behind HURRICANE_METRICS)."""
    m: Metrics = request.app.state.metrics
    m.attach(SearchCollector(s, store, r))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@files.get("/v1/files/{key:path}", response_class=FileResponse,
           responses={403: {"description": "bad or expired signature"}})
def download(key: str, s: SettingsDep, store: StoreDep,
             expires: Annotated[int, Query(ge=0, le=2**40)],
             sig: Annotated[str, Query(pattern="^[0-9a-f]{64}$")]) -> FileResponse:
    """A file of a local-directory store, through a signed link from the artifact routes."""
    try:
        check_key(key)
    except ValueError:
        raise HTTPException(422, f"invalid artifact key {key!r}") from None
    if not check_signature(s, key, expires, sig):
        raise HTTPException(403, "the download link is invalid or has expired; ask the "
                            "artifacts route for a new one")
    if not isinstance(store, LocalStore) or not store.exists(key):
        raise HTTPException(404, f"no artifact {key!r}")
    return FileResponse(store.path(key), filename=key.rsplit("/", 1)[-1])
