"""Operator latency tables (layer × op) measured on a device, and architecture latency."""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hurricane import progress
from hurricane.arch import Arch, SearchSpace
from hurricane.backbone import Head, Layout, build_stem
from hurricane.backends import backend_for
from hurricane.devices import DEVICES, DeviceProfile
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
    outliers: int = 0  # samples above Q3 + 3·IQR (a preempted core, a page fault): flagged, kept


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
    iqr = q[2] - q[0]
    outliers = sum(s > q[2] + 3 * iqr for s in samples)
    return Timing(statistics.median(samples), iqr, len(samples), outliers)


class _Threads:
    def __init__(self, n: int) -> None:
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


def time_module(module: nn.Module, shape: tuple[int, ...], protocol: Protocol,
                device: DeviceProfile | None = None) -> Timing:
    """Times ``module`` on a ``shape`` input with the device's engine (default: torch CPU)."""
    device = device or DEVICES.get("cpu")
    backend = backend_for(device)
    backend.check(device)
    with _Threads(protocol.threads):
        run = backend.prepare(module.eval(), shape, device, threads=protocol.threads)
        return time_callable(run, protocol)


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

    def slowest(self, space: SearchSpace) -> Arch:
        return Arch(tuple(max(c, key=partial(self.layer_ms, i)) for i, c in enumerate(space.choices)))

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

    @classmethod
    def from_csv(cls, text: str, *, device: str) -> LatencyTable:
        """Reads ``to_csv``'s format: layer,op,median_ms[,iqr_ms] rows plus a 'fixed' row."""
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or [h.strip() for h in rows[0][:3]] != ["layer", "op", "median_ms"]:
            raise ValueError("a latency table CSV starts with the header layer,op,median_ms[,iqr_ms]")
        ops: dict[int, dict[str, float]] = {}
        iqr: dict[int, dict[str, float]] = {}
        fixed = 0.0
        for n, row in enumerate(rows[1:], 2):
            if not row:
                continue
            try:
                if row[0] == "fixed":
                    fixed = float(row[2])
                    continue
                layer, op, ms = int(row[0]), row[1], float(row[2])
            except (ValueError, IndexError):
                raise ValueError(f"latency table line {n}: expected layer,op,median_ms, got {row}") from None
            if ms < 0:
                raise ValueError(f"latency table line {n}: negative latency {ms}")
            ops.setdefault(layer, {})[op] = ms
            if len(row) > 3 and row[3]:
                iqr.setdefault(layer, {})[op] = float(row[3])
        return cls(device=device, ops=ops, iqr=iqr, fixed_ms=fixed, meta={"backend": "table"})

    @classmethod
    def load(cls, path: str | Path, *, device: str) -> LatencyTable:
        p = Path(path)
        if p.suffix == ".json":
            import json

            return cls.from_json({**json.loads(p.read_text()), "device": device})
        return cls.from_csv(p.read_text(), device=device)

    def check_covers(self, space: SearchSpace) -> None:
        missing = [(i, op) for i, c in enumerate(space.choices) for op in c
                   if op not in self.ops.get(i, {})]
        if missing:
            shown = ", ".join(f"layer {i} {op}" for i, op in missing[:8])
            raise ValueError(f"latency table for {self.device!r} lacks {len(missing)} "
                             f"(layer, op) entries the space needs: {shown}")

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


def cache_key(device: DeviceProfile, protocol: Protocol, what: str, shape: tuple[int, ...]) -> str:
    """What identifies a measurement: device, engine options, protocol, op and input shape."""
    opts = ",".join(f"{k}={device.options[k]}" for k in sorted(device.options))
    p = protocol
    return (f"{device.name}|{device.backend}|{opts}|w{p.warmup}r{p.repeats}t{p.threads}|{what}|"
            + "x".join(map(str, shape)))


def profile_table(
    layout: Layout, space: SearchSpace, device: DeviceProfile, protocol: Protocol,
    *, cache: dict[str, dict[str, float]] | None = None,
) -> LatencyTable:
    """Measures every (layer, op) of ``space`` on ``device``.

    Layers with equal shapes are measured once, and ``cache`` (keyed by device, engine options,
    protocol, op and input shape) carries measurements across searches: nothing is measured
    twice. A ``table`` device replays its imported table instead.
    """
    if device.backend == "table":
        backend_for(device).check(device)
        table = LatencyTable.load(device.options["path"], device=device.name)
        table.check_covers(space)
        return table
    backend_for(device).check(device)
    cache = {} if cache is None else cache
    b = protocol.batch_size
    todo: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {}
    keys: dict[tuple[int, str], str] = {}
    for c, s in zip(space.choices, layout.layers, strict=True):
        shape = (b, s.cin, s.in_hw, s.in_hw)
        for op in c:
            k = cache_key(device, protocol, f"{op}/{s.cout}/s{s.stride}", shape)
            keys[(s.index, op)] = k
            todo[k] = (partial(build_op, op, s.cin, s.cout, s.stride), shape)
    hw = layout.layers[-1].out_hw
    stem_k = cache_key(device, protocol, f"stem/{layout.stem_channels}",
                       (b, 3, layout.input_size, layout.input_size))
    head_k = cache_key(device, protocol, f"head/{layout.head_channels}/{layout.num_classes}",
                       (b, layout.last_channels, hw, hw))
    todo[stem_k] = (partial(build_stem, layout), (b, 3, layout.input_size, layout.input_size))
    todo[head_k] = (partial(Head, layout), (b, layout.last_channels, hw, hw))
    fresh = [k for k in todo if k not in cache]
    with progress.task(f"profile {device.name}", total=len(fresh)) as bar:
        for k in sorted(fresh):
            make, inp = todo[k]
            t = time_module(make(), inp, protocol, device)
            cache[k] = {"median_ms": t.median_ms, "iqr_ms": t.iqr_ms, "n": t.n,
                        "outliers": t.outliers}
            bar.advance(1, what=k.split("|")[4])
    ops: dict[int, dict[str, float]] = {}
    iqr: dict[int, dict[str, float]] = {}
    for (layer, op), k in keys.items():
        ops.setdefault(layer, {})[op] = cache[k]["median_ms"]
        iqr.setdefault(layer, {})[op] = cache[k]["iqr_ms"]
    stem, head = cache[stem_k]["median_ms"], cache[head_k]["median_ms"]
    return LatencyTable(
        device=device.name, ops=ops, iqr=iqr, fixed_ms=stem + head,
        meta={"backend": device.backend, "options": dict(device.options),
              "warmup": protocol.warmup, "repeats": protocol.repeats, "batch_size": b,
              "threads": protocol.threads, "unique_measurements": len(todo),
              "measured_now": len(fresh), "stem_ms": stem, "head_ms": head,
              "outlier_samples": int(sum(cache[k].get("outliers", 0) for k in todo))},
    )


def measure_arch(layout: Layout, arch: Arch, protocol: Protocol,
                 device: DeviceProfile | None = None) -> Timing:
    """End-to-end latency of ``arch`` as a standalone network on ``device`` (default: torch CPU)."""
    from hurricane.supernet import Network

    s = layout.input_size
    return time_module(Network(layout, arch), (protocol.batch_size, 3, s, s), protocol, device)
