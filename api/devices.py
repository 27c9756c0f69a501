"""Device routes: the profiles the platform knows, imported latency tables (each its owner's
unless an admin shares it) and the latency-monotonicity (SRCC) matrix."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from hurricane.api.body import invalid, media_type, parse_document, pydantic_errors, read_limited
from hurricane.api.deps import CurrentUser, SettingsDep, StoreDep
from hurricane.api.schemas import TableImported, TablePublic
from hurricane.latency import tables
from hurricane.latency.devices import DEVICES
from hurricane.latency.latency_table import TableErrors, check_table
from hurricane.latency.proxy import matrix_json, plot_srcc, proxy_decisions, srcc_matrix_counts
from hurricane.nets.oppool import OPS
from hurricane.runs.records import now
from hurricane.service.tokens import USER, User
from hurricane.spec import check_ops
from hurricane.storage.store import ArtifactNotFound, ArtifactStore

DEVICE_NAME = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
MAX_CORRELATE_DEVICES = 64
MAX_CORRELATE_ARCHS = 100_000

router = APIRouter(prefix="/v1/devices", tags=["devices"])

DeviceName = Annotated[str, PathParam(pattern=DEVICE_NAME, description="the device's name in "
                                      "specs")]


class CorrelateRequest(BaseModel):
    """Latencies (ms) of the same architectures on several devices, one list per device in
    the same architecture order; ``null`` where a device has no measurement."""

    model_config = ConfigDict(extra="forbid")

    latencies: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)],
                    Annotated[list[float | None], Field(max_length=MAX_CORRELATE_ARCHS)]] = Field(
        ..., max_length=MAX_CORRELATE_DEVICES,
        description="device name -> latency per architecture (ms), equal lengths")
    proxy: str | None = Field(None, max_length=100,
                              description="decide reuse/adapt for every other device")
    threshold: float = Field(0.9, gt=0, le=1, description="SRCC at or above which to reuse")

    @field_validator("latencies")
    @classmethod
    def _shape(cls, v: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
        if len(v) < 2:
            raise ValueError(f"needs at least 2 devices, got {len(v)}")
        lengths = {name: len(xs) for name, xs in v.items()}
        if len(set(lengths.values())) != 1:
            shown = dict(list(lengths.items())[:8])
            raise ValueError(f"every device needs the same number of architectures, got {shown}")
        for name, xs in v.items():
            bad = [i for i, x in enumerate(xs) if x is not None and not (math.isfinite(x) and x > 0)]
            if bad:
                raise ValueError(f"{name!r}: latencies must be finite and > 0 (ms); bad at "
                                 f"positions {bad[:5]}")
        return v

    @model_validator(mode="after")
    def _proxy_known(self) -> CorrelateRequest:
        if self.proxy is not None and self.proxy not in self.latencies:
            raise ValueError(f"proxy {self.proxy!r} is not among the devices: "
                             f"{', '.join(list(self.latencies)[:10])}")
        return self


# ----- the table a request is about (lookup and permission, in one place) --------------------

def _scope_owner(user: User, shared: bool, owner: str | None) -> str | None:
    """Whose table a request names: the caller's own; ``shared`` (reading: anyone; writing:
    admins); ``owner`` (admins only: a non-admin gets 404, as for a table that is not there)."""
    if shared and owner:
        invalid(["query", "owner"], "give either shared=true or owner, not both")
    if shared:
        return None
    if owner and owner != user.name:
        if not user.is_admin:
            raise HTTPException(404, "no such table")
        return owner
    return user.name


async def table_scope(
    user: CurrentUser,
    shared: Annotated[bool, Query(description="the table an admin shared with everyone")] = False,
    owner: Annotated[str | None, Query(max_length=64, pattern=USER.pattern,
                                       description="admins: this user's table")] = None,
) -> str | None:
    return _scope_owner(user, shared, owner)


TableOwner = Annotated[str | None, Depends(table_scope)]


def _record(store: ArtifactStore, key: str) -> dict[str, Any]:
    try:
        rec = store.get_json(key.rsplit("/", 1)[0] + "/imported.json")
    except (ArtifactNotFound, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


# ----- routes ------------------------------------------------------------------------------

@router.get("")
def list_devices(user: CurrentUser, store: StoreDep) -> list[dict[str, Any]]:
    """Every registered device profile (backend, engine options, node label) and every
    imported table the caller's searches can use (``table: imported`` in a spec): their own
    and the shared ones."""
    seen = tables.visible(store, user.name)
    out = []
    for name in DEVICES:
        d = DEVICES.get(name)
        out.append({"name": name, "backend": d.backend, "node_label": d.node_label,
                    "description": d.description, "options": dict(d.options),
                    "imported_table": name in seen, "table_scope": seen.get(name)})
    for name, scope in sorted(seen.items()):
        if name not in DEVICES:
            out.append({"name": name, "backend": "table", "node_label": None,
                        "description": "imported latency table", "options": {},
                        "imported_table": True, "table_scope": scope})
    return out


TABLE_TYPES = {"text/csv": "csv", "application/csv": "csv", "application/json": "json",
               "text/plain": "csv"}


def _import(raw: bytes, ctype: str, name: str, owner: str | None, user: User,
            store: ArtifactStore) -> dict[str, Any]:
    """Parses, checks and stores a table (a worker thread: parsing and the store block)."""
    fmt = TABLE_TYPES[ctype]
    doc: str | dict[str, Any]
    if fmt == "json":
        doc = parse_document(raw, ctype, "the table", yaml_ok=False)
        if not isinstance(doc, dict):
            invalid(["body"], f"a JSON table is an object with 'ops', got {type(doc).__name__}")
    else:
        from hurricane.api.body import decode_text

        doc = decode_text(raw, "the table")
    try:
        table = check_table(doc, device=name, fmt=fmt, known_ops=set(OPS.names()))
    except TableErrors as err:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError([{"loc": ["body", where], "msg": msg, "type": "value_error"}
                                      for where, msg in err.errors]) from None
    record = {"by": user.name, "at": now(), "owner": owner, "shared": owner is None}
    tables.write(store, owner, name, table.to_json(), table.to_csv(), record)
    all_ops = sorted({o for row in table.ops.values() for o in row})
    return {"name": name, "layers": len(table.ops), "ops": all_ops,
            "entries": sum(len(r) for r in table.ops.values()), "fixed_ms": table.fixed_ms,
            "imported_by": user.name, "owner": owner, "shared": owner is None}


@router.put("/{name}/table", status_code=201, response_model=TableImported,
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}}},
            responses={403: {"description": "only an admin writes a shared table"},
                       413: {"description": "larger than 10 MiB"}})
async def import_table(request: Request, user: CurrentUser, s: SettingsDep, store: StoreDep,
                       name: DeviceName, owner: TableOwner) -> dict[str, Any]:
    """Import a layer × op latency table (CSV ``layer,op,median_ms[,iqr_ms]`` or JSON as
    `hurricane profile --out x.json` writes it) as the caller's own: their searches then
    target the device with ``{name: <name>, table: imported}``. An admin may write the shared
    table (``?shared=true``, every user's searches read it unless they have their own) or a
    user's (``?owner=``). Every bad row is reported with its line."""
    if owner is None and not user.is_admin:
        raise HTTPException(403, "only an admin writes a shared table; import your own "
                            "without shared=true")
    ctype = media_type(request.headers.get("content-type"), "text/csv")
    if ctype not in TABLE_TYPES:
        raise HTTPException(415, f"Content-Type {ctype!r} is not accepted; send text/csv or "
                            "application/json")
    raw = await read_limited(request, s.max_table_bytes, "the table")
    return await run_in_threadpool(_import, raw, ctype, name, owner, user, store)


def _found(store: ArtifactStore, owner: str | None, user: User, name: str) -> str:
    """The key of the table a GET or DELETE names; 404 when the caller may not see one."""
    if owner is None:
        key = tables.table_key(None, name)
        if store.exists(key):
            return key
    else:
        hit = tables.resolve(store, owner, name)
        if hit is not None and hit[1] == "own":
            return hit[0]
    raise HTTPException(404, f"no table {name!r}" + (" shared" if owner is None else
                                                      "" if owner == user.name else
                                                      f" of user {owner!r}"))


@router.get("/{name}/table", response_model=TablePublic,
            responses={404: {"description": "no such table (or not yours)"}})
def get_table(user: CurrentUser, store: StoreDep, name: DeviceName,
              owner: TableOwner) -> dict[str, Any]:
    """An imported table: the caller's own (or, with ``?shared=true``, the shared one)."""
    key = _found(store, owner, user, name)
    rec = _record(store, key)
    return {"name": name, "owner": owner, "shared": owner is None,
            "imported_by": rec.get("by"), "imported_at": rec.get("at"),
            "table": store.get_json(key)}


@router.delete("/{name}/table", status_code=204, response_class=Response,
               responses={404: {"description": "no such table (or not yours)"},
                          403: {"description": "only an admin deletes a shared table"}})
def delete_table(user: CurrentUser, store: StoreDep, name: DeviceName,
                 owner: TableOwner) -> Response:
    """Delete the caller's own table (admins: a shared one or a user's). Searches already
    submitted keep their copy."""
    _found(store, owner, user, name)
    if owner is None and not user.is_admin:
        raise HTTPException(403, "only an admin deletes a shared table")
    tables.remove(store, owner, name)
    return Response(status_code=204)


@router.post("/{name}/table/share", status_code=201, response_model=TableImported,
             responses={403: {"description": "only an admin shares a table"},
                        404: {"description": "the user has no such table"}})
def share_table(user: CurrentUser, store: StoreDep, name: DeviceName,
                owner: Annotated[str, Query(max_length=64, pattern=USER.pattern,
                                            description="whose table to share")]) -> dict[str, Any]:
    """Admins: make a user's table the shared one, which every user's searches read for this
    device name unless they imported their own."""
    if not user.is_admin:
        raise HTTPException(403, "only an admin shares a table")
    hit = tables.resolve(store, owner, name)
    if hit is None or hit[1] != "own":
        raise HTTPException(404, f"no table {name!r} of user {owner!r}")
    doc = store.get_json(hit[0])
    from hurricane.latency.latency_table import LatencyTable

    table = LatencyTable.from_json({**doc, "device": name})
    tables.write(store, None, name, table.to_json(), table.to_csv(),
                 {"by": user.name, "at": now(), "owner": None, "shared": True, "from": owner})
    return {"name": name, "layers": len(table.ops),
            "ops": sorted({o for row in table.ops.values() for o in row}),
            "entries": sum(len(r) for r in table.ops.values()), "fixed_ms": table.fixed_ms,
            "imported_by": user.name, "owner": None, "shared": True}


def _correlate(raw: bytes, ctype: str | None, fmt: str) -> Any:
    data = parse_document(raw, ctype, "the request", yaml_ok=False)
    try:
        req = CorrelateRequest.model_validate(data)
    except ValidationError as err:
        pydantic_errors(err)
    values = {k: [math.nan if x is None else x for x in v] for k, v in req.latencies.items()}
    try:
        names, matrix, counts = srcc_matrix_counts(values)
    except ValueError as err:  # e.g. too few common architectures
        invalid(["body", "latencies"], str(err))
    if fmt == "png":
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_srcc(names, matrix, Path(tmp) / "srcc.png").read_bytes()
        return Response(content=png, media_type="image/png")
    out = matrix_json(names, matrix, counts)
    if req.proxy is not None:
        out["proxy"] = req.proxy
        out["decisions"] = {k: d.to_json() for k, d in
                            proxy_decisions(names, matrix, req.proxy, req.threshold).items()}
    return out


@router.post("/correlate", openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": CorrelateRequest.model_json_schema()}}}},
             responses={200: {"content": {"image/png": {}}},
                        413: {"description": "larger than the spec limit (1 MiB)"}})
async def correlate(request: Request, user: CurrentUser, s: SettingsDep,
                    format: Annotated[str, Query(pattern="^(json|png)$")] = "json") -> Any:
    """SRCC of architecture latencies between every pair of devices (on the architectures both
    measured), the reuse/adapt decision for each device against ``proxy``, or a PNG heatmap.
    The body (at most ``max_spec_bytes``) is read only after the token is checked."""
    raw = await read_limited(request, s.max_spec_bytes, "the request")
    return await run_in_threadpool(_correlate, raw, request.headers.get("content-type"), format)


# ----- a new device from a few measurements ---------------------------------------------------

ARCH_TEXT = r"^[A-Za-z0-9_]+(-[A-Za-z0-9_]+){0,63}$"


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str = Field(max_length=4096, pattern=ARCH_TEXT,
                      description="an architecture of the space: op names joined by '-'")
    latency_ms: float = Field(gt=0, allow_inf_nan=False, description="its median latency (ms)")


class AdaptRequest(BaseModel):
    """Which architectures to time on a new device (``pick``), or their timings
    (``measurements``) to build its few-shot predictor and layer table from the known
    devices' tables: every imported table the caller can read that covers the space, or the
    ones named in ``tables``."""

    model_config = ConfigDict(extra="forbid")

    ops: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        ..., min_length=1, max_length=64, description="the space's candidate ops (every layer)")
    num_layers: int = Field(..., ge=1, le=64, description="learnable layers of the backbone")
    tables: list[Annotated[str, StringConstraints(pattern=DEVICE_NAME)]] | None = Field(
        None, max_length=256, description="known devices' tables to use (default: all the "
        "caller can read that cover the space)")
    pick: int | None = Field(None, ge=3, le=1000, description="how many architectures to time")
    measurements: list[Measurement] | None = Field(None, min_length=3, max_length=1000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    save: bool = Field(True, description="store the distilled table and the predictor as the "
                       "caller's imported table for this device (`table: imported` in a spec)")

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, v: list[str]) -> list[str]:
        return list(check_ops(tuple(v)))  # the spec's own check of space.ops

    @model_validator(mode="after")
    def _one_mode(self) -> AdaptRequest:
        if (self.pick is None) == (self.measurements is None):
            raise ValueError("give exactly one of 'pick' (how many architectures to time) or "
                             "'measurements' (their timings)")
        return self


