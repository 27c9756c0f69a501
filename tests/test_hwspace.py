"""Eq. 2 search-space generation on hand-made latency tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from hurricane.latency.profiling import LatencyTable
from hurricane.nets.flops import op_cost
from hurricane.runs.steps import layout_of
from hurricane.search.hwspace import exploring_op, hardware_space, plot_heatmap
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict

OPS = ["SEP_3", "SEP_7", "MB_3_1", "MB_7_6_SE", "Choice_3", "Choice_5", "ChoiceX"]
# hand-made per-op latency (ms), the same at every layer
MS = {"SEP_3": 1.0, "SEP_7": 5.0, "MB_3_1": 0.5, "MB_7_6_SE": 9.0, "Choice_3": 0.7,
      "Choice_5": 2.0, "ChoiceX": 3.0}


def _table(n: int) -> LatencyTable:
    return LatencyTable(device="hand", ops={i: dict(MS) for i in range(n)}, fixed_ms=1.0)


def test_alpha_zero_keeps_the_fastest_ops_and_explores_the_biggest() -> None:
    layout = layout_of(SearchSpec.model_validate(tiny_spec_dict()))
    n = layout.num_layers
    hw = hardware_space(layout, _table(n), OPS, alpha=0.0, top_p=3, explore_layers=2,
                        explore_rule="capacity")
    fastest = ("MB_3_1", "Choice_3", "SEP_3")  # 1/latency order
    for i in range(n - 2):
        assert hw.space.choices[i] == fastest
    for i in range(n - 2, n):
        s = layout.layers[i]
        rest = [o for o in OPS if o not in fastest]
        cap = {o: op_cost(o, s.cin, s.cout, s.stride, s.in_hw, s.shortcut) for o in rest}
        biggest = max(rest, key=lambda o: cap[o].macs * cap[o].params)
        assert hw.space.choices[i] == (*fastest, biggest) and hw.exploring[i] == biggest
    assert hw.space.size == 3 ** (n - 2) * 4 ** 2
    assert hw.a_win0 == ("MB_3_1",) * n


def test_explore_rules() -> None:
    layout = layout_of(SearchSpec.model_validate(tiny_spec_dict()))
    n = layout.num_layers
    hw = hardware_space(layout, _table(n), OPS, alpha=0.0, top_p=3, explore_layers=2,
                        explore_rule="next")
    assert hw.exploring == {n - 2: "Choice_5", n - 1: "Choice_5"}  # 4th fastest
    # bounded: no op of the rest is as fast as SEP_3 (the slowest chosen) -> the next-ranked op
    bounded = hardware_space(layout, _table(n), OPS, alpha=0.0, top_p=3, explore_layers=2)
    assert bounded.explore_rule == "bounded" and bounded.exploring == hw.exploring
    cap = {"a": 1.0, "b": 2.0, "big_slow": 100.0, "big_fast": 50.0, "small": 0.1}
    lat = {"a": 1.0, "b": 2.0, "big_slow": 9.0, "big_fast": 1.5, "small": 0.3}
    score = {o: 1 / lat[o] for o in cap}
    rest = ["big_slow", "big_fast", "small"]
    assert exploring_op(rest, ["a", "b"], cap, score, lat, "bounded") == "big_fast"
    assert exploring_op(rest, ["a", "b"], cap, score, lat, "capacity") == "big_slow"
    assert exploring_op(rest, ["a", "b"], cap, score, lat, "next") == "small"
    with pytest.raises(ValueError, match="explore_rule must be one of bounded, capacity, next"):
        hardware_space(layout, _table(n), OPS, alpha=0.0, explore_rule="biggest")


def test_alpha_trades_capacity_against_latency() -> None:
    layout = layout_of(SearchSpec.model_validate(tiny_spec_dict()))
    i, s = 2, layout.layers[2]
    hw = hardware_space(layout, _table(layout.num_layers), OPS, alpha=1.0, top_p=2,
                        explore_layers=0)
    def score(o: str) -> float:
        c = op_cost(o, s.cin, s.cout, s.stride, s.in_hw, s.shortcut)
        return float(c.macs * c.params) / MS[o]
    expect = tuple(sorted(OPS, key=lambda o: -score(o))[:2])
    assert hw.space.choices[i] == expect
    assert hw.scores[i]["SEP_3"] == pytest.approx(score("SEP_3"))
    with pytest.raises(ValueError, match="non-negative"):
        hardware_space(layout, _table(layout.num_layers), OPS, alpha=-1)


def test_heatmap_png(tmp_path: Path) -> None:
    layout = layout_of(SearchSpec.model_validate(tiny_spec_dict()))
    hw = hardware_space(layout, _table(layout.num_layers), OPS, alpha=0.25, top_p=2)
    p = plot_heatmap(hw, tmp_path / "space.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
