"""Evolutionary architecture search (SPOS settings) under a latency budget enforced by rejection."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from hurricane import progress
from hurricane.nets.arch import Arch, SearchSpace


class InfeasibleBudget(ValueError):
    """No architecture of the space meets the latency budget."""


@dataclass(frozen=True)
class EvolutionConfig:
    iterations: int = 20
    population: int = 50
    top_k: int = 10
    crossover: int = 25
    mutation: int = 25
    mutation_prob: float = 0.1
    max_tries: int = 20_000
    keep_top: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    accuracy: float
    latency_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"arch": str(self.arch), "accuracy": self.accuracy, "latency_ms": self.latency_ms}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Candidate:
        return cls(Arch.parse(d["arch"]), float(d["accuracy"]), float(d["latency_ms"]))


@dataclass
class EvolutionResult:
    top: list[Candidate]
    evaluated: int
    history: list[dict[str, Any]] = field(default_factory=list)
    budget_ms: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    pareto: list[Candidate] = field(default_factory=list)  # of every evaluated (feasible) arch
    rescored: dict[str, Any] | None = None  # the top scored again (steps.common.rescore_top)

    def to_json(self) -> dict[str, Any]:
        return {"budget_ms": self.budget_ms, "evaluated": self.evaluated, "config": self.config,
                "top": [c.to_json() for c in self.top], "history": self.history,
                "pareto": [c.to_json() for c in self.pareto],
                **({"rescored": self.rescored} if self.rescored else {})}


def pareto_front(cands: Iterable[Candidate]) -> list[Candidate]:
    """The accuracy/latency Pareto set (no other candidate is at least as accurate and at least
    as fast, and strictly better in one), fastest first."""
    out: list[Candidate] = []
    best = float("-inf")
    for c in sorted(cands, key=lambda c: (c.latency_ms, -c.accuracy, c.arch)):
        if c.accuracy > best:
            out.append(c)
            best = c.accuracy
    return out


class EvolutionSearch:
    """SPOS evolution: random initial population, then top-k parents bred by crossover and
    mutation; children over the budget (or seen before) are rejected. Every loop is bounded.

    The finder gets its accuracy and latency estimators through the constructor, so the
    same search runs on a supernet, a predictor, or a lookup table.
    """

    def __init__(
        self,
        space: SearchSpace,
        cfg: EvolutionConfig,
        *,
        accuracy: Callable[[Arch], float],
        latency: Callable[[Arch], float],
        budget_ms: float,
        seeds: Sequence[Arch] = (),
    ) -> None:
        """``seeds`` (e.g. the fastest architecture) start the population when random sampling
        rarely meets a tight budget; their mutations fill it up."""
        self.space, self.cfg, self.seeds = space, cfg, tuple(seeds)
        self.accuracy_fn, self.latency_fn, self.budget_ms = accuracy, latency, budget_ms
        self.rng = random.Random(cfg.seed)
        self.scores: dict[Arch, Candidate] = {}
        self._latency: dict[Arch, float] = {}

    def latency(self, arch: Arch) -> float:
        if arch not in self._latency:
            self._latency[arch] = float(self.latency_fn(arch))
        return self._latency[arch]

    def latencies(self) -> dict[Arch, float]:
        """Every architecture whose latency was asked (evaluated or rejected), and its latency."""
        return dict(self._latency)

    def feasible(self, arch: Arch) -> bool:
        return self.latency(arch) <= self.budget_ms

    def _fill(self, n: int, make: Callable[[], Arch], seen: set[Arch]) -> list[Arch]:
        """Up to ``n`` new feasible archs from ``make``, with at most ``max_tries`` attempts."""
        out: list[Arch] = []
        for _ in range(self.cfg.max_tries):
            if len(out) >= n:
                break
            a = make()
            if a in seen or a in self.scores or not self.feasible(a):
                continue
            seen.add(a)
            out.append(a)
        return out

    def _mutate(self, parents: list[Arch]) -> Arch:
        p = self.rng.choice(parents)
        ops = tuple(self.rng.choice(c) if self.rng.random() < self.cfg.mutation_prob else o
                    for o, c in zip(p.ops, self.space.choices, strict=True))
        return Arch(ops)

    def _crossover(self, parents: list[Arch]) -> Arch:
        a, b = self.rng.choice(parents), self.rng.choice(parents)
        return Arch(tuple(self.rng.choice((x, y)) for x, y in zip(a.ops, b.ops, strict=True)))

    def _evaluate(self, archs: list[Arch], bar: progress.Task) -> None:
        for a in archs:
            self.scores[a] = Candidate(a, float(self.accuracy_fn(a)), self.latency(a))
            bar.advance(1, best=max(c.accuracy for c in self.scores.values()))

    def ranked(self) -> list[Candidate]:
        return sorted(self.scores.values(), key=lambda c: (-c.accuracy, c.latency_ms, c.arch))

    def run(self) -> EvolutionResult:
        cfg = self.cfg
        total = cfg.population + (cfg.iterations - 1) * (cfg.crossover + cfg.mutation)
        history: list[dict[str, Any]] = []
        with progress.task("evolution", total=total) as bar:
            seen: set[Arch] = set()
            population = self._fill(cfg.population, lambda: self.space.sample(self.rng), seen)
            if len(population) < cfg.population:
                # tight budget: grow the population around feasible seeds by mutation
                start = [a for a in self.seeds if self.feasible(a) and a not in seen]
                seen.update(start)
                population += start
                if population:
                    pool = list(population)
                    population += self._fill(cfg.population - len(population),
                                             partial(self._mutate, pool), seen)
            if not population:
                raise InfeasibleBudget(
                    f"no architecture of the space meets the {self.budget_ms:.3f} ms budget "
                    f"after {cfg.max_tries} random samples; raise the budget"
                )
            self._evaluate(population, bar)
            for it in range(cfg.iterations):
                ranked = self.ranked()
                history.append({"iteration": it, "evaluated": len(self.scores),
                                "best_accuracy": ranked[0].accuracy,
                                "best_arch": str(ranked[0].arch)})
                if it == cfg.iterations - 1:
                    break
                parents = [c.arch for c in ranked[: cfg.top_k]]
                children = self._fill(cfg.mutation, partial(self._mutate, parents), seen)
                children += self._fill(cfg.crossover, partial(self._crossover, parents), seen)
                missing = cfg.crossover + cfg.mutation - len(children)
                self._evaluate(children, bar)
                if missing:
                    bar.advance(missing)  # the space ran out of new feasible children
        return EvolutionResult(self.ranked()[: cfg.keep_top], len(self.scores), history,
                               self.budget_ms, asdict(cfg), pareto_front(self.scores.values()))
