"""Device routes: the profiles the platform knows and the latency-monotonicity (SRCC) matrix."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hurricane.devices import DEVICES
from hurricane.proxy import matrix_json, plot_srcc, proxy_decisions, srcc_matrix_counts

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
def list_devices() -> list[dict[str, Any]]:
    """Every registered device profile: backend, engine options and node label."""
    out = []
    for name in DEVICES:
        d = DEVICES.get(name)
        out.append({"name": name, "backend": d.backend, "node_label": d.node_label,
                    "description": d.description, "options": dict(d.options)})
    return out


@router.post("/correlate")
def correlate(req: CorrelateRequest,
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
