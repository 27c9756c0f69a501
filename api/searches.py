"""Search routes: submit, list, view, cancel/purge, resume, artifacts, report, events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError

from hurricane.api.body import invalid, parse_document, pydantic_errors, read_limited
from hurricane.api.deps import CurrentUser, OwnedSearch, ServiceDep, SettingsDep, StoreDep, base_url
from hurricane.api.schemas import ArtifactsPublic, SearchCreated, SearchesPublic, SearchPublic
from hurricane.api.service import Conflict, TooManyActive, fetched, signed_path
from hurricane.data.packed import ClassCountMismatch, DatasetError, check_packed
from hurricane.data.sources import SourceNotAllowed, SourcePolicy
from hurricane.latency import tables
from hurricane.runs.records import SEARCH_STATES, TERMINAL
from hurricane.service import admission
from hurricane.service.admission import Limits
from hurricane.service.tokens import User
from hurricane.settings import Settings
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, check_folder, check_key

router = APIRouter(prefix="/v1/searches", tags=["searches"])
RETRY_AFTER_S = 30  # a 429's Retry-After: searches take minutes, a retry within seconds is noise

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a search spec (`hurricane spec schema`) as JSON or YAML, at most 1 MiB",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchSpec"},
                                 "example": {"name": "digits-small", "dataset": {"name": "digits"},
                                             "devices": [{"name": "cpu",
                                                          "budget_fraction": 0.5}]}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def admission_errors(spec: SearchSpec, user: User, s: Settings,
                     store: ArtifactStore) -> list[dict[str, Any]]:
    """Everything about ``spec`` that this service refuses though the schema allows it: the
    operator's limits, data sources outside the allowed roots and buckets, and what only the
    service can check (workers see the object store, not the API's machine). Blocking: run
    it in a worker thread."""
    errors: list[dict[str, Any]] = []

    def add(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> None:
        errors.append({"loc": ["body", *loc], "msg": msg, "type": kind})

    exempt = user.is_admin and s.admins_exempt
    if not exempt:
        for loc, msg in admission.check(spec, Limits.from_settings(s)):
            add(loc, msg, "limit")
    ds = spec.dataset
    try:
        SourcePolicy.from_settings(s).check(ds, user=None if user.is_admin else user.name)
    except SourceNotAllowed as err:
        add(("dataset", "path"), str(err), "source_not_allowed")
    else:
        if ds.name == "packed" and ds.path and ds.path.startswith("s3://"):
            try:
                check_packed(ds.path, spec.backbone.num_classes)
            except ClassCountMismatch as err:
                add(("backbone", "num_classes"), str(err))
            except (DatasetError, ValueError) as err:
                add(("dataset", "path"), str(err))
    for i, d in enumerate(spec.devices):
        if d.table is None:
            continue
        if d.table != "imported":
            add(("devices", i, "table"),
                f"a file path ({d.table[:200]}) on the API's machine is not visible to the "
                f"workers; import the table with PUT /v1/devices/{d.name}/table and give "
                "table: imported")
        elif tables.resolve(store, user.name, d.name) is None:
            add(("devices", i, "table"),
                f"no table is imported for device {d.name!r} (yours or shared); PUT "
                f"/v1/devices/{d.name}/table first")
    return errors


def _admit(raw: bytes, ctype: str | None, user: User, s: Settings,
           store: ArtifactStore) -> SearchSpec:
    """Parses, validates and admits a spec (a worker thread: YAML parsing and the store's
    checks block); 422 names every refused field."""
    data = parse_document(raw, ctype, "the spec")
    if not isinstance(data, dict):
        invalid(["body"], f"a search spec is a mapping of fields, got {type(data).__name__}")
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as err:
        pydantic_errors(err)
    errors = admission_errors(spec, user, s, store)
    if errors:
        raise RequestValidationError(errors)
    return spec


def too_many(err: TooManyActive) -> HTTPException:
    return HTTPException(429, str(err), headers={"Retry-After": str(RETRY_AFTER_S)})


@router.post("", status_code=201, response_model=SearchCreated, openapi_extra=SPEC_BODY,
             responses={200: {"model": SearchCreated, "description": "Idempotency-Key replay"},
                        409: {"description": "Idempotency-Key reused with another spec"},
                        413: {"description": "spec larger than 1 MiB"},
                        429: {"description": "too many active searches (Retry-After)"}})
async def create_search(
    request: Request, response: Response, user: CurrentUser, svc: ServiceDep, s: SettingsDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="a retried POST with the same key returns the same search")] = None,
    owner: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][-a-z0-9_.]*$",
                                       description=(
        "admins: submit on behalf of this user, whose limits, data sources and searches "
        "apply (the HurricaneSearch operator: the resource's namespace)"))] = None,
) -> SearchCreated:
    """Submit a search spec (JSON or YAML); it is checked against the operator's limits and
    data sources, recorded durably, then enqueued."""
    if owner is not None and owner != user.name:
        if not user.is_admin:
            raise HTTPException(403, "only an admin submits on behalf of another user (owner)")
        user = User(owner)  # the owner's limits, sources and tenancy, not the admin's
    raw = await read_limited(request, s.max_spec_bytes, "the spec")
    spec = await run_in_threadpool(_admit, raw, request.headers.get("content-type"), user, s,
                                   store)
    try:
        sid, created = await run_in_threadpool(svc.submit, spec, user, idempotency=idempotency_key)
    except Conflict as err:
        raise HTTPException(409, str(err)) from None
    except TooManyActive as err:
        raise too_many(err) from None
    location = f"/v1/searches/{sid}"
    response.headers["Location"] = location
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    view = await run_in_threadpool(svc.view, sid)
    return SearchCreated(search_id=sid, state=view["state"], location=location, created=created)


@router.get("", response_model=SearchesPublic)
def list_searches(
    user: CurrentUser, svc: ServiceDep,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(SEARCH_STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[-A-Za-z0-9.]+$")] = None,
    owner: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][-a-z0-9_.]*$",
                                       description="admins: only this user's")] = None,
) -> SearchesPublic:
    """The caller's searches, newest first (an admin sees everyone's)."""
    if owner and not user.is_admin and owner != user.name:
        raise HTTPException(403, "only an admin lists another user's searches")
    data, nxt = svc.list_searches(user, state=state, limit=limit, cursor=cursor, owner=owner)
    return SearchesPublic.model_validate({"data": data, "count": len(data), "next_cursor": nxt})


@router.get("/{search_id}", response_model=SearchPublic)
async def get_search(search_id: OwnedSearch, svc: ServiceDep) -> Response:
    """State, plan, per-step and per-device state with timings and live progress, and each
    device's winner (top-1, latency) as far as the search got."""
    body = svc.cached_view_json(search_id) or await run_in_threadpool(svc.view_json, search_id)
    return Response(body, media_type="application/json")


