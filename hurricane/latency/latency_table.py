"""Layer × op latency tables (torch-free: the API validates imported tables with it)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hurricane.nets.arch import Arch, SearchSpace


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


class TableErrors(ValueError):
    """An imported table's problems, each with its line (CSV) or path (JSON)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"{where}: {msg}" for where, msg in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} problem(s) in the latency table: {shown}{more}")


MAX_LAYER = 9_999  # far beyond any backbone (6 stages of at most 64 layers)
_LAYER = re.compile(r"[0-9]{1,4}")  # ASCII digits only: '²'.isdigit() is true, int('²') fails


def _number(text: object) -> float | None:
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return None
    if isinstance(text, str) and len(text) > 64:
        return None  # no latency needs more characters; int() would refuse a long one anyway
    try:
        v = float(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _layer(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= MAX_LAYER else None
    if isinstance(value, str) and _LAYER.fullmatch(value):
        return int(value)
    return None


def _shown(v: object) -> str:
    """A value in an error message: short, and printable whatever it holds."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class _TableReader:
    """Collects an imported table's rows and every problem with them, by line or field."""

    def __init__(self, known_ops: set[str], max_errors: int) -> None:
        self.known_ops, self.max_errors = known_ops, max_errors
        self.errors: list[tuple[str, str]] = []
        self.ops: dict[int, dict[str, float]] = {}
        self.iqr: dict[int, dict[str, float]] = {}
        self.fixed = 0.0

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.max_errors

    def add(self, layer: Any, op: Any, ms: Any, spread: Any, where: str) -> None:
        errors = self.errors
        lay = _layer(layer)
        if lay is None:
            errors.append((where, f"layer must be an integer 0..{MAX_LAYER}, got "
                           f"{_shown(layer)}"))
        if op not in self.known_ops:
            errors.append((where, f"unknown op {_shown(op)}; allowed: the 32 ops of "
                           "`hurricane ops list`"))
        v = _number(ms)
        if v is None or v < 0:
            errors.append((where, f"median_ms must be a finite number >= 0, got {_shown(ms)}"))
        s = None if spread in (None, "") else _number(spread)
        if spread not in (None, "") and (s is None or s < 0):
            errors.append((where, f"iqr_ms must be a finite number >= 0, got {_shown(spread)}"))
        if lay is None or op not in self.known_ops or v is None or v < 0:
            return
        if op in self.ops.get(lay, {}):
            errors.append((where, f"layer {lay} op {op} appears twice"))
        self.ops.setdefault(lay, {})[op] = v
        if s is not None:
            self.iqr.setdefault(lay, {})[op] = s

    def set_fixed(self, value: Any, where: str, what: str = "") -> None:
        fv = _number(value)
        if fv is None or fv < 0:
            self.errors.append((where, f"{what}must be a finite number >= 0, got {_shown(value)}"))
        else:
            self.fixed = fv

    def read_json(self, text: str | dict[str, Any]) -> None:
        if isinstance(text, str):
            from hurricane.documents import DocumentError, parse_json

            try:
                doc = parse_json(text)
            except DocumentError as err:
                raise TableErrors([(".".join(map(str, err.loc)) or "table", err.msg)]) from None
        else:
            doc = text
        if not isinstance(doc, dict) or not isinstance(doc.get("ops"), dict):
            raise TableErrors([("ops", "expected an object with 'ops': {layer: {op: ms}}")])
        self.set_fixed(doc.get("fixed_ms", 0.0), "fixed_ms")
        spreads = doc.get("iqr", {})
        if not isinstance(spreads, dict):
            self.errors.append(("iqr", "expected an object {layer: {op: iqr_ms}}"))
            spreads = {}
        for layer, row in doc["ops"].items():
            if self.full:
                break
            if not isinstance(row, dict):
                self.errors.append((f"ops.{layer}", "expected an object {op: ms}"))
                continue
            spread_row = spreads.get(layer, {})
            if not isinstance(spread_row, dict):
                self.errors.append((f"iqr.{layer}", "expected an object {op: iqr_ms}"))
                continue
            for op, ms in row.items():
                self.add(layer, op, ms, spread_row.get(op), f"ops.{layer}.{op}")

    def read_csv(self, text: str) -> None:
        reader = csv.reader(text.splitlines())  # a lone '\r' ends a line too
        rows = []
        try:
            for row in reader:
                rows.append(row)
        except csv.Error as err:
            raise TableErrors([(f"line {reader.line_num}", f"not CSV: {err}")]) from None
        if not rows or [h.strip() for h in rows[0][:3]] != ["layer", "op", "median_ms"]:
            raise TableErrors([("line 1", "a latency table CSV starts with the header "
                                "layer,op,median_ms[,iqr_ms]")])
        for n, row in enumerate(rows[1:], 2):
            if not row or not "".join(row).strip():
                continue
            if self.full:
                break
            if len(row) < 3 or len(row) > 4:
                self.errors.append((f"line {n}", f"expected 3 or 4 columns, got {len(row)}"))
            elif row[0].strip() == "fixed":
                self.set_fixed(row[2], f"line {n}", "fixed median_ms ")
            else:
                self.add(row[0].strip(), row[1].strip(), row[2].strip(),
                         row[3].strip() if len(row) > 3 else None, f"line {n}")

    def table(self, device: str) -> LatencyTable:
        errors = self.errors
        if not errors and not self.ops:
            errors.append(("table", "no layer,op rows"))
        if not errors:
            layers = sorted(self.ops)
            if layers != list(range(len(layers))):
                errors.append(("table", f"layers must be numbered 0..n-1 without gaps, got {layers}"))
        if errors:
            raise TableErrors(errors[:self.max_errors])
        return LatencyTable(device=device, ops=self.ops, iqr=self.iqr, fixed_ms=self.fixed,
                            meta={"backend": "table", "imported": True})


def check_table(text: str | dict[str, Any], *, device: str, fmt: str, known_ops: set[str],
                max_errors: int = 50) -> LatencyTable:
    """Parses an imported table strictly: CSV ``layer,op,median_ms[,iqr_ms]`` rows (plus an
    optional ``fixed`` row) or ``to_json``'s JSON (text, or a document already parsed with
    ``hurricane.documents``); every problem is reported with its line (CSV) or field path
    (JSON), up to ``max_errors``."""
    reader = _TableReader(known_ops, max_errors)
    if fmt == "json" or isinstance(text, dict):
        reader.read_json(text)
    else:
        reader.read_csv(text)
    return reader.table(device)
