"""HURRICANE's two stages (Algorithm 1): which layers each stage trains and searches, that fixed
layers never change, stage restarts, early stop at a loss level, Pareto sets, the report."""

from __future__ import annotations

import pytest
import torch

from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer, TrainConfig, train
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search, run_step, submit
from hurricane.runs.steps import (
    a_win0,
    data_of,
    inherit_weights,
    layout_of,
    load_space,
    path_sampler,
    pool_space,
    stage2_dir,
    stage2_space,
    train_supernet,
)
from hurricane.runs.steps.results import winner_step
from hurricane.runs.strategies import STRATEGIES
from hurricane.search.evolution import Candidate, pareto_front
from hurricane.spec import SearchSpec, SpecError, parse_spec
from hurricane.storage.store import search_key
from hurricane.storage.torchio import load_torch
from tests.conftest import tiny_spec_dict


def _spec(**kw) -> SearchSpec:  # type: ignore[no-untyped-def]
    return SearchSpec.model_validate(tiny_spec_dict(strategy="hurricane", **kw))


def test_two_stage_search_trains_and_searches_the_right_layers(store) -> None:
    spec = _spec(devices=[{"name": "cpu", "budget_fraction": 0.6}])
    n, t = spec.backbone.num_layers, spec.stage_split
    assert (n, t) == (5, 2)
    sid, report = run_search(spec, store, InlineExecutor(), "two")
    space = load_space(store, sid)
    start = Arch.parse(report["a_win0"])
    assert start == a_win0(spec, store, sid, space) and space.contains(start)

    s1 = store.get_json(search_key(sid, "stage1", "train.json"))
    assert s1["active_layers"] == [i for i in range(t, n) if len(space.choices[i]) > 1]
    assert s1["fixed_layers"] == {str(i): start[i] for i in range(t)}
    evo1 = store.get_json(search_key(sid, "search1", "cpu", "evolution.json"))
    for c in evo1["top"] + evo1["pareto"]:  # Stage 1 never changes layers 1..t
        assert Arch.parse(c["arch"]).ops[:t] == start.ops[:t]
    win1 = Arch.parse(evo1["top"][0]["arch"])

    stage = stage2_dir(win1)
    s2 = store.get_json(search_key(sid, stage, "train.json"))
    assert s2["active_layers"] == [i for i in range(t) if len(space.choices[i]) > 1]
    assert s2["fixed_layers"] == {str(i): win1[i] for i in range(t, n)}
    assert s2["a_win1"] == str(win1) and s2["inherited_tensors"] > 0
    evo2 = store.get_json(search_key(sid, "search2", "cpu", "evolution.json"))
    assert evo2["supernet"] == stage
    for c in evo2["top"] + evo2["pareto"]:  # Stage 2 never changes layers t+1..n
        assert Arch.parse(c["arch"]).ops[t:] == win1.ops[t:]

    d = report["devices"]["cpu"]
    assert d["stages"] == {"search1": str(win1), "search2": evo2["top"][0]["arch"]}
    assert d["arch"] == evo2["top"][0]["arch"]
    assert report["iterations_per_stage"] == {"stage1": 12, "stage2": 12}
    assert report["supernet_iterations"] == 24
    assert d["meets_budget"] and d["predicted_latency_ms"] <= d["budget_ms"]
    md = store.get_bytes(search_key(sid, "report.md")).decode()
    assert "stage1 12, stage2 12" in md and "a_win0" in md and "search2" in md
    pareto = store.get_json(search_key(sid, "search2", "cpu", "pareto.json"))
    assert pareto["pareto"] and all(c["latency_ms"] <= pareto["budget_ms"]
                                    for c in pareto["pareto"])


def test_stop_after_stage1_retrains_stage1_winner(store) -> None:
    spec = _spec(hurricane={"stop_after_stage1": True})
    plan = STRATEGIES.get("hurricane").plan(spec)
    assert "stage2" not in plan and "search2" not in plan
    assert winner_step(spec) == "search1"
    sid, report = run_search(spec, store, InlineExecutor(), "s1only")
    assert report["iterations_per_stage"] == {"stage1": 12}
    evo1 = store.get_json(search_key(sid, "search1", "cpu", "evolution.json"))
    assert report["devices"]["cpu"]["arch"] == evo1["top"][0]["arch"]
    assert not store.list(search_key(sid, "stage2"))


def test_two_devices_share_stage1_and_each_get_a_winner(store) -> None:
    spec = _spec(devices=[{"name": "cpu", "budget_fraction": 0.7},
                          {"name": "cpu-ort", "budget_fraction": 0.7}],
                 predictor={"enabled": False})
    sid = submit(spec, store, "multi")
    ex = InlineExecutor()
    for step in ("profile", "space", "predictor", "stage1", "search1", "stage2", "search2"):
        run_step(step, spec, sid, store, ex)
    res2 = store.get_json(search_key(sid, "search2", "result.json"))
    stage2 = store.get_json(search_key(sid, "stage2", "result.json"))["devices"]
    # one Stage 2 training per distinct Stage 1 winner, shared when the winners agree
    trainings = {store.get_json(search_key(sid, "search1", d, "evolution.json"))["top"][0]["arch"]
                 for d in ("cpu", "cpu-ort")}
    assert len(store.list(search_key(sid, "stage2"))) > 0
    assert {r["a_win1"] for r in stage2.values()} == trainings
    for d in ("cpu", "cpu-ort"):
        assert res2["devices"][d]["latency_ms"] <= res2["devices"][d]["budget_ms"]
        assert store.exists(search_key(sid, "search2", d, "pareto.json"))