@router.delete("/{search_id}", response_model=None, status_code=202,
               responses={204: {"description": "purged"}, 409: {"description": "already done"}})
def cancel_search(search_id: OwnedSearch, user: CurrentUser, svc: ServiceDep,
                  purge: bool = False) -> Any:
    """Cancel: queued tasks are revoked and running jobs stopped; artifacts are kept unless
    ``purge=true`` (then every object of the search is deleted)."""
    if purge:
        svc.purge(search_id, user)
        return Response(status_code=204)
    try:
        return svc.cancel(search_id, user)
    except Conflict as err:
        raise HTTPException(409, str(err)) from None


@router.post("/{search_id}/resume", status_code=202, response_model=SearchPublic,
             responses={429: {"description": "too many active searches (Retry-After)"}})
def resume_search(search_id: OwnedSearch, user: CurrentUser, svc: ServiceDep) -> dict[str, Any]:
    """Run a failed or cancelled search again from its stored step results."""
    try:
        return svc.resume(search_id, user)
    except Conflict as err:
        raise HTTPException(409, str(err)) from None
    except TooManyActive as err:
        raise too_many(err) from None


def _url(store: ArtifactStore, s: SettingsDep, base: str, key: str) -> str:
    url = store.presign_get(key, s.presign_expiry_s, filename=key.rsplit("/", 1)[-1])
    return url or base + signed_path(s, key, s.presign_expiry_s)


@router.get("/{search_id}/artifacts", response_model=ArtifactsPublic)
def list_artifacts(
    search_id: OwnedSearch, svc: ServiceDep, store: StoreDep, s: SettingsDep, request: Request,
    prefix: Annotated[str, Query(max_length=300, pattern=r"^[A-Za-z0-9._=+/-]*$")] = "",
    device: Annotated[str | None, Query(pattern=r"^[a-z0-9][-a-z0-9]{0,31}$", description=(
        "only what `hurricane fetch` downloads for this device: final.pt, arch.json, "
        "metrics.json, model.onnx and the report, with sizes and SHA-256"))] = None,
    checksums: bool = False,
    records: Annotated[bool, Query(description="also the search's state records")] = False,
) -> dict[str, Any]:
    """Artifact keys (relative to the search), sizes and checksums, with presigned URLs."""
    try:
        check_folder(prefix.strip("/"))
    except ValueError:
        invalid(["query", "prefix"], f"invalid prefix {prefix!r}: '/'-separated names of "
                "[A-Za-z0-9._=+-], no empty, '.' or '..' parts")
    base = base_url(request, s)
    if device is not None:
        meta = svc.meta(search_id)
        if device not in meta.get("devices", []):
            raise HTTPException(404, f"device {device!r} is not a target of this search; "
                                f"targets: {', '.join(meta.get('devices', []))}")
        rels = fetched(meta, device)
        items = []
        for rel in rels:
            key = f"searches/{search_id}/{rel}"
            if store.exists(key):
                info = store.stat(key)
                items.append({"key": rel, "size": info.size, "sha256": info.sha256})
    else:
        items = svc.artifacts(search_id, prefix=prefix, checksums=checksums, records=records)
    for it in items:
        it["url"] = _url(store, s, base, f"searches/{search_id}/{it['key']}")
    return {"data": items, "count": len(items), "expires_s": s.presign_expiry_s}


