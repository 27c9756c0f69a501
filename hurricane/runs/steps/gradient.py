"""The ProxylessNAS baseline as a pipeline step: one gradient search per device."""

from __future__ import annotations

import random
from typing import Any

import torch

from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer
from hurricane.runs.steps.common import (
    SupernetScorer,
    data_of,
    devices_of,
    latency_model,
    layout_of,
    load_space,
    load_table,
    loss_curve,
    quality_warnings,
    resolve_budget,
    searched_devices,
    train_config,
)
from hurricane.runs.steps.keys import proxyless_key
from hurricane.runs.steps.quality import supernet_quality
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore


def proxyless_job(spec: SearchSpec, search_id: str, store: ArtifactStore,
                  device: str | None) -> None:
    """One gradient search per device: its expected-latency loss uses that device's table."""
    import statistics

    from hurricane.search.proxyless import ProxylessConfig, proxyless_search

    ps = spec.proxyless
    space, data, layout = load_space(store, search_id), data_of(spec, store, search_id), layout_of(spec)
    for name in devices_of(spec, device, searched=True):
        if store.exists(proxyless_key(search_id, name)):
            continue
        table = load_table(store, search_id, name)
        model = latency_model(store, search_id, name, table)
        budget = resolve_budget(spec, name, space, table, model)
        # The loss compares the table's E[lat] with T: state the budget in table units (the
        # median table/model ratio over sampled archs; 1 when the model is the table).
        rng = random.Random(spec.seed)
        sample = [space.sample(rng) for _ in range(64)]
        scale = statistics.median(table.arch_latency(a) / model(a) for a in sample)
        cfg = ProxylessConfig(
            weights=train_config(ps, spec.seed),
            warmup_iterations=int(ps.warmup_fraction * ps.iterations), arch_lr=ps.arch_lr,
            arch_update_every=ps.arch_update_every, binary_mode=ps.binary_mode,
            latency_loss=ps.latency_loss, latency_lambda=ps.latency_lambda,
            latency_beta=ps.latency_beta)
        torch.manual_seed(spec.seed)
        net = Supernet(layout, space, sharing=spec.supernet.sharing)
        res = proxyless_search(
            layout, space, data, table, budget * scale, cfg,
            latency=lambda a, m=model, s=scale: m(a) * s,  # type: ignore[misc]
            supernet=net, description=f"proxyless {name}",
            checkpointer=Checkpointer(store, proxyless_key(search_id, name, "ckpt"),
                                      keep=ps.keep_checkpoints))
        out = res.to_json()
        out.update(budget_ms=budget, latency_ms=model(res.arch), table_scale=scale,
                   budget_table_ms=budget * scale,
                   supernet_accuracy=SupernetScorer(net, data, spec)(res.arch),
                   sharing=net.sharing)
        quality = supernet_quality(net, space, data, spec)
        if quality is not None:
            out["quality"] = quality
        store.put_json(proxyless_key(search_id, name), out)


def proxyless_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    out = {}
    for name in searched_devices(spec):
        r = store.get_json(proxyless_key(search_id, name))
        out[name] = {"winner": r["arch"], "supernet_accuracy": r["supernet_accuracy"],
                     "latency_ms": r["latency_ms"], "budget_ms": r["budget_ms"],
                     "expected_latency_ms": r["expected_latency_ms"],
                     "argmax_arch": r["argmax_arch"], "fallback": r["fallback"],
                     "iterations": r["iterations"], "arch_updates": r["arch_updates"],
                     "train_seconds": r["seconds"], "loss_curve": loss_curve(
                         [(h["step"], h["loss"]) for h in r.get("history") or []
                          if h.get("loss") is not None]),
                     **({"quality": r["quality"]} if "quality" in r else {})}
    return {"devices": out, **quality_warnings({f"proxyless ({n})": d for n, d in out.items()})}


def proxyless_supernets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One gradient search, with its own supernet, per device."""
    return {f"proxyless ({name})": d for name, d in result["devices"].items()}
