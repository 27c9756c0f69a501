"""Search routes: submit, list, view, cancel/purge, resume, artifacts, report, events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError

from hurricane.api.body import invalid, parse_document, pydantic_errors, read_limited
from hurricane.api.deps import CurrentUser, OwnedSearch, ServiceDep, SettingsDep, StoreDep, base_url
from hurricane.api.schemas import ArtifactsPublic, SearchCreated, SearchesPublic, SearchPublic
from hurricane.api.service import FETCHED, Conflict, signed_path
from hurricane.packed import DatasetError, peek
from hurricane.records import SEARCH_STATES, TERMINAL
from hurricane.spec import SearchSpec
from hurricane.store import ArtifactStore, check_key

router = APIRouter(prefix="/v1/searches", tags=["searches"])

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a search spec (`hurricane spec schema`) as JSON or YAML, at most 1 MiB",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def imported_table_key(name: str) -> str:
    return f"devices/{name}/table.json"


def check_reachable(spec: SearchSpec, store: ArtifactStore) -> None:
    """What only the service can check: workers see the object store, not this machine."""
    ds = spec.dataset
    if ds.name == "packed" and ds.path and ds.path.startswith("s3://"):
        try:
            meta = peek(ds.path)
        except (DatasetError, ValueError) as err:
            invalid(["body", "dataset", "path"], str(err))
        if len(meta["classes"]) != spec.backbone.num_classes:
            invalid(["body", "backbone", "num_classes"],
                    f"the packed dataset at {ds.path} has {len(meta['classes'])} classes; "
                    f"backbone.num_classes is {spec.backbone.num_classes}")
    for i, d in enumerate(spec.devices):
        if d.table is None:
            continue
        if d.table != "imported":
            invalid(["body", "devices", i, "table"],
                    f"a file path ({d.table}) on the API's machine is not visible to the "
                    f"workers; import the table with PUT /v1/devices/{d.name}/table and give "
                    "table: imported")
        if not store.exists(imported_table_key(d.name)):
            invalid(["body", "devices", i, "table"],
                    f"no table is imported for device {d.name!r}; PUT /v1/devices/{d.name}/table "
                    "first")


@router.post("", status_code=201, response_model=SearchCreated, openapi_extra=SPEC_BODY,
             responses={200: {"model": SearchCreated, "description": "Idempotency-Key replay"},
                        409: {"description": "Idempotency-Key reused with another spec"},
                        413: {"description": "spec larger than 1 MiB"}})
async def create_search(
    request: Request, response: Response, user: CurrentUser, svc: ServiceDep, s: SettingsDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="a retried POST with the same key returns the same search")] = None,
) -> SearchCreated:
    """Submit a search spec (JSON or YAML); it is recorded durably, then enqueued."""
    raw = await read_limited(request, s.max_spec_bytes, "the spec")
    data = parse_document(raw, request.headers.get("content-type"), "the spec")
    if not isinstance(data, dict):
        invalid(["body"], f"a search spec is a mapping of fields, got {type(data).__name__}")
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as err:
        pydantic_errors(err)
    check_reachable(spec, store)
    try:
        sid, created = await run_in_threadpool(svc.submit, spec, user, idempotency=idempotency_key)
    except Conflict as err:
        raise HTTPException(409, str(err)) from None
    location = f"/v1/searches/{sid}"
    response.headers["Location"] = location
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return SearchCreated(search_id=sid, state=svc.view(sid)["state"], location=location,
                         created=created)


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


@router.post("/{search_id}/resume", status_code=202, response_model=SearchPublic)
def resume_search(search_id: OwnedSearch, user: CurrentUser, svc: ServiceDep) -> dict[str, Any]:
    """Run a failed or cancelled search again from its stored step results."""
    try:
        return svc.resume(search_id, user)
    except Conflict as err:
        raise HTTPException(409, str(err)) from None


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
    if ".." in prefix.split("/"):
        invalid(["query", "prefix"], "must not contain '..'")
    base = base_url(request, s)
    if device is not None:
        meta = svc.meta(search_id)
        if device not in meta.get("devices", []):
            raise HTTPException(404, f"device {device!r} is not a target of this search; "
                                f"targets: {', '.join(meta.get('devices', []))}")
        rels = [t.format(device=device) for t in FETCHED.values()] + ["report.json", "report.md"]
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
    from hurricane.store import ArtifactNotFound

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
