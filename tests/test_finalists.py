"""Evolution's finalists fine-tuned from the supernet's weights and re-ranked."""

from __future__ import annotations

import random

import pytest
import torch

from hurricane.data.datasets import Data, load_data
from hurricane.nets.arch import SearchSpace
from hurricane.nets.supernet import Supernet
from hurricane.runs.steps.common import SupernetScorer, finetuned_accuracy, layout_of, rank_finalists
from hurricane.search.evolution import Candidate, EvolutionResult
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict


def _setup(**evolution: object) -> tuple[SearchSpec, Supernet, SearchSpace, Data]:
    spec = SearchSpec.model_validate(tiny_spec_dict(evolution={
        "eval_batches": None, "keep_top": 4, "finalists": 3, "finalist_iterations": 60,
        "finalist_lr": 0.05, **evolution}, supernet={"threads": 2}))
    layout = layout_of(spec)
    space = SearchSpace.uniform(spec.space.ops, layout.num_layers)
    torch.manual_seed(0)
    net = Supernet(layout, space, sharing="family")  # untrained: scores near chance
    data = load_data(spec.dataset, input_size=32, seed=spec.seed, num_classes=10)
    return spec, net, space, data


@pytest.mark.slow  # about 2 min on 2 cores: `make test-slow`, CI
def test_a_finalist_is_trained_from_the_supernet_and_leaves_it_unchanged() -> None:
    spec, net, space, data = _setup()
    arch = space.sample(random.Random(1))
    scorer = SupernetScorer(net, data, spec)
    params = {k: v.clone() for k, v in net.named_parameters()}
    through = scorer(arch)
    tuned = finetuned_accuracy(net, arch, data, spec, scorer.bn_batches)
    # 60 steps alone learn digits far above what the untrained supernet scores
    assert through < 0.3 and tuned > 0.6, (through, tuned)
    assert all(torch.equal(v, params[k]) for k, v in net.named_parameters())
    # the same batches and seed: repeatable, so finalists are compared on equal terms
    assert finetuned_accuracy(net, arch, data, spec, scorer.bn_batches) == tuned


def test_finalists_are_reranked_by_their_fine_tuned_accuracy() -> None:
    spec, net, space, data = _setup(finalist_iterations=8)  # the order, not the learning
    rng = random.Random(2)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(6)))[:4]
    # the supernet's order: descending made-up scores, as evolution returns them
    found = EvolutionResult(top=[Candidate(a, 0.5 - 0.01 * i, 1.0 + i)
                                 for i, a in enumerate(archs)], evaluated=4, budget_ms=9.0)
    scorer = SupernetScorer(net, data, spec)
    out = rank_finalists(found, scorer, data, spec)
    fin, rest = out["top"][:3], out["top"][3:]
    expect = {str(a): finetuned_accuracy(net, a, data, spec, scorer.bn_batches)
              for a in archs[:3]}
    assert {c["arch"]: c["finetuned_accuracy"] for c in fin} == {
        k: round(v, 4) for k, v in expect.items()}
    assert [c["finetuned_accuracy"] for c in fin] == sorted(
        (round(v, 4) for v in expect.values()), reverse=True)
    assert {c["supernet_rank"]: c["arch"] for c in fin} == {
        i + 1: str(a) for i, a in enumerate(archs[:3])}
    assert all(c["accuracy"] == found.top[c["supernet_rank"] - 1].accuracy for c in fin)
    assert rest == [found.top[3].to_json()]  # beyond the finalists: untouched
    f = out["finalists"]
    assert f["count"] == 3 and f["iterations"] == 8 and f["supernet_pick"] == str(archs[0])
    assert f["changed"] == (fin[0]["arch"] != str(archs[0]))

    # 0 or 1 finalists: the supernet's order as evolution returned it
    for k in (0, 1):
        spec_k, *_ = _setup(finalists=k)
        assert rank_finalists(found, scorer, data, spec_k) == found.to_json()


def test_evolutions_top_is_rescored_over_several_recalibrations() -> None:
    """rescore_top: the first ``rescore`` candidates get the mean of R BN recalibrations on the
    whole validation split (the first recalibration is evolution's own batches), in that order;
    the rest keep theirs; what changed is recorded."""
    from hurricane.runs.steps.common import rescore_top
    from hurricane.runs.steps.quality import MultiScorer

    spec, net, space, data = _setup(rescore=3, rescore_recalibrations=2, finalists=0)
    rng = random.Random(2)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(6)))[:4]
    found = EvolutionResult(top=[Candidate(a, 0.5 - 0.01 * i, 1.0 + i)
                                 for i, a in enumerate(archs)], evaluated=4, budget_ms=9.0)
    out = rescore_top(found, net, data, spec)
    scores = {a: MultiScorer(net, data, spec, 2)(a) for a in archs[:3]}
    assert all(len(v) == 2 for v in scores.values())
    assert scores[archs[0]][0] == SupernetScorer(net, data, spec)(archs[0])  # evolution's own
    means = {a: round(sum(v) / 2, 4) for a, v in scores.items()}
    assert [c.accuracy for c in out.top[:3]] == sorted(means.values(), reverse=True)
    assert {c.arch: c.accuracy for c in out.top[:3]} == means
    assert out.top[3] == found.top[3]
    r = out.rescored
    assert r is not None and r["count"] == 3 and r["recalibrations"] == 2
    assert r["evolution_pick"] == str(archs[0]) and r["changed"] == (out.top[0].arch != archs[0])
    assert sorted(r["evolution_rank"]) == [1, 2, 3]
    assert out.to_json()["rescored"] == r
    spec0, *_ = _setup(rescore=0)
    assert rescore_top(found, net, data, spec0) is found
