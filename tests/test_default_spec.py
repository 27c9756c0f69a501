"""The default spec at its own scale (20 layers, the 32-op pool, 224² input): its predictor
step measures a few architectures end to end and fits the 20 × 32 predictor (195k pair
features, never materialised). The layer table is given (not measured) and nothing trains."""

from __future__ import annotations

import numpy as np

from hurricane.latency.latency_table import LatencyTable
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_step
from hurricane.runs.records import submit
from hurricane.runs.steps import pool_space
from hurricane.runs.steps.common import table_key
from hurricane.spec import SearchSpec


def test_default_spec_predictor_step_runs(store) -> None:  # type: ignore[no-untyped-def]
    spec = SearchSpec.model_validate({
        "profile": {"warmup": 0, "repeats": 3, "threads": 1},
        "predictor": {"samples": 10, "repeats": 3},
        "devices": [{"name": "cpu", "budget_fraction": 0.5}]})
    assert spec.backbone.num_layers == 20 and len(spec.space.ops) == 32
    space = pool_space(spec)
    rng = np.random.default_rng(0)
    ops = {i: {op: float(rng.uniform(0.5, 20.0)) for op in c} for i, c in enumerate(space.choices)}
    sid = submit(spec, store, "default-scale")
    store.put_json(table_key(sid, "cpu"), LatencyTable("cpu", ops, fixed_ms=3.0).to_json())
    run_step("profile", spec, sid, store, InlineExecutor())  # the table is there: nothing measured
    run_step("space", spec, sid, store, InlineExecutor())
    out = run_step("predictor", spec, sid, store, InlineExecutor())
    m = out["devices"]["cpu"]
    assert m["n_train"] + m["n_test"] == 10 and m["predictor"]["mape"] >= 0
    assert m["chosen"]["candidates"] and len(m["chosen"]["candidates"]) == 16
    saved = store.get_json(f"searches/{sid}/predictor/cpu/predictor.json")
    assert len(saved["choices"]) == 20 and all(len(c) == 32 for c in saved["choices"])
    assert out["budgets_ms"]["cpu"] > 0
