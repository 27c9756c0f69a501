"""Which paths a single-path supernet trains at each step (torch-free).

Every rule draws its paths from ``(seed, step)`` alone, so a resumed training takes the same
paths as a straight one. Rules (``supernet.sampling``), measured against each other by
bench/supernet_recipes.py:

- ``uniform`` (SPOS): ``paths`` independent uniformly sampled paths per step.
- ``fair`` (FairNAS' strict fairness): as many paths as the widest layer has candidates; each
  layer deals its candidates out over them in a random order (a layer with fewer candidates
  deals a second random round), so every candidate of every layer is trained once per step.
- ``sandwich`` (BigNAS, OFA): the largest path (per layer the candidate with the most
  multiply-adds), the smallest, and ``paths - 2`` uniform ones.

With ``distill`` (in-place distillation) the first path (``sandwich``: the largest) learns
from the labels and the others from its soft predictions. ``shrink`` (OFA's progressive
shrinking) restricts each layer to its largest candidates early on: during phase p of P
(phases split the first ``shrink_until`` share of the iterations evenly) a layer offers its
ceil(n·p/P) largest candidates, afterwards all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hurricane.nets.arch import Arch, SearchSpace

SAMPLING: tuple[str, ...] = ("uniform", "fair", "sandwich")


@dataclass(frozen=True)
class Path:
    """One path of a training step; ``teacher``: it learns from the labels while the step's
    other paths learn from its predictions (in-place distillation)."""

    arch: Arch
    teacher: bool = False


def path_seed(seed: int, step: int) -> int:
    """The randomness of one step's paths: ``train.step_seed(seed, step, 2)``, the stream SPOS
    sampling has always used (a uniform one-path plan takes the paths it took before)."""
    return int(np.random.SeedSequence([seed, step, 2]).generate_state(1, dtype=np.uint64)[0] >> 1)


class PathPlan:
    """The paths of every training step over ``space``.

    ``sizes[layer][op]`` orders each layer's candidates from large to small (multiply-adds)
    for ``sandwich``, ``shrink`` and ``distill``'s teacher; ties keep the space's order."""

    def __init__(self, space: SearchSpace, *, sampling: str = "uniform", paths: int = 1,
                 distill: bool = False, shrink_phases: int = 0, shrink_until: float = 0.0,
                 iterations: int = 1, sizes: Mapping[int, Mapping[str, float]] | None = None,
                 seed: int = 0) -> None:
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
        if paths < 1:
            raise ValueError(f"paths must be >= 1, got {paths}")
        if sampling == "sandwich" and paths < 2:
            raise ValueError("sampling 'sandwich' needs paths >= 2 (the largest and the smallest)")
        if (sampling == "sandwich" or distill or shrink_phases) and sizes is None:
            raise ValueError("sandwich, distill and shrink need the candidates' sizes")
        self.space, self.sampling, self.paths, self.distill = space, sampling, paths, distill
        self.shrink_phases, self.shrink_until = shrink_phases, shrink_until
        self.iterations, self.seed = max(1, iterations), seed
        # each layer's candidates, largest first
        self.by_size: tuple[tuple[str, ...], ...] = tuple(
            tuple(sorted(c, key=lambda o, i=i: -(sizes[i][o] if sizes else 0.0)))  # type: ignore[misc]
            for i, c in enumerate(space.choices))
        self.largest = Arch(tuple(c[0] for c in self.by_size))
        self.smallest = Arch(tuple(c[-1] for c in self.by_size))

    def phase(self, step: int) -> int | None:
        """The shrink phase (1..P) of ``step``, or None once every candidate takes part."""
        if not self.shrink_phases or step >= self.shrink_until * self.iterations:
            return None
        span = self.shrink_until * self.iterations / self.shrink_phases
        return min(self.shrink_phases, int(step // span) + 1)

    def choices(self, step: int) -> tuple[tuple[str, ...], ...]:
        """The candidates each layer offers at ``step`` (all but during shrinking)."""
        p = self.phase(step)
        if p is None:
            return self.space.choices
        return tuple(c[:max(1, math.ceil(len(c) * p / self.shrink_phases))] for c in self.by_size)

    def __call__(self, step: int) -> list[Path]:
        rng = random.Random(path_seed(self.seed, step))
        choices = self.choices(step)
        if self.sampling == "fair":
            width = max(len(c) for c in choices)
            dealt = []
            for c in choices:
                order: list[str] = []
                while len(order) < width:
                    order += rng.sample(c, len(c))
                dealt.append(order[:width])
            archs = [Arch(tuple(d[j] for d in dealt)) for j in range(width)]
        elif self.sampling == "sandwich":
            big = Arch(tuple(c[0] for c in self._sized(choices)))
            small = Arch(tuple(c[-1] for c in self._sized(choices)))
            archs = [big, small, *(_sample(choices, rng) for _ in range(self.paths - 2))]
        else:
            archs = [_sample(choices, rng) for _ in range(self.paths)]
        if self.distill:
            teacher = archs[0] if self.sampling == "sandwich" else Arch(
                tuple(c[0] for c in self._sized(choices)))
            rest = archs[1:] if self.sampling == "sandwich" else archs
            return [Path(teacher, teacher=True), *(Path(a) for a in rest)]
        return [Path(a) for a in archs]

    def _sized(self, choices: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
        """``choices`` per layer in the plan's large-to-small order."""
        return [tuple(o for o in order if o in c) for order, c in zip(self.by_size, choices,
                                                                      strict=True)]

    def cost(self) -> int:
        """Forward/backward passes per step (the step's cost against plain SPOS's one)."""
        if self.sampling == "fair":
            return max(len(c) for c in self.space.choices) + int(self.distill)
        return self.paths + int(self.distill and self.sampling != "sandwich")


def _sample(choices: Sequence[Sequence[str]], rng: random.Random) -> Arch:
    return Arch(tuple(rng.choice(c) for c in choices))
