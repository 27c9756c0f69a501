"""The end of every strategy: retrain each device's winner, export ONNX and re-measure it."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from hurricane import progress
from hurricane.data.datasets import Data
from hurricane.latency.devices import DeviceProfile
from hurricane.latency.profiling import Protocol, measure_arch
from hurricane.latency.verify import VerifyConfig, verify
from hurricane.nets.arch import Arch
from hurricane.nets.backbone import Layout
from hurricane.nets.distributed import Place, barrier, place
from hurricane.nets.flops import layer_summary, network_cost
from hurricane.nets.supernet import Network
from hurricane.nets.train import Checkpointer, evaluate, set_threads, train
from hurricane.runs.steps.common import (
    data_of,
    devices_of,
    latency_model,
    layout_of,
    load_space,
    load_table,
    protocol_of,
    resolve_budget,
    target_profile,
    train_config,
)
from hurricane.runs.steps.keys import export_key, final_key, step_result
from hurricane.runs.steps.results import device_winners
from hurricane.runs.strategies import STRATEGIES
from hurricane.search.evolution import Candidate
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, search_key
from hurricane.storage.torchio import load_torch, save_torch


def winners(spec: SearchSpec, store: ArtifactStore, search_id: str) -> dict[str, Candidate]:
    """Each device's architecture: the latest winner step's of the strategy's plan."""
    found = device_winners(STRATEGIES.get(spec.strategy).plan(spec),
                           lambda s: step_result(store, search_id, s))
    return {d: Candidate(Arch.parse(r["winner"]), r["supernet_accuracy"], r["latency_ms"])
            for d, (_, r) in found.items()}


def retrain_arch(spec: SearchSpec, arch: Arch, data: Data, store: ArtifactStore,
                 prefix: str, where: Place | None = None) -> tuple[Network, dict[str, Any]]:
    """Trains ``arch`` from scratch on train+val (distributed like the supernet stages) and
    scores it on the test split (rank 0 only: other ranks return no metrics)."""
    where = where or Place()
    torch.manual_seed(spec.seed)
    net = Network(layout_of(spec), arch)
    cfg = train_config(spec.retrain, spec.seed, training=spec.training)
    res = train(net, data.trainval(), cfg,
                checkpointer=Checkpointer(store, prefix + "/ckpt", keep=cfg.keep_checkpoints),
                description=f"retrain {arch.digest}", where=where)
    if not where.main:
        return net, {}
    acc = evaluate(net, data.test)
    return net, {"test_top1": acc, "iterations": res.steps, "train_seconds": res.seconds,
                 "final_loss": res.final_loss, "test_images": len(data.test),
                 "world_size": res.world_size}


def retrain_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    set_threads(spec.retrain.threads)
    where = place(spec.training.device)
    data = data_of(spec, store, search_id)
    found = winners(spec, store, search_id)
    for name, cand in found.items():  # a device's job retrains every device sharing its winner
        if device is not None and cand.arch != found[device].arch:
            continue
        if store.exists(final_key(search_id, name, "metrics.json")):
            continue
        # a device whose winner another device already retrained reuses that model
        same = [d for d, c in found.items() if d != name and c.arch == cand.arch
                and store.exists(final_key(search_id, d, "metrics.json"))]
        if same:
            if where.main:
                store.put_bytes(final_key(search_id, name, "final.pt"),
                                store.get_bytes(final_key(search_id, same[0], "final.pt")))
            metrics = {**store.get_json(final_key(search_id, same[0], "metrics.json")),
                       "shared_with": same[0]}
        else:
            net, metrics = retrain_arch(spec, cand.arch, data, store,
                                        search_key(search_id, "retrain", name), where)
            if not where.main:
                barrier(where.world)  # rank 0 writes this device's outputs
                continue
            save_torch(store, final_key(search_id, name, "final.pt"), {
                "arch": str(cand.arch), "backbone": spec.backbone.model_dump(mode="json"),
                "classes": list(data.classes), "state_dict": net.state_dict()})
        if where.main:
            store.put_json(final_key(search_id, name, "arch.json"), {
                "arch": str(cand.arch), "ops": list(cand.arch.ops), "device": name,
                "backbone": spec.backbone.model_dump(mode="json")})
            store.put_json(final_key(search_id, name, "metrics.json"), metrics)
        if not same:
            barrier(where.world)  # every rank sees this device's outputs before the next


