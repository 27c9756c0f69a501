"""Shared fixtures: a tiny spec that trains in seconds on a CPU, and a temporary store."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hurricane.spec import SearchSpec
from hurricane.store import LocalStore

TINY_OPS = ["SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX"]


def tiny_spec_dict(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "dataset": {"name": "digits"},
        "backbone": {"input_size": 32, "num_classes": 10, "layers_per_stage": [1, 1, 2, 1],
                     "stage_channels": [16, 24, 32, 48], "stem_channels": 8,
                     "head_channels": 64},
        "space": {"ops": TINY_OPS},
        "devices": [{"name": "cpu", "budget_fraction": 0.5}],
        "profile": {"warmup": 1, "repeats": 3, "measure_final": 3},
        "predictor": {"samples": 12, "repeats": 3},
        "supernet": {"iterations": 12, "batch_size": 32, "lr": 0.05, "checkpoint_every": 5,
                     "threads": 1},
        "evolution": {"iterations": 2, "population": 6, "top_k": 3, "crossover": 3,
                      "mutation": 3, "bn_batches": 1, "bn_batch_size": 32, "eval_batches": 1,
                      "keep_top": 3},
        "retrain": {"iterations": 8, "batch_size": 32, "lr": 0.05, "checkpoint_every": 4},
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return d


@pytest.fixture
def tiny_spec() -> SearchSpec:
    return SearchSpec.model_validate(tiny_spec_dict())


@pytest.fixture
def store(tmp_path) -> LocalStore:  # type: ignore[no-untyped-def]
    return LocalStore(tmp_path / "store")


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
