"""Shared fixtures: a tiny spec that trains in seconds on a CPU, and a temporary store."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hurricane.spec import SearchSpec
from hurricane.storage.store import LocalStore

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
                      "keep_top": 3, "finalists": 3, "finalist_iterations": 2},
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


@pytest.fixture(scope="session")
def redis_server():  # type: ignore[no-untyped-def]
    """One real redis-server for the tests that need a broker (no persistence)."""
    from tests.servers import RedisServer

    with RedisServer() as srv:
        yield srv


@pytest.fixture
def service_env(tmp_path, redis_server, monkeypatch):  # type: ignore[no-untyped-def]
    """Settings of an API in this process: a local store, the real Redis, three users
    (alice, bob, root as admin), data roots ``<tmp>/data/shared`` and
    ``<tmp>/data/users/{user}`` and the bucket ``datasets``; returns {user: token} and the
    store."""
    from hurricane.service.tokens import add_token
    from hurricane.settings import get_settings

    tokens_file = tmp_path / "tokens.yaml"
    tokens = {"alice": add_token(tokens_file, "alice"), "bob": add_token(tokens_file, "bob"),
              "root": add_token(tokens_file, "root", "admin")}
    db = abs(hash(str(tmp_path))) % 15 + 1  # a Redis database per test: queues do not mix
    env = {"HURRICANE_STORE": str(tmp_path / "store"),
           "HURRICANE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{db}",
           "HURRICANE_TOKENS_FILE": str(tokens_file),
           "HURRICANE_SIGNING_KEY": "test-signing-key-0123456789abcdef",
           "HURRICANE_STATUS_CACHE_S": "0", "HURRICANE_EVENTS_POLL_S": "0.05",
           "HURRICANE_DATA_ROOTS": f"{tmp_path}/data/shared,{tmp_path}/data/users/{{user}}",
           "HURRICANE_DATA_BUCKETS": "datasets"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import redis

    redis.Redis.from_url(env["HURRICANE_REDIS_URL"]).flushdb()  # queues of earlier tests
    get_settings.cache_clear()
    yield {"tokens": tokens, "store": LocalStore(tmp_path / "store"), "env": env}
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def live_api(redis_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The API as a real uvicorn process over real Redis and an S3-protocol store (moto), with
    users alice, bob, carol, quota and root (admin): tests/api_server.py."""
    import redis

    from tests.api_server import ApiServer

    url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis.Redis.from_url(url).flushdb()
    with ApiServer(tmp_path_factory.mktemp("live-api"), url) as srv:
        yield srv