def _same_winner(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, list[str]]:
    """Devices grouped by their winner, each group named by its first device."""
    groups: dict[Arch, list[str]] = {}
    for name, cand in winners(spec, store, search_id).items():
        groups.setdefault(cand.arch, []).append(name)
    return {names[0]: names for names in groups.values()}


def retrain_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    return {"devices": {d.name: store.get_json(final_key(search_id, d.name, "metrics.json"))
                        for d in spec.devices}}


def retrain_units(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """One training per distinct winner, named by the first device with it."""
    return list(_same_winner(spec, search_id, store))


def retrain_done(spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> bool:
    return all(store.exists(final_key(search_id, d, "metrics.json"))
               for d in _same_winner(spec, search_id, store).get(unit, [unit]))


def load_final(store: ArtifactStore, search_id: str, device: str) -> Network:
    from hurricane.spec import BackboneSpec

    blob = load_torch(store, final_key(search_id, device, "final.pt"))
    net = Network(Layout.from_spec(BackboneSpec.model_validate(blob["backbone"])),
                  Arch.parse(blob["arch"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def _round_ms(layout: Layout, arch: Arch, protocol: Protocol, device: DeviceProfile) -> float:
    """One round of the final check: its own warm-up and repeats; the median (ms)."""
    return measure_arch(layout, arch, protocol, device).median_ms


def export_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    from hurricane.nets.export import export_and_check

    data = data_of(spec, store, search_id)
    x = next(data.test.eval_batches(64))[0]
    for name in devices_of(spec, device):
        key = export_key(search_id, name)
        if store.exists(key):
            continue
        net = load_final(store, search_id, name)
        with progress.task(f"export {name}", total=2) as bar:
            onnx_bytes, parity = export_and_check(net, input_size=spec.backbone.input_size,
                                                  inputs=x, opset=spec.retrain.onnx_opset)
            store.put_bytes(search_key(search_id, "export", name, "model.onnx"), onnx_bytes)
            bar.advance(1)
            table = load_table(store, search_id, name)
            latency = latency_model(store, search_id, name, table)
            prof = target_profile(spec, name)
            check = None
            if prof.backend != "table":
                p = spec.profile
                budget = resolve_budget(spec, name, load_space(store, search_id), table, latency)
                proto = protocol_of(spec, repeats=max(3, p.measure_final))
                check = verify(partial(_round_ms, layout_of(spec), net.arch, proto, prof),
                               budget, VerifyConfig(min_rounds=p.final_rounds,
                                                    max_rounds=p.final_max_rounds,
                                                    confidence=p.final_confidence))
            bar.advance(1)
        cost = network_cost(net, spec.backbone.input_size)
        store.put_json(key, {
            "onnx": search_key(search_id, "export", name, "model.onnx"),
            "onnx_max_abs_diff": parity.max_abs_diff, "onnx_top1_agreement": parity.top1_agreement,
            # the median of the final check's rounds, its interval and verdict on the budget
            "measured_latency_ms": check.median_ms if check else None,
            "latency_check": check.to_json() if check else None,
            "predicted_latency_ms": latency(net.arch),
            "table_latency_ms": table.arch_latency(net.arch),
            # what the model costs, whole and per layer (the API is torch-free: it cannot count)
            "macs": cost.macs, "params": cost.params,
            "layers": layer_summary(layout_of(spec), net.arch)})


def export_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    return {"devices": {d.name: store.get_json(export_key(search_id, d.name))
                        for d in spec.devices}}
