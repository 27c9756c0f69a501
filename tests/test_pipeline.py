"""The embedded runner end to end on a tiny spec: artifacts, report, idempotency, resume."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from hurricane import progress
from hurricane.runs.executor import InlineExecutor, JobSpec, ProcessExecutor
from hurricane.runs.pipeline import STEPS, SearchConflict, run_search, run_step, submit
from hurricane.runs.records import result_key, summarize
from hurricane.runs.steps import load_final
from hurricane.spec import SearchSpec
from hurricane.storage.store import search_key
from tests.conftest import tiny_spec_dict


class Recorder:
    """A reporter that records [description, total, advanced] per task."""

    def __init__(self) -> None:
        self.tasks: list[list[Any]] = []

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Any]:
        entry = [description, total, completed]
        self.tasks.append(entry)

        class T:
            def advance(self, n: int = 1, **metrics: Any) -> None:
                entry[2] += n

        yield T()

    def message(self, text: str) -> None:
        pass


def test_tiny_search_end_to_end(tiny_spec, store) -> None:
    sid, report = run_search(tiny_spec, store, InlineExecutor(), "t1")
    for k in ["retrain/cpu/final.pt", "retrain/cpu/arch.json", "export/cpu/model.onnx",
              "report.json", "report.md", "profile/cpu/latency.csv", "space/space.json",
              "stage1/supernet.pt", "search1/cpu/evolution.json", "search.json", "spec.json",
              "state/stage1.json", "state/profile/cpu.json"]:
        assert store.exists(search_key(sid, k)), k
    d = report["devices"]["cpu"]
    assert d["meets_budget"] and d["predicted_latency_ms"] <= d["budget_ms"]
    assert 0.0 <= d["top1"] <= 1.0 and d["measured_latency_ms"] > 0
    # the final check: rounds timed, their median reported with an interval and a verdict
    chk = d["latency_check"]
    assert 3 <= len(chk["rounds_ms"]) <= 7 and chk["verdict"] in ("within", "over",
                                                                   "inconclusive")
    assert 0 < chk["low_ms"] < chk["high_ms"] and (chk["verdict"] == "within") == (
        chk["high_ms"] <= chk["budget_ms"])
    assert chk["median_ms"] == pytest.approx(d["measured_latency_ms"], abs=1e-4)
    assert chk["budget_ms"] == pytest.approx(d["budget_ms"], abs=1e-4)
    md = store.get_bytes(search_key(sid, "report.md")).decode()
    assert f"{len(chk['rounds_ms'])} rounds" in md
    # how many priced architectures sat near the budget edge (the predictor's 90% interval)
    bc = d["budget_check"]
    assert bc["confidence"] is None and 0 <= bc["near_edge"] <= bc["priced"]
    assert f"{bc['near_edge']} of the {bc['priced']} architectures evolution priced" in md
    assert d["onnx_max_abs_diff"] <= 1e-4
    assert set(report["timings_s"]) == {"profile", "space", "predictor", "stage1", "search1",
                                        "retrain", "export"}
    pm = store.get_json(search_key(sid, "predictor", "cpu", "metrics.json"))
    assert pm["n_train"] + pm["n_test"] == 12 and pm["predictor"]["mape"] >= 0
    assert store.exists(search_key(sid, "predictor", "cpu", "predictor.json"))
    evo = store.get_json(search_key(sid, "search1", "cpu", "evolution.json"))
    assert all(c["latency_ms"] <= evo["budget_ms"] for c in evo["top"])
    # the top 3 (keep_top) were fine-tuned and re-ranked; the winner is the best fine-tuned
    fin = [c for c in evo["top"] if "finetuned_accuracy" in c]
    assert evo["finalists"]["count"] == len(fin) == 3 and evo["finalists"]["iterations"] == 2
    assert [c["finetuned_accuracy"] for c in fin] == sorted(
        (c["finetuned_accuracy"] for c in fin), reverse=True)
    assert sorted(c["supernet_rank"] for c in fin) == [1, 2, 3]
    assert d["arch"] == fin[0]["arch"] and d["finetuned_top1"] == fin[0]["finetuned_accuracy"]
    assert d["supernet_rank"] == fin[0]["supernet_rank"] and d["finalists"] == 3
    assert "fine-tuned from the supernet" in store.get_bytes(search_key(sid, "report.md")).decode()
    net = load_final(store, sid, "cpu")
    assert str(net.arch) == d["arch"]
    status = summarize(store, sid)
    assert status["state"] == "succeeded" and status["plan"] == list(report["timings_s"])
    assert status["steps"]["profile"]["units"]["cpu"]["state"] == "succeeded"

    # a second run finds every result and recomputes nothing
    before = {k: store.path(k).stat().st_mtime_ns for k in store.list(f"searches/{sid}")}
    sid2, report2 = run_search(tiny_spec, store, InlineExecutor(), sid)
    assert sid2 == sid and report2["devices"] == report["devices"]
    after = {k: store.path(k).stat().st_mtime_ns for k in before}
    assert {k for k in before if before[k] != after[k]} == set()


def test_a_failed_search_resumes_without_redoing_finished_steps(tiny_spec, store,
                                                                monkeypatch) -> None:
    real = STEPS.get("search1")

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("node lost")

    monkeypatch.setitem(STEPS._entries, "search1", dataclasses.replace(real, finish=boom))
    with pytest.raises(RuntimeError, match="node lost"):
        run_search(tiny_spec, store, InlineExecutor(), "t2")
    status = summarize(store, "t2")
    assert status["state"] == "failed" and status["failed_step"] == "search1"
    assert "node lost" in status["error"]
    assert status["steps"]["stage1"]["state"] == "succeeded"
    stamp = store.path(search_key("t2", "stage1", "supernet.pt")).stat().st_mtime_ns
    monkeypatch.setitem(STEPS._entries, "search1", real)
    _, report = run_search(tiny_spec, store, InlineExecutor(), "t2")
    status = summarize(store, "t2")
    assert status["state"] == "succeeded" and status["generation"] == 1  # the rerun resumed it
    assert store.path(search_key("t2", "stage1", "supernet.pt")).stat().st_mtime_ns == stamp
    assert report["devices"]["cpu"]["meets_budget"]


def test_a_search_id_keeps_its_spec(tiny_spec, store) -> None:
    submit(tiny_spec, store, "t3")
    other = SearchSpec.model_validate(tiny_spec_dict(seed=99))
    with pytest.raises(SearchConflict, match="different spec"):
        submit(other, store, "t3")
    assert store.get_json(search_key("t3", "spec.json"))["seed"] == tiny_spec.seed


def test_a_spec_stored_before_a_new_field_still_resumes(tiny_spec, store) -> None:
    submit(tiny_spec, store, "old")
    stored = store.get_json(search_key("old", "spec.json"))
    del stored["one_proxy"], stored["devices"][0]["proxy"]  # as an older version wrote it
    store.put_json(search_key("old", "spec.json"), stored)
    assert submit(tiny_spec, store, "old") == "old"
    with pytest.raises(SearchConflict, match="different spec"):
        submit(SearchSpec.model_validate(tiny_spec_dict(seed=99)), store, "old")


def test_infeasible_absolute_budget_fails_before_training(store) -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict(
        devices=[{"name": "cpu", "latency_budget_ms": 1e-6}]))
    with pytest.raises(ValueError, match=r"below the fastest architecture"):
        run_search(spec, store, InlineExecutor(), "t4")
    assert not store.exists(search_key("t4", "stage1", "result.json"))


def test_process_executor_runs_the_pod_command(tiny_spec, store) -> None:
    """The profile step's job runs as `python -m hurricane job profile ...` in a real process."""
    sid = submit(tiny_spec, store, "t5")
    job = JobSpec(search_id=sid, step="profile", store_url=store.url, device="cpu",
                  node_label="cpu")
    assert job.name == "t5-profile-cpu"
    assert job.command()[:4] == ["python", "-m", "hurricane", "job"]
    rec = Recorder()
    with progress.use_reporter(rec):
        out = run_step("profile", tiny_spec, sid, store, ProcessExecutor(echo=False))
    # the child's progress bar was relayed into this process's reporter
    assert rec.tasks and rec.tasks[0][0] == "profile cpu" and rec.tasks[0][2] == rec.tasks[0][1]
    assert out["devices"]["cpu"]["measurements"] > 0
    assert out["_meta"]["executor"] == "process"
    assert store.exists(search_key(sid, "profile", "cpu", "latency.json"))


