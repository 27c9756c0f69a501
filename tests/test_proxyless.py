"""ProxylessNAS baseline: gate estimator, expected latency, budget fallback, exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hurricane.data.datasets import Data, Split
from hurricane.latency.profiling import LatencyTable
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.train import Checkpointer, TrainConfig
from hurricane.search.evolution import InfeasibleBudget
from hurricane.search.proxyless import (
    ExpectedLatency,
    PathGates,
    ProxylessConfig,
    binary_gates,
    derive_arch,
    gate_update,
    mix,
    proxyless_search,
)
from hurricane.spec import BackboneSpec

OPS = ("SEP_3", "MB_3_3_SE", "Choice_5", "ChoiceX")
# per-op latency (ms) at layer i: base · (1 + i/10); SEP_3 fastest, ChoiceX slowest
BASE_MS = {"SEP_3": 1.0, "MB_3_3_SE": 3.0, "Choice_5": 2.0, "ChoiceX": 4.0}


def _layout() -> Layout:
    return Layout.from_spec(BackboneSpec(input_size=32, num_classes=5, layers_per_stage=(1, 2),
                                         stage_channels=(16, 32), stem_channels=8,
                                         head_channels=32))


def _space() -> SearchSpace:
    """Three layers; layer 1 is fixed (one candidate)."""
    return SearchSpace((OPS, ("Choice_5",), OPS))


def _table(num_layers: int = 3) -> LatencyTable:
    ops = {i: {op: ms * (1 + i / 10) for op, ms in BASE_MS.items()} for i in range(num_layers)}
    return LatencyTable(device="toy", ops=ops, fixed_ms=2.0)


def _data(n: int = 48) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)

    def split(aug: bool) -> Split:
        return Split(x, y, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, augment=aug,
                     flip=False)

    return Data(split(True), split(False), split(False), 5, tuple("abcde"))


def _config(**kw) -> ProxylessConfig:  # type: ignore[no-untyped-def]
    weights = TrainConfig(iterations=kw.pop("iterations", 10), batch_size=8, lr=0.05,
                          checkpoint_every=kw.pop("checkpoint_every", 1000), seed=5, threads=1)
    return ProxylessConfig(weights=weights, **kw)


def test_fixed_layers_have_no_arch_params() -> None:
    gates = PathGates(_space())
    assert gates.layers == (0, 2)
    assert [len(a) for a in gates.alpha] == [4, 4]
    assert sorted(gates.state_dict()) == ["alpha.0", "alpha.1"]
    assert set(gates.probabilities()) == {0, 2}
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert gates.sample(gen)[1] == "Choice_5"
    assert gates.argmax()[1] == "Choice_5"
    assert PathGates(SearchSpace((("SEP_3",), ("ChoiceX",)))).layers == ()


def test_expected_latency_is_the_probability_weighted_table_sum() -> None:
    space, table = _space(), _table()
    gates = PathGates(space)
    with torch.no_grad():
        for a in gates.alpha:
            a.copy_(torch.randn(len(a)))
    probs = gates.probs()
    hand = table.fixed_ms + table.layer_ms(1, "Choice_5")
    for p, i in zip(probs, (0, 2), strict=True):
        hand += sum(float(pi) * table.layer_ms(i, op)
                    for pi, op in zip(p.detach(), OPS, strict=True))
    expected = ExpectedLatency(space, table)(probs)
    assert float(expected.detach()) == pytest.approx(hand, rel=1e-6)
    expected.backward()  # differentiable in α; the gradient lowers probability of slow ops
    slow, fast = OPS.index("ChoiceX"), OPS.index("SEP_3")
    for a in gates.alpha:
        assert a.grad is not None and a.grad[slow] > a.grad[fast]
    # a one-hot distribution gives the architecture's table latency
    one_hot = [torch.eye(4)[OPS.index("MB_3_3_SE")], torch.eye(4)[OPS.index("SEP_3")]]
    arch = Arch(("MB_3_3_SE", "Choice_5", "SEP_3"))
    assert float(ExpectedLatency(space, table)(one_hot)) == pytest.approx(table.arch_latency(arch))


@pytest.mark.parametrize("involved", [[0, 2], [0, 1, 2, 3]])
def test_gate_gradient_is_the_binaryconnect_estimate(involved: list[int]) -> None:
    torch.manual_seed(0)
    alpha = torch.randn(4, requires_grad=True)
    outs = [torch.randn(6) for _ in involved]
    target = torch.randn(6)
    active = 1

    g, p = binary_gates(alpha, involved, active)
    out = mix(g, outs)
    assert torch.equal(out, outs[active])  # the value is the active path's output
    ((out - target) ** 2).sum().backward()

    leaf = torch.zeros(len(involved))
    leaf[active] = 1.0
    leaf.requires_grad_(True)
    ((mix(leaf, outs) - target) ** 2).sum().backward()
    dg = leaf.grad
    assert dg is not None
    pd = p.detach()
    want = torch.zeros(4)
    for a, i in enumerate(involved):  # ∂L/∂α_i = Σ_j ∂L/∂g_j p_j (δ_ij − p_i)
        want[i] = sum(dg[b] * pd[b] * (float(a == b) - pd[a]) for b in range(len(involved)))
    assert alpha.grad is not None
    torch.testing.assert_close(alpha.grad, want)


@pytest.mark.parametrize("mode", ["two", "full"])
def test_estimator_moves_probability_to_the_better_op(mode: str) -> None:
    """Toy layer: candidate j outputs a fixed vector; the loss wants candidate 2's output."""
    gates = PathGates(SearchSpace((OPS,)))
    gen = torch.Generator().manual_seed(0)
    outs = [torch.randn(8, generator=gen) for _ in OPS]
    opt = torch.optim.Adam(gates.parameters(), lr=0.05, betas=(0.0, 0.999))

    def loss_of(draws):  # type: ignore[no-untyped-def]
        d = draws[0]
        return ((mix(d.gates, [outs[j] for j in d.involved]) - outs[2]) ** 2).mean()

    for _ in range(150):
        gate_update(gates, opt, loss_of, mode=mode, gen=gen)
    p = gates.probs()[0].detach()
    assert int(p.argmax()) == 2 and float(p[2]) > 0.6, p


