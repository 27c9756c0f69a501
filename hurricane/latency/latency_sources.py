"""Architecture latencies of several devices on the same architectures: measured CSVs and tables."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hurricane.latency.proxy import MIN_COMMON
from hurricane.nets.arch import SEP

# Columns of a measured-latency CSV that name the architecture instead of a device.
ID_COLUMNS = ("arch", "encoding", "arch_id", "id", "name")

@dataclass(frozen=True)
class MeasuredLatencies:
    """Measured architecture latencies (ms): one column per device, one row per architecture."""

    source: str
    key: str | None  # the id column rows are joined on, if any
    ids: tuple[str, ...] | None
    latencies: dict[str, np.ndarray]

    @classmethod
    def from_csv(cls, text: str, *, source: str) -> MeasuredLatencies:
        """Reads a CSV whose columns are devices (empty cell: not measured) plus optional id
        columns (``arch``: op names joined by '-', ``encoding``, ``arch_id``, ``id``, ``name``)."""
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or not any(h.strip() for h in rows[0]):
            raise ValueError(f"{source}: empty file; expected a header naming one column per device")
        header = [h.strip() for h in rows[0]]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup or "" in header:
            what = f"repeated columns {dup}" if dup else "an empty column name"
            raise ValueError(f"{source}: the header has {what}")
        key = next((c for c in ID_COLUMNS if c in header), None)
        devices = [h for h in header if h not in ID_COLUMNS]
        if not devices:
            raise ValueError(f"{source}: no device columns (every column is an id: {header})")
        body = [(n, r) for n, r in enumerate(rows[1:], 2) if any(c.strip() for c in r)]
        if len(body) < MIN_COMMON:
            raise ValueError(f"{source}: {len(body)} architecture rows; correlation needs at least "
                             f"{MIN_COMMON}")
        values = {d: np.full(len(body), np.nan) for d in devices}
        ids: list[str] = []
        for r, (line, row) in enumerate(body):
            if len(row) != len(header):
                raise ValueError(f"{source}: line {line} has {len(row)} fields, the header {len(header)}")
            cells = dict(zip(header, (c.strip() for c in row), strict=True))
            if key is not None:
                ids.append(cells[key])
            for d in devices:
                cell = cells[d]
                if cell.lower() in ("", "nan", "na", "none"):
                    continue
                try:
                    ms = float(cell)
                except ValueError:
                    raise ValueError(f"{source}: line {line}, column {d!r}: {cell!r} is not a "
                                     "latency in ms") from None
                if not math.isfinite(ms) or ms <= 0:
                    raise ValueError(f"{source}: line {line}, column {d!r}: latency {cell} must be "
                                     "finite and > 0 ms")
                values[d][r] = ms
        for d, col in values.items():
            got = int(np.isfinite(col).sum())
            if got < MIN_COMMON:
                raise ValueError(f"{source}: column {d!r} has {got} latencies; correlation needs "
                                 f"at least {MIN_COMMON}")
        if key is not None and len(set(ids)) != len(ids):
            first = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"{source}: column {key!r} repeats the architecture {first!r}")
        return cls(source, key, tuple(ids) if key is not None else None, values)


def _layers_and_fixed(table: Any) -> tuple[list[Mapping[str, float]], float]:
    """A table's rows by layer 0..L-1 and its fixed ms; a LatencyTable duck-typed (profiling needs
    torch, this module not), or a plain {layer: {op: ms}} mapping."""
    ops, fixed = (table.ops, float(getattr(table, "fixed_ms", 0.0))) if hasattr(table, "ops") \
        else (table, 0.0)
    by_layer = {int(k): v for k, v in ops.items()}
    layers = sorted(by_layer)
    if not layers or layers != list(range(len(layers))):
        raise ValueError(f"layers must be numbered 0..L-1, got {layers[:8]}")
    return [by_layer[i] for i in layers], fixed


def table_space(tables: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    """The per-layer op choices that every (layer x op) table covers, in the first one's order."""
    if not tables:
        raise ValueError("no latency tables given")
    spaces = {}
    for name, t in tables.items():
        try:
            spaces[name] = [list(row) for row in _layers_and_fixed(t)[0]]
        except ValueError as err:
            raise ValueError(f"table {name!r}: {err}") from None
    first, ref = next(iter(spaces.items()))
    choices = []
    for i in range(len(ref)):
        common = [op for op in ref[i] if all(len(s) == len(ref) and op in s[i] for s in spaces.values())]
        if not common:
            other = next(n for n, s in spaces.items() if len(s) != len(ref) or not set(s[i]) & set(ref[i]))
            raise ValueError(f"tables {first!r} and {other!r} share no op at layer {i} "
                             f"(or differ in layer count: {len(ref)} vs {len(spaces[other])})")
        choices.append(tuple(common))
    return tuple(choices)


