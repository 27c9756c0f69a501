"""The Celery tasks called in this process (eagerly), against a real redis-server: advance
enqueues each step's units by name and ids only, on the queue of the unit's device pool;
calling tasks twice or after the fact changes nothing; the reconciler revives a search whose
queue was flushed; invalid input fails the search without retries. (The same tasks under real
worker processes: tests/test_service_e2e.py and tests/test_service_faults.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from hurricane.runs.records import mark_active, submit, summarize
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict


@pytest.fixture
def tasks(service_env, monkeypatch) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from hurricane.settings import get_settings

    monkeypatch.setenv("HURRICANE_EXECUTOR", "inline")  # jobs run in this process
    get_settings.cache_clear()
    from hurricane.workers import tasks as t
    from hurricane.workers.app import app, point_at

    point_at(app, get_settings())
    yield t
    get_settings.cache_clear()


def queued(r: redis.Redis, queue: str) -> list[dict[str, Any]]:
    return [json.loads(m)["headers"] for m in r.lrange(queue, 0, -1)]


def new_search(service_env: dict[str, Any], **over: Any) -> str:
    store = service_env["store"]
    sid = submit(SearchSpec.model_validate(tiny_spec_dict(**over)), store, owner="alice")
    mark_active(store, sid)
    return sid


def drive(tasks: Any, r: redis.Redis, sid: str, limit: int = 40) -> list[str]:
    """A worker in this process: takes tasks off the queues in order and applies them."""
    log = []
    for _ in range(limit):
        msgs = [(q, m) for q in ("control", "train", "profile.cpu") for m in r.lrange(q, 0, 0)]
        if not msgs:
            return log
        queue, raw = msgs[0]
        r.lpop(queue)
        headers = json.loads(raw)["headers"]
        args = json.loads(headers["argsrepr"].replace("'", '"'))
        task = {"hurricane.advance": tasks.advance, "hurricane.run_unit": tasks.run_unit,
                "hurricane.reconcile": tasks.reconcile}[headers["task"]]
        log.append(f"{queue}: {headers['task']}{tuple(args)} -> {task.apply(args=args).get()}")
    raise AssertionError(f"still busy after {limit} tasks:\n" + "\n".join(log))


def test_advance_fans_out_units_by_name_and_the_search_finishes(tasks, service_env) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(service_env["env"]["HURRICANE_REDIS_URL"])
    sid = new_search(service_env)
    assert tasks.advance.apply(args=[sid]).get() == "run profile"
    assert tasks.advance.apply(args=[sid]).get() == "run profile"  # twice: still one task
    msgs = queued(r, "profile.cpu")  # a measurement: the cpu pool's own queue
    assert len(msgs) == 1 and msgs[0]["task"] == "hurricane.run_unit"
    assert msgs[0]["argsrepr"] == f"['{sid}', 'profile', 'cpu']"
    log = drive(tasks, r, sid)
    assert summarize(service_env["store"], sid)["state"] == "succeeded"
    assert any("train: hurricane.run_unit" in line and "'stage1', 'ALL'" in line for line in log)
    assert any("profile.cpu: hurricane.run_unit" in line and "'export', 'cpu'" in line
               for line in log)
    # out of order and late: a redelivered unit finds its outputs, advance has nothing to do
    assert tasks.run_unit.apply(args=[sid, "stage1", "ALL"]).get().startswith("found stage1/ALL")
    assert tasks.advance.apply(args=[sid]).get() == "succeeded"
    assert not service_env["store"].exists(f"index/active/{sid}")
    assert r.llen("control") == 1  # the late unit enqueued one (harmless) advance


def test_reconcile_revives_a_search_whose_queue_was_lost(tasks, service_env) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(service_env["env"]["HURRICANE_REDIS_URL"])
    sid = new_search(service_env)
    tasks.advance.apply(args=[sid]).get()
    assert tasks.reconcile.apply().get() == []  # its unit is queued: nothing lost
    r.flushdb()  # Redis lost every queue and flight record
    assert tasks.reconcile.apply().get() == [sid]
    assert [m["task"] for m in queued(r, "control")] == ["hurricane.advance"]
    drive(tasks, r, sid)
    assert summarize(service_env["store"], sid)["state"] == "succeeded"
    assert tasks.reconcile.apply().get() == []


def test_invalid_input_fails_the_search_without_retries(tasks, service_env) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(service_env["env"]["HURRICANE_REDIS_URL"])
    sid = new_search(service_env, devices=[{"name": "cpu", "latency_budget_ms": 1e-6}])
    tasks.advance.apply(args=[sid]).get()
    log = drive(tasks, r, sid)
    status = summarize(service_env["store"], sid)
    assert status["state"] == "failed" and status["failed_step"] == "predictor"
    assert "below the fastest architecture" in status["error"]
    assert "-> failed" in log[-1] and not service_env["store"].exists(f"index/active/{sid}")
    assert tasks.reconcile.apply().get() == []  # a failed search is not revived


def test_a_failing_job_is_recorded_on_its_unit(tasks, service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from hurricane.runs.contract import STEPS

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("the GPU fell off the bus")

    monkeypatch.setitem(STEPS._entries, "stage1",
                        dataclasses.replace(STEPS.get("stage1"), run=broken))
    r = redis.Redis.from_url(service_env["env"]["HURRICANE_REDIS_URL"])
    sid = new_search(service_env)
    tasks.advance.apply(args=[sid]).get()
    drive(tasks, r, sid)
    status = summarize(service_env["store"], sid)
    assert status["state"] == "failed" and status["failed_step"] == "stage1"
    unit = status["steps"]["stage1"]["units"]["ALL"]
    assert unit["state"] == "failed" and "fell off the bus" in unit["error"]
