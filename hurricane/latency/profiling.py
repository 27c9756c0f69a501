"""Operator latency tables (layer × op) measured on a device, and architecture latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from hurricane import progress
from hurricane.latency.backends import backend_for
from hurricane.latency.devices import DEVICES, DeviceProfile
from hurricane.latency.latency_table import LatencyTable
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Head, Layout, build_stem
from hurricane.nets.ops import build_op

__all__ = ["LatencyTable", "Protocol", "Timing", "measure_arch", "profile_table", "time_callable",
           "time_module"]


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
            sc = "+sc" if s.shortcut else ""
            k = cache_key(device, protocol, f"{op}/{s.cout}/s{s.stride}{sc}", shape)
            keys[(s.index, op)] = k
            todo[k] = (partial(build_op, op, s.cin, s.cout, s.stride, shortcut=s.shortcut), shape)
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
    from hurricane.nets.supernet import Network

    s = layout.input_size
    return time_module(Network(layout, arch), (protocol.batch_size, 3, s, s), protocol, device)