def test_stage_restarted_from_its_checkpoint_continues(store) -> None:
    spec = _spec()
    sid = submit(spec, store, "restart")
    ex = InlineExecutor()
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, ex)
    space = SearchSpace.from_json(store.get_json(search_key(sid, "space", "space.json")))
    win1 = space.sample(__import__("random").Random(0))
    s2 = stage2_space(spec, store, sid, win1)
    init = Supernet(layout_of(spec), space).state_dict()
    part = train_supernet(spec, sid, store, "stage2/x", s2, init=init, stop_after=7)
    assert part == {"stopped_at": 7}  # the job died after step 7 (checkpoint at 5 and 7)
    done = train_supernet(spec, sid, store, "stage2/x", s2, init=init)
    assert done["resumed_from"] == 7 and done["iterations"] == 12
    straight = train_supernet(spec, sid, store, "stage2/y", s2, init=init)
    a = load_torch(store, search_key(sid, "stage2/x", "supernet.pt"))["model"]
    b = load_torch(store, search_key(sid, "stage2/y", "supernet.pt"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["loss_history"] == done["loss_history"]


def test_inherit_weights_copies_shared_ops_only(tiny_spec) -> None:
    layout = layout_of(tiny_spec)
    full = pool_space(tiny_spec)
    arch = Arch(tuple(c[0] for c in full.choices))
    torch.manual_seed(0)
    stage1 = Supernet(layout, full.fix(arch, [0, 1]))
    torch.manual_seed(1)
    stage2 = Supernet(layout, full.fix(arch, [2, 3, 4]))
    before = {k: v.clone() for k, v in stage2.state_dict().items()}
    n = inherit_weights(stage2, stage1.state_dict())
    after, src = stage2.state_dict(), stage1.state_dict()
    assert n > 0
    for k in after:
        if k in src:
            assert torch.equal(after[k], src[k]), k
        else:  # ops Stage 1 did not have (layers 1..2 beyond a_win0) keep their own init
            assert torch.equal(after[k], before[k]), k
    assert any(k.startswith("layers.0.") and k not in src for k in after)


def test_training_stops_at_the_loss_level_and_resumes_converged(tiny_spec, store) -> None:
    space = pool_space(tiny_spec)

    def run(prefix: str, stop_loss: float | None, stop_after: int | None = None):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        net = Supernet(layout_of(tiny_spec), space)
        cfg = TrainConfig(iterations=40, batch_size=32, lr=0.05, checkpoint_every=100, seed=0,
                          threads=1, stop_loss=stop_loss, stop_window=5, log_every=5)
        return train(net, data_of(tiny_spec).train, cfg, forward=path_sampler(space, 0),
                     checkpointer=Checkpointer(store, prefix), stop_after=stop_after)

    full = run("full", None)
    assert not full.converged and full.steps == 40 and full.complete
    means = sorted(m for _, m in full.history)
    level = means[len(means) // 2]  # a level the full run reaches part-way
    early = run("early", level)
    assert early.converged and early.complete and early.steps < 40
    assert early.history == full.history[: len(early.history)]
    again = run("early", level)  # a restarted, converged job does nothing more
    assert again.steps == early.steps and again.resumed_from == early.steps
    part = run("part", None, stop_after=10)
    assert not part.complete


def test_pareto_front() -> None:
    a = Arch(("SEP_3",))
    c = [Candidate(a.replace(0, o), acc, lat) for o, acc, lat in
         [("SEP_3", 0.5, 1.0), ("SEP_5", 0.6, 2.0), ("SEP_7", 0.55, 3.0), ("MB_3_1", 0.7, 3.0),
          ("MB_3_3", 0.4, 0.5), ("MB_3_6", 0.5, 1.5)]]
    front = pareto_front(c)
    assert [(x.accuracy, x.latency_ms) for x in front] == [(0.4, 0.5), (0.5, 1.0), (0.6, 2.0),
                                                           (0.7, 3.0)]


def test_hurricane_split_is_validated() -> None:
    with pytest.raises(SpecError, match=r"hurricane.t must be between 1 and 4"):
        parse_spec(tiny_spec_dict(strategy="hurricane", hurricane={"t": 5}))
    with pytest.raises(SpecError, match=r"hurricane.stage2_init"):
        parse_spec(tiny_spec_dict(hurricane={"stage2_init": "random"}))
    assert parse_spec(tiny_spec_dict(hurricane={"t": 3})).stage_split == 3
    assert parse_spec({"backbone": {"layers_per_stage": [4, 4, 8, 4], "num_classes": 10}}).stage_split == 8
