"""Supernet path sampling (uniform, FairNAS' strict fairness, BigNAS' sandwich with in-place
distillation, OFA's progressive shrinking), its training loss, and the ranking verdict."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from pydantic import ValidationError
from scipy import stats

from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.sampling import PathPlan
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer, TrainConfig, step_seed, train
from hurricane.runs.steps import data_of, layout_of, pool_space
from hurricane.runs.steps.oneshot import op_sizes, path_plan, plan_loss
from hurricane.runs.steps.quality import RankMonitor, spearman, verdict
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict

SPACE = SearchSpace((("SEP_3", "MB_3_3", "MB_7_6_SE"), ("SEP_3", "Choice_3"),
                     ("MB_3_1", "MB_5_3", "ChoiceX", "SEP_5_SE")))
SIZES = {0: {"SEP_3": 1.0, "MB_3_3": 5.0, "MB_7_6_SE": 9.0}, 1: {"SEP_3": 2.0, "Choice_3": 1.0},
         2: {"MB_3_1": 3.0, "MB_5_3": 8.0, "ChoiceX": 4.0, "SEP_5_SE": 0.5}}


def test_uniform_single_path_takes_the_paths_spos_always_took() -> None:
    plan = PathPlan(SPACE, seed=7)
    for step in range(20):
        (p,) = plan(step)
        assert p.arch == SPACE.sample(random.Random(step_seed(7, step, 2))) and not p.teacher
    assert plan(3) == plan(3) and plan.cost() == 1
    assert len(PathPlan(SPACE, paths=3, seed=7)(0)) == 3


def test_fair_sampling_trains_every_candidate_of_every_layer_each_step() -> None:
    plan = PathPlan(SPACE, sampling="fair", seed=1)
    for step in range(10):
        paths = plan(step)
        assert len(paths) == 4 == plan.cost()  # the widest layer's candidates
        for i, c in enumerate(SPACE.choices):
            seen = Counter(p.arch[i] for p in paths)
            assert set(seen) == set(c)  # every candidate at least once
            if len(c) == 4:
                assert all(n == 1 for n in seen.values())  # ... and exactly once when it fits
            assert max(seen.values()) - min(seen.values()) <= 1
    assert plan(0) != plan(1)


def test_sandwich_trains_the_largest_the_smallest_and_random_paths() -> None:
    plan = PathPlan(SPACE, sampling="sandwich", paths=4, sizes=SIZES, seed=0)
    big = Arch(("MB_7_6_SE", "SEP_3", "MB_5_3"))
    small = Arch(("SEP_3", "Choice_3", "SEP_5_SE"))
    assert plan.largest == big and plan.smallest == small
    for step in range(5):
        paths = plan(step)
        assert [p.arch for p in paths[:2]] == [big, small] and len(paths) == 4
        assert not any(p.teacher for p in paths)
    kd = PathPlan(SPACE, sampling="sandwich", paths=3, distill=True, sizes=SIZES)(0)
    assert kd[0].teacher and kd[0].arch == big and not any(p.teacher for p in kd[1:])
    # distillation with uniform paths adds the largest path as the teacher
    uni = PathPlan(SPACE, paths=2, distill=True, sizes=SIZES, seed=0)
    assert [p.teacher for p in uni(0)] == [True, False, False] and uni.cost() == 3
    with pytest.raises(ValueError, match="paths >= 2"):
        PathPlan(SPACE, sampling="sandwich", paths=1, sizes=SIZES)
    with pytest.raises(ValueError, match="sizes"):
        PathPlan(SPACE, sampling="sandwich", paths=2)


def test_progressive_shrinking_offers_the_largest_candidates_first() -> None:
    plan = PathPlan(SPACE, sampling="sandwich", paths=4, shrink_phases=2, shrink_until=0.5,
                    iterations=100, sizes=SIZES, seed=0)
    assert plan.phase(0) == 1 and plan.phase(24) == 1 and plan.phase(25) == 2
    assert plan.phase(49) == 2 and plan.phase(50) is None
    assert plan.choices(0) == (("MB_7_6_SE", "MB_3_3"), ("SEP_3",), ("MB_5_3", "ChoiceX"))
    assert plan.choices(30) == (("MB_7_6_SE", "MB_3_3", "SEP_3"), ("SEP_3", "Choice_3"),
                                ("MB_5_3", "ChoiceX", "MB_3_1", "SEP_5_SE"))
    for step in range(25):
        for p in plan(step):
            assert all(op in c for op, c in zip(p.arch.ops, plan.choices(0), strict=True))
    late = {p.arch[2] for step in range(50, 100) for p in plan(step)}
    assert late == set(SPACE.choices[2])


def test_spec_fields_name_the_sampling_rules_bounds() -> None:
    with pytest.raises(ValidationError, match=r"(?s)supernet.*paths must be >= 2"):
        SearchSpec.model_validate(tiny_spec_dict(supernet={"sampling": "sandwich", "paths": 1}))
    with pytest.raises(ValidationError, match="sampling"):
        SearchSpec.model_validate(tiny_spec_dict(supernet={"sampling": "greedy"}))
    with pytest.raises(ValidationError, match="leave paths at 1"):
        SearchSpec.model_validate(tiny_spec_dict(supernet={"sampling": "fair", "paths": 3}))
    with pytest.raises(ValidationError, match="until_reliable needs check_every"):
        SearchSpec.model_validate(tiny_spec_dict(supernet={"until_reliable": True}))


def test_a_recipe_fills_the_sampling_fields_it_is_not_told_and_the_spec_names_what_it_got() -> None:
    sup = lambda **s: SearchSpec.model_validate(tiny_spec_dict(supernet=s)).supernet  # noqa: E731
    default = sup()
    assert (default.recipe, default.sampling, default.paths, default.distill,
            default.shrink_phases) == ("shrink", "sandwich", 4, True, 3)
    spos = sup(recipe="spos")
    assert (spos.sampling, spos.paths, spos.distill, spos.shrink_phases) == ("uniform", 1, False, 0)
    assert sup(recipe="spos", paths=2).recipe == "custom"  # an explicit field departs from it
    assert sup(sampling="fair").paths == 1  # fair counts its own paths
    # every sampling field given and no recipe (a spec stored before recipes): kept, and named
    assert sup(sampling="uniform", paths=1, distill=False, shrink_phases=0,
               shrink_until=0.5).recipe == "spos"
    assert sup(sampling="uniform", paths=2, distill=False, shrink_phases=0,
               shrink_until=0.5).recipe == "custom"
    stored = SearchSpec.model_validate(tiny_spec_dict(supernet={"recipe": "sandwich"}))
    dumped = stored.model_dump(mode="json")
    del dumped["supernet"]["recipe"]
    assert SearchSpec.model_validate(dumped) == stored
    with pytest.raises(ValidationError, match=r"(?s)supernet.recipe.*'spos'"):
        sup(recipe="bignas")


def _train(spec: SearchSpec, store, prefix: str, stop_after: int | None = None,  # type: ignore[no-untyped-def]
           monitor: RankMonitor | None = None):
    space = pool_space(spec)
    torch.manual_seed(0)
    net = Supernet(layout_of(spec), space, sharing=spec.supernet.sharing)
    cfg = TrainConfig(iterations=spec.supernet.iterations, batch_size=16, lr=0.05,
                      checkpoint_every=3, seed=spec.seed, threads=1)
    plan = path_plan(spec, space, cfg.iterations)
    res = train(net, data_of(spec).train, cfg, step_loss=plan_loss(plan, 0.1), monitor=monitor,
                checkpointer=Checkpointer(store, prefix), stop_after=stop_after)
    return net, res


def test_sandwich_with_distillation_trains_and_resumes_exactly(store) -> None:  # type: ignore[no-untyped-def]
    """Four paths per step (largest from the labels, the rest from its predictions), summed
    into one backward: an interrupted run resumes to the same weights as a straight one, and
    more parameters move per step than with one uniform path."""
    spec = SearchSpec.model_validate(tiny_spec_dict(supernet={
        "iterations": 8, "sampling": "sandwich", "paths": 4, "distill": True}))
    straight, res = _train(spec, store, "a")
    assert res.steps == 8 and res.final_loss == res.final_loss  # finite
    _train(spec, store, "b", stop_after=5)
    resumed, res2 = _train(spec, store, "b")
    assert res2.resumed_from == 5
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    plan = path_plan(spec, pool_space(spec), 8)
    sizes = op_sizes(spec, pool_space(spec))
    assert plan.largest == Arch(tuple(max(c, key=sizes[i].__getitem__)
                                      for i, c in enumerate(pool_space(spec).choices)))


def test_distillation_loss_is_the_students_cross_entropy_with_the_teachers_softmax() -> None:
    plan = PathPlan(SPACE, sampling="sandwich", paths=2, distill=True, sizes=SIZES)
    outs = {plan.largest: torch.tensor([[2.0, 0.0, -1.0]]),
            plan.smallest: torch.tensor([[0.0, 1.0, 0.0]])}

    def model(x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return outs[arch]

    y = torch.tensor([0])
    total, shown = plan_loss(plan, 0.0)(model, torch.zeros(1), y, 0)  # type: ignore[arg-type]
    teacher = torch.nn.functional.cross_entropy(outs[plan.largest], y)
    soft = outs[plan.largest].softmax(1)
    student = -(soft * outs[plan.smallest].log_softmax(1)).sum()
    assert float(total) == pytest.approx(float(teacher + student), rel=1e-6)
    assert float(shown) == pytest.approx(float(teacher), rel=1e-6)  # the label loss is shown


def test_spearman_matches_scipy_with_ties() -> None:
    rng = random.Random(0)
    for _ in range(20):
        a = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(9)]
        b = [rng.random() for _ in range(9)]
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-9)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_verdict_fails_on_inconsistent_or_moving_rankings_and_says_what_to_change() -> None:
    spec = SearchSpec.model_validate(tiny_spec_dict(supernet={"check_every": 50}))
    full = [0.5, 0.6, 0.7, 0.8, 0.9]
    good = verdict(full, full, full, full, num_classes=10, spec=spec, iterations=100)
    assert good["reliable"] and good["tests"] == {"learned": True, "consistent": True,
                                                  "stable": True}
    assert "warning" not in good and good["split_half_rho"] == 1.0
    noisy = verdict(full, full, full[::-1], full, num_classes=10, spec=spec, iterations=100)
    assert not noisy["reliable"] and noisy["tests"]["consistent"] is False
    assert "do not agree with themselves" in noisy["warning"]
    assert "dataset.eval_copies" in noisy["warning"] and "evolution.bn_batches" in noisy["warning"]
    moving = verdict(full, full, full, full[::-1], num_classes=10, spec=spec, iterations=100)
    assert moving["tests"]["stable"] is False and "still moves" in moving["warning"]
    assert "supernet.iterations" in moving["warning"] and "50 iterations earlier" in moving["warning"]
    # the distance to the check before, as the monitor measured it (not "None iterations")
    moved = verdict(full, full, full, full[::-1], num_classes=10, spec=spec, iterations=100,
                    since=375)
    assert "375 iterations earlier" in moved["warning"] and moved["stability_since"] == 375
    low = verdict([0.1, 0.11, 0.12], [0.1, 0.11, 0.12], [0.1, 0.11, 0.12], None,
                  num_classes=10, spec=spec, iterations=12)
    assert low["tests"] == {"learned": False, "consistent": True}  # no check before: no stability
    assert "after 12 iterations" in low["warning"] and "supernet.recipe" not in low["warning"]
    spos = SearchSpec.model_validate(tiny_spec_dict(supernet={"recipe": "spos"}))
    low_spos = verdict([0.1, 0.11, 0.12], [0.1, 0.11, 0.12], [0.1, 0.11, 0.12], None,
                       num_classes=10, spec=spos, iterations=12)
    assert "the default recipe (supernet.recipe: shrink, spos now)" in low_spos["warning"]


def test_until_reliable_ends_training_at_the_first_passing_check_and_resumes_its_checks(store) -> None:  # type: ignore[no-untyped-def]
    """With a verdict that any check passes (no floor, any correlation), training ends at the
    second check (the first has no check before it to be stable against); the checks travel
    in the checkpoint, so a resumed run ends at the same step."""
    spec = SearchSpec.model_validate(tiny_spec_dict(supernet={
        "iterations": 40, "check_every": 4, "min_iterations": 4, "until_reliable": True,
        "quality_archs": 3, "quality_margin": 0.0, "rank_consistency": -1.0,
        "rank_stability": -1.0}))
    space = pool_space(spec)
    data = data_of(spec)
    mon = RankMonitor(space, data, spec, 40)
    assert mon.steps == set(range(4, 41, 4))
    _, res = _train(spec, store, "u", monitor=mon)
    assert res.settled and res.complete and res.steps == 8
    assert [c["step"] for c in mon.checks] == [4, 8]
    assert mon.result()["checks"][-1]["reliable"]  # type: ignore[index]

    mon2 = RankMonitor(space, data, spec, 40)
    _train(spec, store, "v", stop_after=6, monitor=mon2)
    assert [c["step"] for c in mon2.checks] == [4]
    mon3 = RankMonitor(space, data, spec, 40)
    _, res3 = _train(spec, store, "v", monitor=mon3)
    assert res3.settled and res3.steps == 8 and [c["step"] for c in mon3.checks] == [4, 8]
    assert mon3.checks[0]["scores"] == mon.checks[0]["scores"]


def test_a_search_step_records_the_iterations_until_reliable_used(store) -> None:  # type: ignore[no-untyped-def]
    """stage1 with until_reliable: train.json and the step result record the iterations used,
    the cap, that the verdict ended it, the sampling rule and every check."""
    from hurricane.runs.executor import InlineExecutor
    from hurricane.runs.pipeline import run_step
    from hurricane.runs.records import submit
    from hurricane.storage.store import search_key

    spec = SearchSpec.model_validate(tiny_spec_dict(supernet={
        "iterations": 30, "check_every": 5, "min_iterations": 10, "until_reliable": True,
        "quality_archs": 3, "quality_margin": 0.0, "rank_consistency": -1.0,
        "rank_stability": -1.0, "recipe": "sandwich", "paths": 2, "checkpoint_every": 100},
        predictor={"enabled": False}))
    sid = submit(spec, store, "ur")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    out = run_step("stage1", spec, sid, store, InlineExecutor())
    train_json = store.get_json(search_key(sid, "stage1", "train.json"))
    assert train_json["iterations"] == 15 and train_json["iteration_cap"] == 30
    assert train_json["settled"] and train_json["until_reliable"]
    assert train_json["sampling"] == {"rule": "sandwich", "paths_per_step": 2, "distill": True,
                                      "shrink_phases": 0}
    q = train_json["quality"]
    assert [c["step"] for c in q["checks"]] == [10, 15] and q["reliable"]
    assert out["iterations"] == 15 and "warnings" not in out
