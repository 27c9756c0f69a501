"""Training: exact resume from checkpoints, atomic checkpoint files, SPOS param groups."""

from __future__ import annotations

import torch

from hurricane.steps import data_of, layout_of, path_sampler, pool_space
from hurricane.supernet import Supernet
from hurricane.train import Checkpointer, TrainConfig, param_groups, train


def _run(spec, store, prefix, *, stop_after=None):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = Supernet(layout_of(spec), pool_space(spec))
    cfg = TrainConfig(iterations=10, batch_size=16, lr=0.1, checkpoint_every=3, seed=spec.seed,
                      threads=1)
    ckpt = Checkpointer(store, prefix, keep=2)
    res = train(net, data_of(spec).train, cfg, forward=path_sampler(pool_space(spec), spec.seed),
                checkpointer=ckpt, stop_after=stop_after)
    return net, res, ckpt


def test_resume_gives_bitwise_identical_weights(tiny_spec, store) -> None:
    straight, res, _ = _run(tiny_spec, store, "a")
    assert res.steps == 10 and res.resumed_from == 0
    _, part, ckpt = _run(tiny_spec, store, "b", stop_after=4)
    assert part.steps == 4 and ckpt.steps() == [3, 4]
    resumed, res2, _ = _run(tiny_spec, store, "b")  # a new process would do exactly this
    assert res2.resumed_from == 4 and res2.steps == 10
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoints_are_pruned_and_leave_no_temp_files(tiny_spec, store) -> None:
    _run(tiny_spec, store, "c")
    names = [k.rsplit("/", 1)[-1] for k in store.list("c")]
    assert names == ["ckpt-000000009.pt", "ckpt-000000010.pt"]
    assert not [p for p in store.root.rglob("*.tmp")]


def test_no_weight_decay_on_bn_and_bias() -> None:
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                            torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(m, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert {p.ndim for p in no_decay["params"]} == {1}