def _adapt(raw: bytes, ctype: str | None, name: str, user: User,
           store: ArtifactStore) -> dict[str, Any]:
    from hurricane.latency.adapt import adapt_device, pick, prior_of
    from hurricane.latency.latency_table import LatencyTable
    from hurricane.nets.arch import Arch, SearchSpace

    data = parse_document(raw, ctype, "the request", yaml_ok=False)
    try:
        req = AdaptRequest.model_validate(data)
    except ValidationError as err:
        pydantic_errors(err)
    space = SearchSpace.uniform(req.ops, req.num_layers)
    visible = tables.visible(store, user.name)
    names = req.tables if req.tables is not None else sorted(n for n in visible if n != name)
    missing = [n for n in names if n not in visible]
    if missing:
        invalid(["body", "tables"], f"no table you can read for {missing[:5]}; yours and the "
                f"shared ones: {', '.join(sorted(visible)) or '(none)'}")
    known = {}
    for n in names:
        hit = tables.resolve(store, user.name, n)
        if hit:
            known[n] = LatencyTable.from_json({**store.get_json(hit[0]), "device": n})
    try:
        prior = prior_of(known, space, seed=req.seed, device=name)
    except ValueError as err:
        invalid(["body", "tables"], str(err))
    if req.pick is not None:
        picked = pick(prior, space, req.pick, seed=req.seed)
        return {"device": name, "known_devices": prior.names,
                "architectures": [str(a) for a in picked]}
    assert req.measurements is not None
    archs: list[Arch] = []
    for i, m in enumerate(req.measurements):
        try:
            a = Arch.parse(m.arch)
        except ValueError as err:
            invalid(["body", "measurements", i, "arch"], str(err))
        if not space.contains(a):
            invalid(["body", "measurements", i, "arch"],
                    f"not in the space ({req.num_layers} layers of {', '.join(req.ops)})")
        archs.append(a)
    if len(set(archs)) != len(archs):
        invalid(["body", "measurements"], "an architecture is measured twice: give each once")
    done = adapt_device(name, prior, archs, [m.latency_ms for m in req.measurements])
    out: dict[str, Any] = {"device": name, **done.summary(), "saved": False}
    if req.save:
        record = {"by": user.name, "at": now(), "owner": user.name, "shared": False,
                  "derived": "few-shot", "samples": len(archs), "known_devices": prior.names}
        tables.write(store, user.name, name, done.table.to_json(), done.table.to_csv(), record)
        store.put_json(tables.table_key(user.name, name, "predictor.json"),
                       done.predictor.to_json())
        out["saved"] = True
    return out


@router.post("/{name}/adapt", openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": AdaptRequest.model_json_schema()}}}},
             responses={413: {"description": "larger than the spec limit (1 MiB)"}})
async def adapt_device(request: Request, user: CurrentUser, s: SettingsDep, store: StoreDep,
                       name: DeviceName) -> Any:
    """A new device from a few measurements. With ``pick: k``: the k architectures of the
    space to time on it (those that best separate the known devices). With ``measurements``:
    its few-shot predictor (prior: the known devices' tables) and leave-one-out check, the
    known devices it follows most, and (``save``) the predictor distilled into a layer table
    stored as the caller's imported table for ``name``, its predictor beside it: a spec's
    ``{name: <name>, table: imported}`` then prices architectures with the predictor."""
    raw = await read_limited(request, s.max_spec_bytes, "the request")
    return await run_in_threadpool(_adapt, raw, request.headers.get("content-type"), name,
                                   user, store)