def test_two_mode_rescale_keeps_uninvolved_probabilities() -> None:
    gates = PathGates(SearchSpace((OPS,)))
    with torch.no_grad():
        gates.alpha[0].copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    opt = torch.optim.Adam(gates.parameters(), lr=0.1, betas=(0.0, 0.999))
    before = gates.probs()[0].detach().clone()
    seen: list[list[int]] = []

    def loss_of(draws):  # type: ignore[no-untyped-def]
        seen.append(draws[0].involved)
        return (draws[0].gates * torch.arange(2.0)).sum()

    gate_update(gates, opt, loss_of, mode="two", gen=torch.Generator().manual_seed(1))
    after = gates.probs()[0].detach()
    others = [j for j in range(4) if j not in seen[0]]
    torch.testing.assert_close(after[others], before[others])
    assert not torch.allclose(after[seen[0]], before[seen[0]])


def test_latency_loss_moves_paths_to_fast_ops_and_lowers_expected_latency() -> None:
    table = _table()
    cfg = _config(iterations=24, warmup_iterations=2, arch_update_every=1, arch_lr=0.1,
                  latency_lambda=50.0, history_every=2)
    budget = 10.0
    res = proxyless_search(_layout(), _space(), _data(), table, budget, cfg)
    lat = [h["expected_latency_ms"] for h in res.history]
    uniform = ExpectedLatency(_space(), table)(PathGates(_space()).probs())
    assert lat[0] == pytest.approx(float(uniform.detach()))  # warm-up leaves α alone
    assert lat[-1] < lat[0] - 1.0
    assert res.expected_latency_ms == pytest.approx(lat[-1])
    for i in (0, 2):
        p = res.probabilities[i]
        assert max(p, key=p.__getitem__) == "SEP_3"
        assert p["SEP_3"] > 0.25 > p["ChoiceX"]
    assert res.arch == table.fastest(_space()) and not res.fallback
    assert res.iterations == 24 and res.arch_updates == 22 and res.seconds > 0
    json.dumps(res.to_json(), allow_nan=False)


