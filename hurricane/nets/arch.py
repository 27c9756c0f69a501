"""Architectures as frozen values (one op name per learnable layer) and search spaces."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hurricane.nets.oppool import OPS

SEP = "-"


@dataclass(frozen=True, order=True)
class Arch:
    """One op per learnable layer; its string form is ``op-op-...`` and parses back."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError("an architecture needs at least one layer")
        bad = sorted({o for o in self.ops if o not in OPS})
        if bad:
            raise ValueError(f"unknown operator(s) {bad}; allowed: {', '.join(OPS.names())}")

    def __str__(self) -> str:
        return SEP.join(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __getitem__(self, i: int) -> str:
        return self.ops[i]

    @classmethod
    def parse(cls, text: str) -> Arch:
        return cls(tuple(t for t in text.strip().split(SEP)))

    @property
    def digest(self) -> str:
        """A short stable id, for file names."""
        return hashlib.sha1(str(self).encode()).hexdigest()[:12]

    def replace(self, index: int, op: str) -> Arch:
        ops = list(self.ops)
        ops[index] = op
        return Arch(tuple(ops))


@dataclass(frozen=True)
class SearchSpace:
    """Candidate ops per learnable layer; a layer with one candidate is fixed."""

    choices: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for i, layer in enumerate(self.choices):
            if not layer:
                raise ValueError(f"layer {i} has no candidate operators")
            if len(set(layer)) != len(layer):
                raise ValueError(f"layer {i} repeats an operator: {list(layer)}")
            Arch(tuple(layer))  # validates names

    @classmethod
    def uniform(cls, ops: Iterable[str], num_layers: int) -> SearchSpace:
        ops = tuple(ops)
        return cls(tuple(ops for _ in range(num_layers)))

    @property
    def num_layers(self) -> int:
        return len(self.choices)

    @property
    def size(self) -> int:
        return math.prod(len(c) for c in self.choices)

    @property
    def active_layers(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.choices) if len(c) > 1)

    def all_ops(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for layer in self.choices:
            for op in layer:
                seen.setdefault(op)
        return tuple(seen)

    def contains(self, arch: Arch) -> bool:
        return len(arch) == self.num_layers and all(
            op in c for op, c in zip(arch.ops, self.choices, strict=True)
        )

    def check(self, arch: Arch) -> None:
        if len(arch) != self.num_layers:
            raise ValueError(f"architecture has {len(arch)} layers, space has {self.num_layers}")
        for i, (op, c) in enumerate(zip(arch.ops, self.choices, strict=True)):
            if op not in c:
                raise ValueError(f"layer {i}: op {op!r} not in candidates {list(c)}")

    def sample(self, rng: random.Random) -> Arch:
        return Arch(tuple(rng.choice(c) for c in self.choices))

    def fix(self, arch: Arch, layers: Sequence[int]) -> SearchSpace:
        """The same space with ``layers`` fixed to ``arch``'s ops (HURRICANE's non-active set)."""
        fixed = set(layers)
        return SearchSpace(
            tuple((arch[i],) if i in fixed else c for i, c in enumerate(self.choices))
        )

    def to_json(self) -> dict[str, Any]:
        return {"choices": [list(c) for c in self.choices], "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(tuple(tuple(c) for c in data["choices"]))
