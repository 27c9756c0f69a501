"""Device backends: every engine installable here times real modules; absent hardware is a
clear error; imported tables round-trip; the measurement cache prevents re-measuring."""

from __future__ import annotations

from pathlib import Path

import pytest

from hurricane.latency.backends import BACKENDS, DeviceUnavailable
from hurricane.latency.devices import DEVICES, DeviceProfile, device_profile
from hurricane.latency.profiling import LatencyTable, Protocol, profile_table, time_module
from hurricane.nets.arch import SearchSpace
from hurricane.nets.ops import build_op
from hurricane.runs.steps import layout_of
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict

HERE = ["cpu", "cpu-ort", "cpu-ov"]  # engines this machine has (no GPU/NPU/DSP)
P = Protocol(warmup=1, repeats=3)


def _space(spec: SearchSpec) -> SearchSpace:
    return SearchSpace.uniform(["SEP_3", "Choice_3", "MB_3_3_SE"], spec.backbone.num_layers)


@pytest.mark.parametrize("name", HERE)
def test_installed_engines_time_every_op_family(name: str) -> None:
    dev = DEVICES.get(name)
    assert BACKENDS.get(dev.backend).unavailable(dev) is None
    for op in ("SEP_5_SE", "MB_3_6", "Choice_7", "ChoiceX_SE"):
        t = time_module(build_op(op, 16, 16, 1), (1, 16, 8, 8), P, dev)
        assert t.median_ms > 0 and t.n == 3


@pytest.mark.parametrize("name", HERE)
def test_profile_table_on_each_engine(name: str) -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict())
    layout = layout_of(spec)
    table = profile_table(layout, _space(spec), DEVICES.get(name), P)
    assert table.meta["backend"] == DEVICES.get(name).backend
    assert all(ms > 0 for v in table.ops.values() for ms in v.values()) and table.fixed_ms > 0


@pytest.mark.parametrize("name", ["gpu", "gpu-ort", "gpu-ov", "vpu-ov", "dsp-qnn"])
def test_absent_hardware_is_a_clear_error(name: str) -> None:
    dev = DEVICES.get(name)
    reason = BACKENDS.get(dev.backend).unavailable(dev)
    assert reason  # this machine has none of these
    with pytest.raises(DeviceUnavailable, match=f"device '{name}'.*hurricane.io/device="):
        time_module(build_op("SEP_3", 8, 8, 1), (1, 8, 8, 8), P, dev)


def test_cache_means_nothing_is_measured_twice() -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict())
    layout, space = layout_of(spec), _space(spec)
    cache: dict[str, dict[str, float]] = {}
    first = profile_table(layout, space, DEVICES.get("cpu"), P, cache=cache)
    assert first.meta["measured_now"] == first.meta["unique_measurements"] == len(cache)
    again = profile_table(layout, space, DEVICES.get("cpu"), P, cache=cache)
    assert again.meta["measured_now"] == 0 and again.ops == first.ops
    # another protocol is another measurement
    other = profile_table(layout, space, DEVICES.get("cpu"), Protocol(warmup=1, repeats=4),
                          cache=cache)
    assert other.meta["measured_now"] == first.meta["unique_measurements"]


def test_table_csv_round_trip_and_table_device(tmp_path: Path) -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict())
    layout, space = layout_of(spec), _space(spec)
    table = profile_table(layout, space, DEVICES.get("cpu"), P)
    path = tmp_path / "dsp.csv"
    path.write_text(table.to_csv())
    back = LatencyTable.from_csv(path.read_text(), device="dsp-855")
    assert back.ops == {k: {o: round(v, 6) for o, v in d.items()} for k, d in table.ops.items()}
    assert back.fixed_ms == pytest.approx(table.fixed_ms, abs=1e-6)
    dev = device_profile("dsp-855", table=str(path))
    assert dev.backend == "table"
    replay = profile_table(layout, space, dev, P)  # nothing measured: the table replays
    assert replay.ops == back.ops
    with pytest.raises(ValueError, match=r"lacks .* entries"):
        profile_table(layout, SearchSpace.uniform(["SEP_7"], layout.num_layers), dev, P)
    bad = tmp_path / "bad.csv"
    bad.write_text("layer,op,median_ms\n0,SEP_3,abc\n")
    with pytest.raises(ValueError, match="line 2"):
        LatencyTable.from_csv(bad.read_text(), device="x")
    with pytest.raises(DeviceUnavailable, match="does not exist"):
        profile_table(layout, space, device_profile("x", table=str(tmp_path / "none.csv")), P)


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        DeviceProfile("x", "tflite", "cpu")


def test_spec_accepts_table_devices(tmp_path: Path) -> None:
    d = tiny_spec_dict(devices=[{"name": "dsp-855", "table": str(tmp_path / "t.csv"),
                                 "latency_budget_ms": 17}])
    assert SearchSpec.model_validate(d).devices[0].table == str(tmp_path / "t.csv")
