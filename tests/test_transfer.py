"""One proxy device in the pipeline: a target served by another device's search reuses its
Pareto architectures when latencies rank alike, and adapts its predictor otherwise."""

from __future__ import annotations

import pytest

from hurricane.latency.profiling import LatencyTable
from hurricane.nets.arch import Arch
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search
from hurricane.runs.steps import latency_model, load_space, load_table
from hurricane.runs.strategies import STRATEGIES
from hurricane.spec import SearchSpec, SpecError, parse_spec
from hurricane.storage.store import search_key
from tests.conftest import TINY_OPS, tiny_spec_dict

PROXY_MS = {"SEP_3": 0.30, "MB_3_1": 0.10, "MB_5_3_SE": 0.60, "Choice_3": 0.20, "ChoiceX": 0.45}


def _write(tmp_path, name: str, ms: dict[str, float], fixed: float = 0.5) -> str:  # type: ignore[no-untyped-def]
    table = LatencyTable(device=name, ops={i: dict(ms) for i in range(5)}, fixed_ms=fixed)
    path = tmp_path / f"{name}.csv"
    path.write_text(table.to_csv())
    return str(path)


def _spec(tmp_path, target_ms: dict[str, float], **kw) -> SearchSpec:  # type: ignore[no-untyped-def]
    return SearchSpec.model_validate(tiny_spec_dict(
        devices=[{"name": "proxy-dev", "table": _write(tmp_path, "proxy-dev", PROXY_MS),
                  "budget_fraction": 0.5},
                 {"name": "target-dev", "table": _write(tmp_path, "target-dev", target_ms),
                  "budget_fraction": 0.5, "proxy": "proxy-dev"}],
        one_proxy={"samples": 20}, **kw))


def test_monotone_target_reuses_the_proxys_pareto_set(store, tmp_path) -> None:
    spec = _spec(tmp_path, {op: 3 * ms + 0.05 for op, ms in PROXY_MS.items()})
    assert "transfer" in STRATEGIES.get("spos").plan(spec)
    sid, report = run_search(spec, store, InlineExecutor(), "mono")
    tr = store.get_json(search_key(sid, "transfer", "target-dev", "transfer.json"))
    assert tr["decision"]["action"] == "reuse" and tr["decision"]["srcc"] > 0.9
    assert tr["method"] == "reuse"
    assert not store.exists(search_key(sid, "transfer", "target-dev", "evolution.json"))
    pareto = store.get_json(search_key(sid, "search1", "proxy-dev", "pareto.json"))["pareto"]
    win = report["devices"]["target-dev"]
    assert win["arch"] in {c["arch"] for c in pareto}
    table = load_table(store, sid, "target-dev")
    assert table.arch_latency(Arch.parse(win["arch"])) <= win["budget_ms"]
    # the reused candidates were re-priced on the target, and the winner is the most accurate
    # of those that fit its budget
    fits = [c for c in tr["reused"] if c["fits"]]
    assert win["supernet_top1"] == max(c["accuracy"] for c in fits)
    # no search of its own: no evolution or supernet for the target
    assert not store.exists(search_key(sid, "search1", "target-dev", "evolution.json"))


def test_non_monotone_target_adapts_the_proxy_predictor(store, tmp_path) -> None:
    # the target reverses the proxy's order of ops: fast there is slow here
    order = sorted(PROXY_MS, key=PROXY_MS.__getitem__)
    target = {op: PROXY_MS[rev] * 2 for op, rev in zip(order, reversed(order), strict=True)}
    spec = _spec(tmp_path, target)
    sid, report = run_search(spec, store, InlineExecutor(), "rev")
    tr = store.get_json(search_key(sid, "transfer", "target-dev", "transfer.json"))
    assert tr["decision"]["action"] == "adapt" and tr["decision"]["srcc"] < 0.9
    assert tr["method"] == "adapt" and tr["supernet"] == "stage1"
    evo = store.get_json(search_key(sid, "transfer", "target-dev", "evolution.json"))
    win = report["devices"]["target-dev"]
    assert win["arch"] == evo["top"][0]["arch"]
    # its own evolution's finalists were fine-tuned and re-ranked, as a search step's are
    assert win["finalists"] == evo["finalists"]["count"] == 3
    assert win["finetuned_top1"] == max(c.get("finetuned_accuracy", -1) for c in evo["top"])
    # the adapted predictor is the target's latency model, and it ranks the target's truth
    table = load_table(store, sid, "target-dev")
    model = latency_model(store, sid, "target-dev", table)
    import random

    from hurricane.latency.predictor import metrics

    space = load_space(store, sid)
    rng = random.Random(7)
    archs = list({space.sample(rng) for _ in range(80)})
    truth = [table.arch_latency(a) for a in archs]
    m = metrics([model(a) for a in archs], truth)
    assert m.srcc > 0.95 and m.mape < 5
    assert table.arch_latency(Arch.parse(win["arch"])) <= win["budget_ms"] * 1.05
    assert win["predicted_latency_ms"] <= win["budget_ms"]


def test_proxy_must_name_a_searched_device(tmp_path) -> None:
    base = tiny_spec_dict()
    with pytest.raises(SpecError, match=r"devices\[1\].proxy must name another device.*allowed: "
                                        r"cpu; got 'gpu'"):
        parse_spec({**base, "devices": [{"name": "cpu", "budget_fraction": 0.5},
                                        {"name": "cpu-ort", "budget_fraction": 0.5,
                                         "proxy": "gpu"}]})
    with pytest.raises(SpecError, match="needs an evolution-based strategy"):
        parse_spec({**base, "strategy": "proxyless",
                    "devices": [{"name": "cpu", "budget_fraction": 0.5},
                                {"name": "cpu-ort", "budget_fraction": 0.5, "proxy": "cpu"}]})
    assert list(PROXY_MS) == TINY_OPS
