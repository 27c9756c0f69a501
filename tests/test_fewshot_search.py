"""A few-shot device in a search (devices[].samples): nothing profiled on it, k chosen
architectures timed with its real engine (OpenVINO here), its predictor built from the search's
other devices' tables (torch and ONNX Runtime, profiled for real), budgets and evolution on it,
the report naming the known devices it follows."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hurricane.latency.fewshot import FORMAT, FewShotPredictor
from hurricane.nets.arch import Arch
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search, run_step, submit
from hurricane.runs.records import result_key
from hurricane.runs.steps.common import latency_model, load_table
from hurricane.spec import SearchSpec
from hurricane.storage.store import search_key
from tests.conftest import tiny_spec_dict

pytest.importorskip("openvino")


def _spec(**kw: Any) -> SearchSpec:
    return SearchSpec.model_validate(tiny_spec_dict(strategy="spos", space={"kind": "pool"}, **kw))


def test_a_device_from_five_measurements_and_the_others_tables(store) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(devices=[{"name": "cpu", "budget_fraction": 0.5},
                          {"name": "cpu-ort", "budget_fraction": 0.5},
                          {"name": "cpu-ov", "budget_fraction": 0.5, "samples": 5}])
    sid = submit(spec, store, "fs1")
    run_step("profile", spec, sid, store, InlineExecutor())
    # nothing was profiled on the few-shot device
    assert not store.exists(search_key(sid, "profile", "cpu-ov", "latency.csv"))
    assert store.get_json(result_key(sid, "profile"))["devices"]["cpu-ov"] == {"few_shot": 5}
    run_step("space", spec, sid, store, InlineExecutor())
    pred = run_step("predictor", spec, sid, store, InlineExecutor())

    measured = store.get_json(search_key(sid, "predictor", "cpu-ov", "measurements.json"))
    assert len(measured) == 5 and len({m["arch"] for m in measured}) == 5
    m = pred["devices"]["cpu-ov"]
    fs = m["few_shot"]
    assert fs["samples"] == 5 and fs["known_devices"] == ["cpu", "cpu-ort"]
    assert sum(w for _, w in fs["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert m["n_test"] == 5 and m["predictor"]["mape"] >= 0  # leave-one-out
    d = store.get_json(search_key(sid, "predictor", "cpu-ov", "predictor.json"))
    assert d["format"] == FORMAT
    # the latency model of the device is the few-shot predictor, with its own intervals
    table = load_table(store, sid, "cpu-ov")
    # its layer table: the predictor distilled into layer costs, for budgets and seeds
    assert table.meta["derived"] == "few-shot" and table.meta["follows_predictor"]["srcc"] > 0.5
    lat = latency_model(store, sid, "cpu-ov", table)
    model = FewShotPredictor.from_json(d)
    archs = [Arch.parse(x["arch"]) for x in measured]
    assert [lat(a) for a in archs] == pytest.approx(list(model.predict(archs)), rel=1e-9)
    med, lo, hi = model.predict_interval(model.encode(archs), 0.9)
    assert all(lo <= med) and all(med <= hi)
    assert pred["budgets_ms"]["cpu-ov"] > 0

    # evolution runs on it, under its budget
    run_step("stage1", spec, sid, store, InlineExecutor())
    res = run_step("search1", spec, sid, store, InlineExecutor())
    win = res["devices"]["cpu-ov"]
    assert win["latency_ms"] <= win["budget_ms"] == pytest.approx(pred["budgets_ms"]["cpu-ov"])
    # to the end: retrained, exported, re-measured; the report names the devices it follows
    _, report = run_search(spec, store, InlineExecutor(), sid)
    p = report["devices"]["cpu-ov"]["predictor"]
    assert p["few_shot"] and p["samples"] == 5 and p["weights"][0][0] == fs["weights"][0][0]
    assert report["devices"]["cpu-ov"]["latency_check"]["verdict"] in (
        "within", "over", "inconclusive")
    md = store.get_bytes(search_key(sid, "report.md")).decode()
    assert "cpu-ov latency predictor: few-shot, 5 architectures timed on it" in md
    assert f"the ones it follows most: {fs['weights'][0][0]}" in md


def test_a_few_shot_device_needs_two_known_tables(store) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(devices=[{"name": "cpu", "budget_fraction": 0.5},
                          {"name": "cpu-ov", "budget_fraction": 0.5, "samples": 5}])
    sid = submit(spec, store, "fs2")
    for s in ("profile", "space"):
        run_step(s, spec, sid, store, InlineExecutor())
    with pytest.raises(Exception, match=r"at least 2 known devices .* found 1 \(cpu\)"):
        run_step("predictor", spec, sid, store, InlineExecutor())


@pytest.mark.parametrize(("devices", "extra", "words"), [
    ([{"name": "cpu", "budget_fraction": 0.5, "samples": 5, "table": "x.csv"}], {},
     "cannot be combined with 'proxy' or 'table'"),
    ([{"name": "cpu", "budget_fraction": 0.5, "samples": 2}], {}, "greater than or equal to 3"),
    ([{"name": "cpu", "budget_fraction": 0.5, "samples": 5}],
     {"strategy": "hurricane", "space": {"kind": "hardware"}}, "put a profiled device first"),
])
def test_bad_few_shot_specs_name_the_field(devices: list[dict[str, Any]], extra: dict[str, Any],
                                           words: str) -> None:
    d = {**tiny_spec_dict(strategy="spos", space={"kind": "pool"}), "devices": devices, **extra}
    with pytest.raises(ValidationError, match=words):
        SearchSpec.model_validate(d)