def sample_indices(choices: Sequence[Sequence[str]], n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` distinct random architectures (op indices), or the whole space if it is smaller."""
    sizes = np.array([len(c) for c in choices], dtype=np.int64)
    if n < MIN_COMMON:
        raise ValueError(f"need at least {MIN_COMMON} architectures, got {n}")
    total = math.prod(int(s) for s in sizes)
    if total <= n:
        return np.array(np.unravel_index(np.arange(total), tuple(sizes))).T.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = np.unique(rng.integers(0, sizes, size=(2 * n, len(sizes))), axis=0)
    return idx[rng.permutation(idx.shape[0])[:n]]


def table_latencies(tables: Mapping[str, Any], choices: Sequence[Sequence[str]],
                    idx: np.ndarray) -> dict[str, np.ndarray]:
    """Each table's architecture latency (sum over layers plus fixed parts) for op indices ``idx``."""
    out = {}
    for name, t in tables.items():
        rows, fixed = _layers_and_fixed(t)
        flat = [np.array([float(rows[i][op]) for op in c]) for i, c in enumerate(choices)]
        out[name] = fixed + sum(f[idx[:, i]] for i, f in enumerate(flat))
    return out


def collect_latencies(*, tables: Mapping[str, Any] | None = None,
                      measured: Sequence[MeasuredLatencies] = (), samples: int = 1000,
                      seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Latencies of the same architectures on every device, from tables and measured CSVs.

    Tables alone: ``samples`` random architectures of the space they all cover. With measured
    CSVs, their rows are the architectures: several CSVs join on their id column, and tables
    need an ``arch`` column (op names joined by '-') to price those rows.
    """
    tables = dict(tables or {})
    if not tables and not measured:
        raise ValueError("no latency sources given")
    seen: dict[str, str] = {}
    for src, names in [*((f"table {n!r}", [n]) for n in tables),
                       *((m.source, list(m.latencies)) for m in measured)]:
        for d in names:
            if d in seen:
                raise ValueError(f"device {d!r} comes from both {seen[d]} and {src}; rename one")
            seen[d] = src
    out: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    if measured:
        first = measured[0]
        if len(measured) > 1:
            keys = {m.key for m in measured}
            if None in keys or len(keys) != 1:
                shown = ", ".join(f"{m.source} ({m.key or 'no id column'})" for m in measured)
                raise ValueError(f"cannot line up the rows of {shown}: every measured CSV needs "
                                 f"the same id column, one of {', '.join(ID_COLUMNS)}")
            common = set.intersection(*(set(m.ids or ()) for m in measured))
            ids = [i for i in first.ids or () if i in common]
            for m in measured:
                pos = {a: r for r, a in enumerate(m.ids or ())}
                rows = np.array([pos[i] for i in ids], dtype=np.int64)
                out.update({d: v[rows] for d, v in m.latencies.items()})
        else:
            ids = list(first.ids or ())
            out.update(first.latencies)
        info["architectures_from"] = "measured rows" + (" (joined on " + str(first.key) + ")"
                                                        if len(measured) > 1 else "")
        if tables:
            if first.key != "arch":
                raise ValueError(f"{first.source}: pricing its rows with latency tables needs an "
                                 "'arch' column (op names joined by '-')")
            choices = table_space(tables)
            index = [{op: k for k, op in enumerate(c)} for c in choices]
            idx = np.empty((len(ids), len(choices)), dtype=np.int64)
            for r, a in enumerate(ids):
                ops = a.split(SEP)
                if len(ops) != len(choices) or any(op not in index[i] for i, op in enumerate(ops)):
                    raise ValueError(f"{first.source}: arch {a!r} is not in the tables' space "
                                     f"({len(choices)} layers; first layer's ops: {', '.join(choices[0])})")
                idx[r] = [index[i][op] for i, op in enumerate(ops)]
            out.update(table_latencies(tables, choices, idx))
    else:
        choices = table_space(tables)
        idx = sample_indices(choices, samples, seed=seed)
        out.update(table_latencies(tables, choices, idx))
        info["architectures_from"] = f"sampled from the tables' common space (seed {seed})"
    info["architectures"] = int(next(iter(out.values())).shape[0])
    if info["architectures"] < MIN_COMMON:
        raise ValueError(f"only {info['architectures']} architectures are common to all sources")
    info["sources"] = dict(seen)
    return {d: out[d] for d in seen}, info
