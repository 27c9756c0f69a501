"""Budget resolution against the search's own latency model (predictor or table)."""

from __future__ import annotations

import pytest

from hurricane.latency.profiling import LatencyTable
from hurricane.nets.arch import SearchSpace
from hurricane.runs.steps import resolve_budget
from hurricane.search.evolution import InfeasibleBudget
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict

OPS = ("SEP_3", "Choice_3")
TABLE = LatencyTable(device="cpu", ops={i: {"SEP_3": 2.0, "Choice_3": 1.0} for i in range(5)},
                     fixed_ms=1.0)  # fastest 6 ms, slowest 11 ms by the table
SPACE = SearchSpace.uniform(OPS, 5)


def _spec(**device) -> SearchSpec:  # type: ignore[no-untyped-def]
    return SearchSpec.model_validate(tiny_spec_dict(devices=[{"name": "cpu", **device}]))


def test_fraction_is_placed_on_the_model_that_searches() -> None:
    half = lambda a: 0.5 * TABLE.arch_latency(a)  # noqa: E731  (e.g. a predictor: e2e = table/2)
    assert resolve_budget(_spec(budget_fraction=0.0), "cpu", SPACE, TABLE, half) == 3.0
    assert resolve_budget(_spec(budget_fraction=1.0), "cpu", SPACE, TABLE, half) == 5.5
    assert resolve_budget(_spec(budget_fraction=0.5), "cpu", SPACE, TABLE,
                          TABLE.arch_latency) == 8.5


def test_absolute_budget_checked_against_the_model_not_the_table() -> None:
    half = lambda a: 0.5 * TABLE.arch_latency(a)  # noqa: E731
    # 4 ms is below the table's fastest (6 ms) but feasible for the model (3 ms)
    assert resolve_budget(_spec(latency_budget_ms=4.0), "cpu", SPACE, TABLE, half) == 4.0
    with pytest.raises(InfeasibleBudget, match=r"below the fastest .* allowed: >= 6.000 ms"):
        resolve_budget(_spec(latency_budget_ms=4.0), "cpu", SPACE, TABLE, TABLE.arch_latency)


def test_quality_verdict_against_chance() -> None:
    from hurricane.runs.steps.common import quality_verdict

    bad = quality_verdict([0.12, 0.25, 0.18], num_classes=10, margin=0.2)
    assert bad["floor"] == pytest.approx(0.28) and not bad["reliable"]
    assert bad["accuracy_mean"] == pytest.approx(0.1833, abs=1e-4)
    assert bad["accuracy_min"] == 0.12 and bad["accuracy_max"] == 0.25
    assert "18.3% mean" in bad["warning"] and "chance is 10.0%" in bad["warning"]
    good = quality_verdict([0.8, 0.9], num_classes=10, margin=0.2)
    assert good["reliable"] and "warning" not in good
    assert good["accuracy_std"] == pytest.approx(0.0707, abs=1e-4)
    # the floor moves with the class count: 40% is fine among 100 classes
    assert quality_verdict([0.4], num_classes=100, margin=0.2)["reliable"]
