"""Where the steps keep their outputs in the store, and which devices a step serves: what a
step's declaration (its units and done test) reads. Torch-free."""

from __future__ import annotations

from typing import Any

from hurricane.runs.records import result_key
from hurricane.spec import DeviceTarget, SearchSpec
from hurricane.storage.store import ArtifactStore, search_key


def dataset_key(search_id: str) -> str:
    return search_key(search_id, "dataset.json")


def table_key(search_id: str, device: str) -> str:
    return search_key(search_id, "profile", device, "latency.json")


def predictor_key(search_id: str, device: str, name: str = "predictor.json") -> str:
    return search_key(search_id, "predictor", device, name)


def train_key(search_id: str, stage: str) -> str:
    return search_key(search_id, stage, "train.json")


def evolution_key(search_id: str, step: str, device: str, name: str = "evolution.json") -> str:
    return search_key(search_id, step, device, name)


def transfer_key(search_id: str, device: str, name: str = "transfer.json") -> str:
    return search_key(search_id, "transfer", device, name)


def proxyless_key(search_id: str, device: str, name: str = "search.json") -> str:
    return search_key(search_id, "proxyless", device, name)


def final_key(search_id: str, device: str, name: str) -> str:
    return search_key(search_id, "retrain", device, name)


def export_key(search_id: str, device: str) -> str:
    return search_key(search_id, "export", device, "export.json")


def step_result(store: ArtifactStore, search_id: str, step: str) -> dict[str, Any]:
    return store.get_json(result_key(search_id, step))  # type: ignore[no-any-return]


def target(spec: SearchSpec, name: str) -> DeviceTarget:
    return next(d for d in spec.devices if d.name == name)


def searched_devices(spec: SearchSpec) -> list[str]:
    return [d.name for d in spec.devices if d.proxy is None]


def devices_of(spec: SearchSpec, device: str | None, *, searched: bool = False) -> list[str]:
    """Target names (``device`` alone if given); ``searched``: only devices with their own
    search (not served by a proxy device)."""
    names = [d.name for d in spec.devices]
    if device is not None and device not in names:
        raise ValueError(f"device {device!r} is not a target of this search; targets: {names}")
    pool = searched_devices(spec) if searched else names
    return [n for n in pool if device is None or n == device]