@router.get("/{search_id}/artifacts/{key:path}", status_code=307, response_class=RedirectResponse,
            responses={307: {"description": "redirect to a presigned URL"}})
def get_artifact(search_id: OwnedSearch, key: str, store: StoreDep, s: SettingsDep,
                 request: Request) -> RedirectResponse:
    """Redirect to a time-limited download URL of one artifact."""
    try:
        full = check_key(f"searches/{search_id}/{key}")
    except ValueError:
        invalid(["path", "key"], f"invalid artifact key {key!r}: '/'-separated names of "
                "[A-Za-z0-9._=+-], no '.' or '..' parts")
    if not store.exists(full):
        raise HTTPException(404, f"no artifact {key!r} in search {search_id!r}")
    return RedirectResponse(_url(store, s, base_url(request, s), full), status_code=307)


@router.get("/{search_id}/report", response_model=None)
def get_report(search_id: OwnedSearch, svc: ServiceDep,
               format: Annotated[str, Query(pattern="^(json|md)$")] = "json") -> Response:
    """The search's report (once it succeeded): JSON, or Markdown with ``format=md``."""
    from hurricane.storage.store import ArtifactNotFound

    try:
        body = svc.report(search_id, format)
    except ArtifactNotFound:
        state = svc.view(search_id)["state"]
        raise HTTPException(404, f"no report yet: the report is written when the search "
                            f"succeeds (it is {state})") from None
    return Response(body, media_type="text/markdown" if format == "md" else "application/json")


def _sse(event: str, data: Any, n: int) -> str:
    return f"id: {n}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events between two views: search state, steps, units and progress."""
    out: list[tuple[str, dict[str, Any]]] = []
    for step, st in new["steps"].items():
        before = (old or {}).get("steps", {}).get(step, {"state": "pending"})
        if (before.get("state"), before.get("reason")) != (st["state"], st.get("reason")):
            out.append(("step", {"step": step, "state": st["state"], "reason": st.get("reason"),
                                 "seconds": st.get("seconds"), "error": st.get("error")}))
        for unit, u in st.get("units", {}).items():
            bu = before.get("units", {}).get(unit, {})
            key = ("state", "attempt", "reason")
            if tuple(bu.get(k) for k in key) != tuple(u.get(k) for k in key):
                out.append(("unit", {"step": step, "unit": unit, "state": u.get("state"),
                                     "reason": u.get("reason"), "attempt": u.get("attempt"),
                                     "seconds": u.get("seconds"), "error": u.get("error")}))
    for key, p in new.get("progress", {}).items():
        if (old or {}).get("progress", {}).get(key) != p:
            step, _, unit = key.partition("/")
            out.append(("progress", {"step": step, "unit": unit, **p}))
    seen = set((old or {}).get("warnings") or ())
    out += [("warning", {"message": w}) for w in new.get("warnings") or () if w not in seen]
    if old is None or old["state"] != new["state"]:
        out.append(("state", {"state": new["state"], "error": new.get("error"),
                              "failed_step": new.get("failed_step")}))
    return out


@router.get("/{search_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: state, step, unit, progress, "
                             "warning, end"}})
async def search_events(search_id: OwnedSearch, svc: ServiceDep, s: SettingsDep,
                        request: Request) -> StreamingResponse:
    """Step changes and progress as Server-Sent Events until the search ends."""

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        old: dict[str, Any] | None = None
        n, last = 0, time.monotonic()
        while True:
            if await request.is_disconnected():
                return
            view = await anyio.to_thread.run_sync(svc.view, search_id)
            for event, data in _changes(old, view):
                n += 1
                yield _sse(event, data, n)
                last = time.monotonic()
            old = view
            if view["state"] in TERMINAL:
                yield _sse("end", {"state": view["state"], "devices": view.get("devices", {}),
                                   "warnings": view.get("warnings", [])}, n + 1)
                return
            if time.monotonic() - last > 15:
                yield ": keep-alive\n\n"
                last = time.monotonic()
            await anyio.sleep(s.events_poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
