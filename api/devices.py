"""Device routes: the profiles the platform knows and the latency-monotonicity (SRCC) matrix."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hurricane.api.body import read_limited
from hurricane.api.deps import CurrentUser, SettingsDep, StoreDep
from hurricane.api.schemas import TableImported
from hurricane.devices import DEVICES
from hurricane.latency_table import TableErrors, check_table
from hurricane.oppool import OPS
from hurricane.proxy import matrix_json, plot_srcc, proxy_decisions, srcc_matrix_counts
from hurricane.records import now
from hurricane.store import ArtifactNotFound

DEVICE_NAME = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"

router = APIRouter(prefix="/v1/devices", tags=["devices"])


class CorrelateRequest(BaseModel):
    """Latencies (ms) of the same architectures on several devices, one list per device in
    the same architecture order; ``null`` where a device has no measurement."""

    model_config = ConfigDict(extra="forbid")

    latencies: dict[str, list[float | None]] = Field(
        ..., description="device name -> latency per architecture (ms), equal lengths")
    proxy: str | None = Field(None, description="decide reuse/adapt for every other device")
    threshold: float = Field(0.9, gt=0, le=1, description="SRCC at or above which to reuse")

    @field_validator("latencies")
    @classmethod
    def _shape(cls, v: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
        if len(v) < 2:
            raise ValueError(f"needs at least 2 devices, got {len(v)}")
        lengths = {name: len(xs) for name, xs in v.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"every device needs the same number of architectures, got {lengths}")
        for name, xs in v.items():
            bad = [i for i, x in enumerate(xs) if x is not None and not (math.isfinite(x) and x > 0)]
            if bad:
                raise ValueError(f"{name}: latencies must be finite and > 0 (ms); bad at "
                                 f"positions {bad[:5]}")
        return v

    @model_validator(mode="after")
    def _proxy_known(self) -> CorrelateRequest:
        if self.proxy is not None and self.proxy not in self.latencies:
            raise ValueError(f"proxy {self.proxy!r} is not among the devices: "
                             f"{', '.join(self.latencies)}")
        return self


@router.get("")
def list_devices(user: CurrentUser, store: StoreDep) -> list[dict[str, Any]]:
    """Every registered device profile (backend, engine options, node label) and every
    device whose latency table was imported (``table: imported`` in a spec)."""
    out = []
    for name in DEVICES:
        d = DEVICES.get(name)
        out.append({"name": name, "backend": d.backend, "node_label": d.node_label,
                    "description": d.description, "options": dict(d.options),
                    "imported_table": store.exists(f"devices/{name}/table.json")})
    for name in store.children("devices"):
        if name not in DEVICES and store.exists(f"devices/{name}/table.json"):
            out.append({"name": name, "backend": "table", "node_label": None,
                        "description": "imported latency table", "options": {},
                        "imported_table": True})
    return out


TABLE_TYPES = {"text/csv": "csv", "application/csv": "csv", "application/json": "json",
               "text/plain": "csv"}


@router.put("/{name}/table", status_code=201, response_model=TableImported,
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}}},
            responses={409: {"description": "imported by another user"},
                       413: {"description": "larger than 10 MiB"}})
async def import_table(
    request: Request, user: CurrentUser, s: SettingsDep, store: StoreDep,
    name: Annotated[str, PathParam(pattern=DEVICE_NAME, description="the device's name in specs")],
) -> dict[str, Any]:
    """Import a layer × op latency table (CSV ``layer,op,median_ms[,iqr_ms]`` or JSON as
    `hurricane profile --out x.json` writes it): searches then target the device with
    ``{name: <name>, table: imported}``. Every bad row is reported with its line."""
    raw = await read_limited(request, s.max_table_bytes, "the table")
    ctype = (request.headers.get("content-type") or "text/csv").split(";")[0].strip().lower()
    fmt = TABLE_TYPES.get(ctype)
    if fmt is None:
        raise HTTPException(415, f"Content-Type {ctype!r} is not accepted; send text/csv or "
                            "application/json")
    try:
        text = raw.decode("utf-8")
        table = check_table(text, device=name, fmt=fmt, known_ops=set(OPS.names()))
    except UnicodeDecodeError as err:
        raise RequestValidationError([{"loc": ["body"], "type": "value_error",
                                       "msg": f"the table is not UTF-8 text (byte {err.start})"}]
                                     ) from None
    except TableErrors as err:
        raise RequestValidationError([{"loc": ["body", where], "msg": msg, "type": "value_error"}
                                      for where, msg in err.errors]) from None
    key = f"devices/{name}/table.json"
    try:
        prev = store.get_json(f"devices/{name}/imported.json")
    except ArtifactNotFound:
        prev = None
    if prev and prev.get("by") != user.name and not user.is_admin:
        raise HTTPException(409, f"device {name!r}'s table was imported by another user; "
                            "an admin may replace it")
    store.put_json(key, table.to_json())
    store.put_bytes(f"devices/{name}/table.csv", table.to_csv().encode())
    store.put_json(f"devices/{name}/imported.json", {"by": user.name, "at": now()})
    all_ops = sorted({o for row in table.ops.values() for o in row})
    return {"name": name, "layers": len(table.ops), "ops": all_ops,
            "entries": sum(len(r) for r in table.ops.values()), "fixed_ms": table.fixed_ms,
            "imported_by": user.name}


@router.post("/correlate")
def correlate(req: CorrelateRequest, user: CurrentUser,
              format: Annotated[str, Query(pattern="^(json|png)$")] = "json") -> Any:
    """SRCC of architecture latencies between every pair of devices (on the architectures both
    measured), the reuse/adapt decision for each device against ``proxy``, or a PNG heatmap."""
    data = {k: [math.nan if x is None else x for x in v] for k, v in req.latencies.items()}
    try:
        names, matrix, counts = srcc_matrix_counts(data)
    except ValueError as err:  # e.g. too few common architectures
        raise HTTPException(status_code=422, detail=str(err)) from None
    if format == "png":
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_srcc(names, matrix, Path(tmp) / "srcc.png").read_bytes()
        return Response(content=png, media_type="image/png")
    out = matrix_json(names, matrix, counts)
    if req.proxy is not None:
        out["proxy"] = req.proxy
        out["decisions"] = {k: d.to_json() for k, d in
                            proxy_decisions(names, matrix, req.proxy, req.threshold).items()}
    return out
