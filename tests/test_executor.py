"""The process executor's job leases and cancellation, with real job processes: a second
caller adopts a running job instead of starting another, a stale or dead holder's job is
taken over, and a cancelled job's process stops within the poll and grace periods."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from hurricane.machine import pid_alive
from hurricane.runs.contract import JobCancelled, JobSpec
from hurricane.runs.executor import InlineExecutor, ProcessExecutor
from hurricane.runs.leases import lease_prefix, newest
from hurricane.runs.pipeline import run_step
from hurricane.runs.records import submit
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict
from tests.servers import wait_for


@pytest.fixture
def ready(store) -> tuple[Any, str, SearchSpec]:  # type: ignore[no-untyped-def]
    """A search whose steps before stage1 are done; its stage1 job trains 1,500 steps."""
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"recipe": "spos", "iterations": 1500, "checkpoint_every": 100}))
    sid = submit(spec, store, "ex1")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    return store, sid, spec


def executor(**kw: Any) -> ProcessExecutor:
    return ProcessExecutor(echo=False, heartbeat_s=0.5, stale_s=5.0, poll_s=0.2, grace_s=3.0, **kw)


@pytest.mark.slow  # about 1.5 min on 2 cores: `make test-slow`, CI
def test_a_second_caller_adopts_the_running_job(ready) -> None:  # type: ignore[no-untyped-def]
    store, sid, _ = ready
    job = JobSpec(search_id=sid, step="stage1", store_url=store.url)
    first = threading.Thread(target=executor().run, args=(job,))
    first.start()
    lease = wait_for(lambda: (lambda v: v if v and v.doc.get("pid") else None)(
        newest(store, sid, job.name)), 60)
    executor().run(job)  # returns when the first caller's job has finished
    # it waited for the job rather than returning at once: the job had ended when it returned
    assert newest(store, sid, job.name).state == "succeeded"
    first.join(600)
    assert lease.number == 1 and newest(store, sid, job.name).number == 1  # never a second job
    assert store.get_json(f"searches/{sid}/stage1/train.json")["resumed_from"] == 0


def test_a_stale_or_dead_holder_is_taken_over(ready) -> None:  # type: ignore[no-untyped-def]
    store, sid, _ = ready
    table = f"searches/{sid}/profile/cpu/latency.json"
    job = JobSpec(search_id=sid, step="profile", store_url=store.url, device="cpu")
    # a holder elsewhere whose heartbeat stopped a minute ago
    store.put_json(f"{lease_prefix(sid, job.name)}/lease-1.json",
                   {"job": job.name, "host": "gone", "holder_pid": 1, "state": "running",
                    "started": time.time() - 90, "heartbeat": time.time() - 60})
    store.delete(table)
    executor().run(job)
    cur = newest(store, sid, job.name)
    assert cur.number == 2 and cur.state == "succeeded" and cur.doc["previous"]["host"] == "gone"
    assert store.exists(table)
    # a holder on this host whose process is gone: taken over at once, heartbeat or not
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    store.put_json(f"{lease_prefix(sid, job.name)}/lease-3.json",
                   {"job": job.name, "host": os.uname().nodename, "holder_pid": dead,
                    "state": "running", "started": time.time(), "heartbeat": time.time()})
    store.delete(table)
    executor().run(job)
    assert newest(store, sid, job.name).number == 4 and store.exists(table)


def test_cancel_stops_the_job_process(ready) -> None:  # type: ignore[no-untyped-def]
    store, sid, _ = ready
    job = JobSpec(search_id=sid, step="stage1", store_url=store.url)
    flag = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            executor(cancelled=flag.is_set).run(job)
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    lease = wait_for(lambda: (lambda v: v if v and v.doc.get("pid") else None)(
        newest(store, sid, job.name)), 60)
    pid = int(lease.doc["pid"])
    flag.set()
    t.join(600)  # a bound that only catches a hang: how fast the cancel lands is not asserted
    assert not t.is_alive() and not pid_alive(pid)
    assert len(errors) == 1 and isinstance(errors[0], JobCancelled)
    assert newest(store, sid, job.name).state == "cancelled"
    assert not store.exists(f"searches/{sid}/stage1/train.json")
