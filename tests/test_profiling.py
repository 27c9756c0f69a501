"""Latency tables on this CPU (torch backend): measurement, dedupe, sums, CSV."""

from __future__ import annotations

import torch

from hurricane.latency.devices import DEVICES
from hurricane.latency.profiling import LatencyTable, Protocol, measure_arch, profile_table, time_callable
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.runs.steps import layout_of
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict


def test_time_callable_keeps_median_and_spread() -> None:
    calls = []
    t = time_callable(lambda: calls.append(1), Protocol(warmup=2, repeats=7))
    assert len(calls) == 9 and t.n == 7 and t.median_ms >= 0 and t.iqr_ms >= 0


def test_table_covers_every_layer_op_and_dedupes_shapes() -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict(backbone={"layers_per_stage": [1, 1, 3, 1]}))
    layout = layout_of(spec)
    space = SearchSpace.uniform(["SEP_3", "Choice_3", "MB_3_6"], layout.num_layers)
    table = profile_table(layout, space, DEVICES.get("cpu"), Protocol(warmup=1, repeats=3))
    assert set(table.ops) == set(range(layout.num_layers))
    assert all(set(v) == {"SEP_3", "Choice_3", "MB_3_6"} for v in table.ops.values())
    assert all(ms > 0 for v in table.ops.values() for ms in v.values())
    unique = len({s.key for s in layout.layers})
    assert table.meta["unique_measurements"] == 3 * unique + 2  # + stem and head
    assert 3 * unique < 3 * layout.num_layers
    # layers with identical shapes got the same measurement
    same = [s.index for s in layout.layers if s.key == layout.layers[3].key]
    assert len(same) >= 2 and table.ops[same[0]] == table.ops[same[1]]
    a = Arch(("SEP_3", "Choice_3", "MB_3_6", "SEP_3", "Choice_3", "MB_3_6"))
    assert table.arch_latency(a) == table.fixed_ms + sum(table.ops[i][o] for i, o in enumerate(a))
    lo, hi = table.bounds(space)
    assert lo == table.arch_latency(table.fastest(space)) <= table.arch_latency(a) <= hi
    assert LatencyTable.from_json(table.to_json()) == table
    csv = table.to_csv().splitlines()
    assert csv[0] == "layer,op,median_ms,iqr_ms" and len(csv) == 2 + 3 * layout.num_layers
    assert torch.get_num_threads() == 1  # the protocol's threads were restored


def test_table_sum_tracks_end_to_end_latency() -> None:
    """Bigger ops cost more end to end too: the table ranks two extremes correctly.

    At shapes where compute dominates (at tiny ones, Python overhead per module does)."""
    spec = SearchSpec.model_validate(tiny_spec_dict(backbone={
        "input_size": 128, "layers_per_stage": [1, 1, 1, 1], "stage_channels": [32, 48, 64, 96],
        "stem_channels": 16}))
    layout = layout_of(spec)
    p = Protocol(warmup=3, repeats=15)
    space = SearchSpace.uniform(["Choice_3", "MB_7_6_SE"], layout.num_layers)
    table = profile_table(layout, space, DEVICES.get("cpu"), p)
    # compared where the gap is widest (the first layer: ~3.7x on a quiet 2-core machine) and
    # between timings taken back to back, so that other load on the machine slows both alike
    assert table.layer_ms(0, "Choice_3") < table.layer_ms(0, "MB_7_6_SE")
    small, big = Arch(("Choice_3",) * 4), Arch(("MB_7_6_SE",) * 4)
    pairs = [(measure_arch(layout, small, p).median_ms, measure_arch(layout, big, p).median_ms)
             for _ in range(3)]
    assert sum(s < b for s, b in pairs) >= 2, pairs


def test_outliers_are_flagged() -> None:
    import time as _time

    calls = iter(range(100))

    def sometimes_slow() -> None:
        if next(calls) == 12:  # one preempted run among 20
            _time.sleep(0.05)

    t = time_callable(sometimes_slow, Protocol(warmup=2, repeats=20))
    assert 1 <= t.outliers <= 5 and t.median_ms < 5  # the slow run is flagged, not kept as median