def test_fallback_meets_a_budget_the_argmax_violates() -> None:
    space, table = _space(), _table()
    gates = PathGates(space)
    with torch.no_grad():  # argmax: ChoiceX at layers 0 and 2; layer 0 barely prefers it
        gates.alpha[0].copy_(torch.tensor([0.99, 0.0, 0.0, 1.0]))  # SEP_3 nearly tied
        gates.alpha[1].copy_(torch.tensor([-3.0, 0.0, 0.0, 3.0]))  # ChoiceX strongly preferred
    argmax = gates.argmax()
    assert argmax == Arch(("ChoiceX", "Choice_5", "ChoiceX"))
    top = table.arch_latency(argmax)

    arch, fallback = derive_arch(gates, table, budget_ms=top, latency=table.arch_latency)
    assert arch == argmax and not fallback

    budget = top - 1.0  # one swap needed: the cheap one is layer 0's ChoiceX -> SEP_3
    arch, fallback = derive_arch(gates, table, budget_ms=budget, latency=table.arch_latency)
    assert fallback and table.arch_latency(arch) <= budget
    assert arch == Arch(("SEP_3", "Choice_5", "ChoiceX"))

    # the caller's latency model decides, not the table
    def model(a: Arch) -> float:
        return table.arch_latency(a) + 3.0

    arch, fallback = derive_arch(gates, table, budget_ms=budget, latency=model)
    assert fallback and model(arch) <= budget

    lo = table.arch_latency(table.fastest(space))
    with pytest.raises(InfeasibleBudget, match="budget"):
        derive_arch(gates, table, budget_ms=lo - 0.1, latency=table.arch_latency)


def test_search_returns_an_arch_within_budget_under_the_given_latency() -> None:
    table, space = _table(), _space()
    lo = table.bounds(space)[0]
    budget = lo + 0.5  # below the uniform argmax (first candidates tie), above the fastest

    def model(a: Arch) -> float:
        return 0.98 * table.arch_latency(a)

    cfg = _config(iterations=4, warmup_iterations=2, arch_update_every=1)
    res = proxyless_search(_layout(), space, _data(), table, budget, cfg, latency=model)
    assert res.latency_ms == pytest.approx(model(res.arch)) and res.latency_ms <= budget
    assert res.table_latency_ms == pytest.approx(table.arch_latency(res.arch))
    assert res.fallback == (model(res.argmax_arch) > budget)
    assert res.fallback


def test_resume_equals_an_uninterrupted_run(store) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(iterations=9, warmup_iterations=2, arch_update_every=2, arch_lr=0.05,
                  checkpoint_every=3, history_every=2)
    table, space, data = _table(), _space(), _data()

    def run(prefix: str, stop_after: int | None = None):  # type: ignore[no-untyped-def]
        from hurricane.nets.supernet import Supernet

        torch.manual_seed(cfg.seed)
        net = Supernet(_layout(), space)
        ckpt = Checkpointer(store, prefix, keep=2)
        res = proxyless_search(_layout(), space, data, table, 12.0, cfg, supernet=net,
                               checkpointer=ckpt, stop_after=stop_after)
        return net, res, ckpt

    straight, a, _ = run("a")
    _, part, ckpt = run("b", stop_after=5)
    assert part.iterations == 5 and ckpt.steps() == [3, 5]
    resumed, b, _ = run("b")
    assert b.resumed_from == 5 and b.iterations == 9
    assert a.probabilities == b.probabilities and a.arch == b.arch
    assert a.history == b.history and a.arch_updates == b.arch_updates == 3
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # the arch parameters really moved (else the comparison above proves little)
    assert any(abs(p - 0.25) > 1e-4 for layer in a.probabilities.values() for p in layer.values())


def test_mul_loss_needs_latencies_above_one_ms() -> None:
    table = _table()
    small = LatencyTable(device="toy", fixed_ms=0.01,
                         ops={i: {op: ms / 100 for op, ms in table.ops[i].items()} for i in range(3)})
    with pytest.raises(ValueError, match="linear"):
        proxyless_search(_layout(), _space(), _data(), small, 0.05,
                         _config(latency_loss="mul", iterations=1))
    cfg = _config(latency_loss="mul", iterations=3, warmup_iterations=1, arch_update_every=1)
    res = proxyless_search(_layout(), _space(), _data(), table, 12.0, cfg)
    assert math.isfinite(res.history[-1]["arch_loss"])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="warmup_iterations"):
        _config(iterations=5, warmup_iterations=6)
    with pytest.raises(ValueError, match="arch_update_every"):
        _config(arch_update_every=0)
    cfg = _config(iterations=10, warmup_iterations=3, arch_update_every=2)
    assert [s for s in range(10) if cfg.is_arch_step(s)] == [4, 6, 8]
    assert [cfg.arch_update_index(s) for s in (4, 6, 8)] == [0, 1, 2]
