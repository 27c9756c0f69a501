"""Evolution under a latency budget: every result within budget, seeded, bounded."""

from __future__ import annotations

import pytest

from hurricane.nets.arch import Arch, SearchSpace
from hurricane.search.evolution import EvolutionConfig, EvolutionSearch, InfeasibleBudget

OPS = ("SEP_3", "SEP_5", "MB_3_1", "MB_3_6", "Choice_3", "ChoiceX")
COST = {op: float(i + 1) for i, op in enumerate(OPS)}  # ms per layer
SCORE = {"SEP_3": 0.1, "SEP_5": 0.3, "MB_3_1": 0.2, "MB_3_6": 0.9, "Choice_3": 0.4, "ChoiceX": 0.5}


def latency(a: Arch) -> float:
    return sum(COST[o] for o in a.ops)


def accuracy(a: Arch) -> float:  # bigger ops are "more accurate": budget must bind
    return sum(SCORE[o] for o in a.ops) / len(a)


def _search(budget: float, seed: int = 0, seeded: bool = True, **cfg):  # type: ignore[no-untyped-def]
    space = SearchSpace.uniform(OPS, 10)
    conf = EvolutionConfig(iterations=8, population=20, top_k=5, crossover=10, mutation=10,
                           seed=seed, keep_top=10, **cfg)
    fastest = Arch(("SEP_3",) * 10)
    return EvolutionSearch(space, conf, accuracy=accuracy, latency=latency, budget_ms=budget,
                           seeds=[fastest] if seeded else [])


@pytest.mark.parametrize("budget", [14.0, 25.0, 40.0])
def test_every_evaluated_and_returned_arch_meets_the_budget(budget: float) -> None:
    s = _search(budget)
    res = s.run()
    assert res.top and len(res.top) <= 10
    assert all(c.latency_ms <= budget for c in res.top)
    assert all(latency(c.arch) <= budget for c in s.scores.values())
    assert res.evaluated == len(s.scores) <= 20 + 7 * 20
    assert [c.accuracy for c in res.top] == sorted((c.accuracy for c in res.top), reverse=True)


def test_evolution_improves_on_the_random_population() -> None:
    res = _search(30.0).run()
    assert res.history[-1]["best_accuracy"] > res.history[0]["best_accuracy"]


def test_seeded_runs_repeat() -> None:
    a, b = _search(25.0, seed=4).run(), _search(25.0, seed=4).run()
    assert a.to_json() == b.to_json()
    assert _search(25.0, seed=5).run().to_json() != a.to_json()


def test_infeasible_budget_raises_clearly() -> None:
    with pytest.raises(InfeasibleBudget, match="raise the budget"):
        _search(9.0, max_tries=500).run()


def test_tight_budget_needs_the_fastest_seed() -> None:
    with pytest.raises(InfeasibleBudget):
        _search(12.0, seeded=False, max_tries=3000).run()
    res = _search(12.0, max_tries=3000).run()
    assert res.evaluated > 1 and all(c.latency_ms <= 12.0 for c in res.top)


def test_tiny_feasible_set_ends_without_looping() -> None:
    # only all-SEP_3 (10 ms) and one-SEP_5 variants (11 ms) fit: 11 archs in total
    res = _search(11.0, max_tries=2000).run()
    assert 1 <= res.evaluated <= 11
    assert all(c.latency_ms <= 11.0 for c in res.top)
