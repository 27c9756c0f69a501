"""Faults with real processes, each ending with the search succeeded and every step result
written exactly once (counted on a versioned bucket): the jobs worker SIGKILLed during
supernet training (a new worker resumes from the checkpoint), redis-server restarted with its
queues lost, the API restarted, the S3 server stopped for 20 s, and a cancel that stops the
running job (then a resume). The trainings the SIGKILL and the cancel must catch hold at step
100 until a signal comes (tests/pod_gate, armed per test), so neither races the machine."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hurricane.machine import pid_alive
from hurricane.runs.leases import newest
from tests.conftest import tiny_spec_dict
from tests.servers import ServiceStack, wait_for

# Minutes each on 2 cores (a search through the whole stack per fault): `make test-slow`, CI.
pytestmark = pytest.mark.slow

GATE_AT = 100


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return Path(tmp_path_factory.mktemp("gate"))


@pytest.fixture(scope="module")
def service(tmp_path_factory, gate: Path) -> Iterator[ServiceStack]:  # type: ignore[no-untyped-def]
    pod_gate = Path(__file__).parent / "pod_gate"
    with ServiceStack(tmp_path_factory.mktemp("faults"),
                      PYTHONPATH=os.pathsep.join([str(pod_gate), os.environ.get("PYTHONPATH", "")]),
                      HURRICANE_TEST_HOLD_AT=str(GATE_AT), HURRICANE_TEST_HOLD_DIR=str(gate),
                      HURRICANE_TEST_HOLD_ARM="1") as s:
        yield s


def held(gate: Path) -> None:
    """Arms the gate: the next training to reach step GATE_AT holds there until a signal."""
    for old in gate.glob("reached-*"):
        old.unlink()
    (gate / "armed").write_text("")


def submit(service: ServiceStack, tmp_path: Any, **over: Any) -> str:
    import yaml

    spec = tiny_spec_dict(**{"supernet": {"recipe": "spos", "iterations": 1000, "checkpoint_every": 25,
                                          "batch_size": 32, "lr": 0.05, "threads": 1}, **over})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(service.client().submit(path)["search_id"])


def unit_running(step: str, unit: str = "ALL"):  # type: ignore[no-untyped-def]
    return lambda v: v["steps"][step].get("units", {}).get(unit, {}).get("state") == "running"


def checkpoints(service: ServiceStack, sid: str) -> list[int]:
    keys = service.store().list(f"searches/{sid}/stage1/ckpt")
    return sorted(int(k.rsplit("ckpt-", 1)[1][:-3]) for k in keys)


def assert_succeeded_once(service: ServiceStack, sid: str, timeout: float = 1200) -> dict[str, Any]:
    view = service.wait(sid, timeout=timeout)
    assert view["state"] == "succeeded", view
    versions = service.versions(sid)
    assert len(versions) == len(view["plan"]), versions
    assert set(versions.values()) == {1}, versions  # no step result written twice
    assert service.versions(sid, "/report.json") == {f"runs/searches/{sid}/report.json": 1}
    return view


def test_sigkill_the_jobs_worker_during_supernet_training(service, gate, tmp_path) -> None:  # type: ignore[no-untyped-def]
    held(gate)
    sid = submit(service, tmp_path)
    wait_for(lambda: list(gate.glob("reached-*")), 600, f"stage1 held at step {GATE_AT}")
    seen = checkpoints(service, sid)
    assert max(seen) == GATE_AT  # checkpoints every 25 steps: the one before the hold
    lease = newest(service.store(), sid, f"{sid}-stage1")
    assert lease is not None and lease.state == "running"
    job_pid = int(lease.doc["pid"])
    service.stack.signal("jobs", signal.SIGKILL)  # the worker, its pool and (via PDEATHSIG) its job
    wait_for(lambda: not pid_alive(job_pid), 60, "the orphaned job to die with its worker")
    service.stack.start("jobs")  # a new worker: the reconciler re-enqueues the lost unit
    view = assert_succeeded_once(service, sid)
    train = service.store().get_json(f"searches/{sid}/stage1/train.json")
    # the dying worker's job gets SIGTERM (its parent-death signal): it ends the held step,
    # checkpoints it and exits; the new job continues from there, not from step 0
    assert train["resumed_from"] == GATE_AT + 1
    assert train["iterations"] == 1000
    assert view["steps"]["stage1"]["units"]["ALL"]["attempt"] >= 2
    assert newest(service.store(), sid, f"{sid}-stage1").number == 2  # the lease was taken over


def test_restart_redis_mid_search(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=900)
    service.stack.stop("redis")  # no persistence: every queue and flight record is lost
    time.sleep(1)
    service.stack.start("redis")
    assert_succeeded_once(service, sid)


def test_restart_the_api_mid_search(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=900)
    old = service.stack.pid("api")
    service.stack.stop("api")
    assert old is not None and not pid_alive(old)
    service.stack.start("api")
    wait_for(service.stack.api_ready, 60, "the API to be ready again")
    assert_succeeded_once(service, sid)


def test_stop_the_s3_server_for_20_seconds_mid_step(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=900)
    wait_for(lambda: checkpoints(service, sid), 60, "a first checkpoint")
    service.moto.pause()  # SIGSTOP: connections hang, nothing answers
    try:
        time.sleep(20)
    finally:
        service.moto.resume()
    view = assert_succeeded_once(service, sid)
    assert view["steps"]["stage1"]["state"] == "succeeded"


def test_cancel_stops_the_running_job_and_resume_finishes(service, gate, tmp_path) -> None:  # type: ignore[no-untyped-def]
    held(gate)
    sid = submit(service, tmp_path)
    wait_for(lambda: list(gate.glob("reached-*")), 600, f"stage1 held at step {GATE_AT}")
    lease = wait_for(lambda: (lambda ls: ls if ls and ls.doc.get("pid") else None)(
        newest(service.store(), sid, f"{sid}-stage1")), 300, "the stage1 job's lease")
    job_pid = int(lease.doc["pid"])
    t0 = time.monotonic()
    out = service.client().cancel(sid)
    assert out is not None and out["state"] == "cancelled"
    wait_for(lambda: not pid_alive(job_pid), 60, "the cancelled job process to stop")
    stopped_after = time.monotonic() - t0  # reported, not asserted: bench/soak.py measures it
    unit = service.wait(sid, until=lambda v: v["steps"]["stage1"]["units"]["ALL"]["state"]
                        == "cancelled", states=(), timeout=300)
    assert unit["state"] == "cancelled"
    assert newest(service.store(), sid, f"{sid}-stage1").state == "cancelled"
    resumed = service.client().resume(sid)
    assert resumed["generation"] == 1
    assert_succeeded_once(service, sid)
    train = service.store().get_json(f"searches/{sid}/stage1/train.json")
    assert train["resumed_from"] == GATE_AT + 1  # the cancelled job checkpointed the held step
    print(f"cancel stopped the running job in {stopped_after:.2f} s")