def test_hardware_space_and_a_table_device(tiny_spec, store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Eq. 2 space from the first device's table; a second device given as an imported table."""
    from hurricane.latency.devices import DEVICES
    from hurricane.latency.profiling import Protocol, profile_table
    from hurricane.runs.steps import layout_of, pool_space

    table = profile_table(layout_of(tiny_spec), pool_space(tiny_spec), DEVICES.get("cpu"),
                          Protocol(warmup=1, repeats=3))
    (tmp_path / "dsp.csv").write_text(table.to_csv())
    spec = SearchSpec.model_validate(tiny_spec_dict(
        space={"kind": "hardware", "top_p": 2, "explore_layers": 1},
        devices=[{"name": "cpu", "budget_fraction": 0.6},
                 {"name": "dsp-855", "table": str(tmp_path / "dsp.csv"), "budget_fraction": 0.6}]))
    sid, report = run_search(spec, store, InlineExecutor(), "hw1")
    space = store.get_json(search_key(sid, "space", "space.json"))
    sizes = [len(c) for c in space["choices"]]
    assert sizes == [2, 2, 2, 2, 3]  # top-2 everywhere, + the exploring op in the last layer
    assert store.get_bytes(search_key(sid, "space", "heatmap.png"))[:4] == b"\x89PNG"
    assert set(report["devices"]) == {"cpu", "dsp-855"}
    for d in report["devices"].values():
        assert d["meets_budget"]
        assert all(op in c for op, c in zip(d["arch"].split("-"), space["choices"], strict=True))
    assert report["devices"]["dsp-855"]["measured_latency_ms"] is None  # a replayed table


def test_manual_space(store) -> None:  # type: ignore[no-untyped-def]
    spec = SearchSpec.model_validate(tiny_spec_dict(space={"kind": "manual"}))
    sid = submit(spec, store, "man1")
    run_step("profile", spec, sid, store, InlineExecutor())
    out = run_step("space", spec, sid, store, InlineExecutor())
    assert out["kind"] == "manual" and sorted(out["ops"]) == sorted(
        ["Choice_3", "Choice_5", "Choice_7", "ChoiceX"]) and out["size"] == 4**5


def test_supernet_quality_is_measured_and_a_random_pick_is_flagged(store) -> None:
    """Every supernet training scores random architectures through the supernet after three
    quarters of its iterations and at the end (two halves of the validation split, two BN
    recalibrations); one that did not learn (here: 12 iterations against a floor set at 99%
    accuracy) puts a warning in the step's result, the search status, report.json and
    report.md."""
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"quality_archs": 4, "quality_margin": 0.99}))
    sid, report = run_search(spec, store, InlineExecutor(), "q1")
    q = store.get_json(search_key(sid, "stage1", "train.json"))["quality"]
    assert q["archs"] == 4 and len(q["accuracies"]) >= 1 and q["chance"] == 0.1
    assert q["floor"] == pytest.approx(0.1 + 0.99 * 0.9, abs=1e-4)
    assert not q["reliable"] and "did not learn" in q["warning"] and not q["tests"]["learned"]
    assert q["accuracy_min"] <= q["accuracy_mean"] <= q["accuracy_max"]
    assert [c["step"] for c in q["checks"]] == [9, 12]
    assert {"split_half_rho", "stability_rho"} <= set(q) and q["stability_rho"] is not None
    status = summarize(store, sid)
    assert status["state"] == "succeeded"
    assert status["warnings"] and status["warnings"][0].startswith(
        "stage1: the supernet's ranking is unreliable after 12 iterations: it did not learn")
    assert status["steps"]["stage1"]["warnings"] == status["warnings"]
    v = status["supernets"]["stage1"]  # the same verdict, structured
    assert v["reliable"] is False and v["tests"] == q["tests"] and v["iterations"] == 12
    assert v["split_half_rho"] == q["split_half_rho"] and v["warning"] == q["warning"]
    assert report["warnings"] == status["warnings"]
    sn = report["supernets"]["stage1"]
    assert sn["quality"]["accuracy_mean"] == q["accuracy_mean"] and sn["iterations"] == 12
    assert [p[0] for p in sn["loss_curve"]] == [10]  # logged every 10 steps
    md = store.get_bytes(search_key(sid, "report.md")).decode()
    assert "**WARNING** stage1: the supernet's ranking is unreliable" in md
    assert "**unreliable**: did not learn" in md

    # measured but learned enough for a floor at chance: no warning anywhere
    ok = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"quality_archs": 3, "quality_margin": 0.0}))
    sid2, report2 = run_search(ok, store, InlineExecutor(), "q2")
    q2 = store.get_json(search_key(sid2, "stage1", "train.json"))["quality"]
    assert q2["tests"]["learned"] == (q2["accuracy_mean"] >= 0.1)
    assert q2["reliable"] == all(q2["tests"].values())
    assert bool(report2["warnings"]) == (not q2["reliable"])
    assert ("warnings" in summarize(store, sid2)) == (not q2["reliable"])
    assert summarize(store, sid2)["supernets"]["stage1"]["reliable"] == q2["reliable"]


