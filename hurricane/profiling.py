"""Operator latency tables (layer × op) measured on a device, and architecture latency."""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from hurricane import progress
from hurricane.arch import Arch, SearchSpace
from hurricane.backbone import Head, Layout, build_stem
from hurricane.devices import DeviceProfile
from hurricane.ops import build_op


@dataclass(frozen=True)
class Protocol:
    """Measurement protocol: warm-up runs, timed repeats (median kept), batch, threads."""

    warmup: int = 5
    repeats: int = 20
    batch_size: int = 1
    threads: int = 1


@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    n: int


def time_callable(fn: Callable[[], object], protocol: Protocol) -> Timing:
    """Runs ``fn`` ``warmup`` times, then times ``repeats`` runs; median and IQR in ms."""
    for _ in range(protocol.warmup):
        fn()
    samples = []
    for _ in range(protocol.repeats):
        t = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t) / 1e6)
    q = statistics.quantiles(samples, n=4)
    return Timing(statistics.median(samples), q[2] - q[0], len(samples))


class _Threads:
    def __init__(self, n: int) -> None:
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


@torch.inference_mode()
def time_module(module: nn.Module, shape: tuple[int, ...], protocol: Protocol) -> Timing:
    module.eval()
    x = torch.randn(shape)
    with _Threads(protocol.threads):
        return time_callable(partial(module, x), protocol)


@dataclass
class LatencyTable:
    """Median latency (ms) of every candidate op at every layer, plus the fixed stem + head."""

    device: str
    ops: dict[int, dict[str, float]]
    iqr: dict[int, dict[str, float]] = field(default_factory=dict)
    fixed_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def layer_ms(self, layer: int, op: str) -> float:
        try:
            return self.ops[layer][op]
        except KeyError:
            raise KeyError(f"latency table for {self.device!r} has no entry for layer {layer}, "
                           f"op {op!r}") from None

    def arch_latency(self, arch: Arch) -> float:
        """Table sum over the layers plus the fixed parts."""
        return self.fixed_ms + sum(self.layer_ms(i, op) for i, op in enumerate(arch.ops))

    def bounds(self, space: SearchSpace) -> tuple[float, float]:
        """Lowest and highest architecture latency in ``space``."""
        lo = self.fixed_ms + sum(min(self.layer_ms(i, o) for o in c)
                                 for i, c in enumerate(space.choices))
        hi = self.fixed_ms + sum(max(self.layer_ms(i, o) for o in c)
                                 for i, c in enumerate(space.choices))
        return lo, hi

    def fastest(self, space: SearchSpace) -> Arch:
        return Arch(tuple(min(c, key=partial(self.layer_ms, i)) for i, c in enumerate(space.choices)))

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "fixed_ms": self.fixed_ms, "meta": self.meta,
                "ops": {str(k): v for k, v in self.ops.items()},
                "iqr": {str(k): v for k, v in self.iqr.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatencyTable:
        return cls(device=d["device"], fixed_ms=float(d["fixed_ms"]), meta=d.get("meta", {}),
                   ops={int(k): {o: float(t) for o, t in v.items()} for k, v in d["ops"].items()},
                   iqr={int(k): {o: float(t) for o, t in v.items()}
                        for k, v in d.get("iqr", {}).items()})

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["layer", "op", "median_ms", "iqr_ms"])
        w.writerow(["fixed", "stem+head", f"{self.fixed_ms:.6f}", ""])
        for layer in sorted(self.ops):
            for op, ms in self.ops[layer].items():
                iqr = self.iqr.get(layer, {}).get(op)
                w.writerow([layer, op, f"{ms:.6f}", "" if iqr is None else f"{iqr:.6f}"])
        return buf.getvalue()


def profile_table(
    layout: Layout, space: SearchSpace, device: DeviceProfile, protocol: Protocol
) -> LatencyTable:
    """Measures every (layer, op) of ``space``; layers with equal shapes are measured once."""
    if device.backend != "torch":
        raise ValueError(f"device {device.name!r}: backend {device.backend!r} is not supported yet")
    b = protocol.batch_size
    cache: dict[tuple[str, tuple[int, int, int, int]], Timing] = {}
    todo = {(op, s.key) for c, s in zip(space.choices, layout.layers, strict=True) for op in c}
    with progress.task(f"profile {device.name}", total=len(todo) + 2) as bar:
        for op, key in sorted(todo):
            cin, cout, stride, hw = key
            cache[(op, key)] = time_module(build_op(op, cin, cout, stride), (b, cin, hw, hw),
                                           protocol)
            bar.advance(1, op=op)
        stem = time_module(build_stem(layout), (b, 3, layout.input_size, layout.input_size),
                           protocol)
        bar.advance(1)
        hw = layout.layers[-1].out_hw
        head = time_module(Head(layout), (b, layout.last_channels, hw, hw), protocol)
        bar.advance(1)
    ops: dict[int, dict[str, float]] = {}
    iqr: dict[int, dict[str, float]] = {}
    for c, s in zip(space.choices, layout.layers, strict=True):
        ops[s.index] = {op: cache[(op, s.key)].median_ms for op in c}
        iqr[s.index] = {op: cache[(op, s.key)].iqr_ms for op in c}
    return LatencyTable(
        device=device.name, ops=ops, iqr=iqr, fixed_ms=stem.median_ms + head.median_ms,
        meta={"backend": device.backend, "warmup": protocol.warmup, "repeats": protocol.repeats,
              "batch_size": b, "threads": protocol.threads, "unique_measurements": len(cache),
              "stem_ms": stem.median_ms, "head_ms": head.median_ms},
    )


def measure_arch(layout: Layout, arch: Arch, protocol: Protocol) -> Timing:
    """End-to-end latency of ``arch`` as a standalone network."""
    from hurricane.supernet import Network

    s = layout.input_size
    return time_module(Network(layout, arch), (protocol.batch_size, 3, s, s), protocol)