def test_quality_can_be_switched_off(store) -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict(supernet={"quality_archs": 0}))
    sid, report = run_search(spec, store, InlineExecutor(), "q3")
    assert "quality" not in store.get_json(search_key(sid, "stage1", "train.json"))
    assert report["supernets"]["stage1"]["quality"] is None and report["warnings"] == []
    assert "warnings" not in summarize(store, sid) and "supernets" not in summarize(store, sid)


def test_budget_confidence_tightens_evolution_by_the_predictors_calibrated_factor(store) -> None:
    """With evolution.budget_confidence, evolution accepts an architecture only when its
    predicted latency times the predictor's upper factor (from its held-out architectures) is
    within the budget; the report counts the architectures near the budget edge."""
    d = tiny_spec_dict(devices=[{"name": "cpu", "budget_fraction": 1.0}])
    d["predictor"] = {"samples": 20, "repeats": 3, "holdout": 0.4}
    d["evolution"] = {**d["evolution"], "budget_confidence": 0.9}
    spec = SearchSpec.model_validate(d)
    sid = submit(spec, store, "bc1")
    for s in ("profile", "space", "predictor"):
        run_step(s, spec, sid, store, InlineExecutor())
    # the predictor's held-out errors, fixed (this machine's timing noise is not the subject)
    key = search_key(sid, "predictor", "cpu", "fit.json")
    fit = store.get_json(key)
    test = [p for p in fit["points"] if p["split"] == "test"]
    ratios = (0.97, 1.01, 1.002, 1.004, 0.99, 1.0, 1.001, 0.98, 1.003, 0.96)
    assert 3 <= len(test) <= len(ratios)
    for p, ratio in zip(test, ratios, strict=False):
        p["measured_ms"] = p["predicted_ms"] * ratio
    store.put_json(key, fit)
    for s in ("stage1", "search1"):
        run_step(s, spec, sid, store, InlineExecutor())
    evo = store.get_json(search_key(sid, "search1", "cpu", "evolution.json"))
    bc = evo["budget_check"]
    assert bc["held_out"] == len(test) and bc["confidence"] == 0.9
    # the conformal rank ceil((n + 1) 0.9) of up to 10 held-out points is the largest ratio;
    # under 9 points it is beyond them (not calibrated at 90%) and the largest is used
    assert bc["upper_factor"]["factor"] == pytest.approx(1.01, rel=1e-3)
    assert bc["upper_factor"]["calibrated"] == (len(test) >= 9)
    assert bc["effective_budget_ms"] == pytest.approx(evo["budget_ms"] / bc["upper_factor"]["factor"],
                                                      rel=1e-3)
    assert all(c["latency_ms"] <= bc["effective_budget_ms"] + 1e-9 for c in evo["top"])
    assert 0 <= bc["near_edge"] <= bc["priced"] and bc["priced"] >= evo["evaluated"]
    res = store.get_json(result_key(sid, "search1"))
    assert res["devices"]["cpu"]["budget_check"]["near_edge"] == bc["near_edge"]
