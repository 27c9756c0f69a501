"""Faults with real processes, each ending with the search succeeded and every step result
written exactly once (counted on a versioned bucket): the jobs worker SIGKILLed during
supernet training (a new worker resumes from the checkpoint), redis-server restarted with its
queues lost, the API restarted, the S3 server stopped for 20 s, and a cancel that stops the
running job within 10 s (then a resume).

The kill and the cancel land on a training held at a known step (tests/pod_gate, for searches
named ``held-…`` only): it waits before step HOLD until its SIGTERM comes, so they never race
how fast the machine trains."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hurricane.leases import newest
from hurricane.machine import pid_alive
from tests.conftest import tiny_spec_dict
from tests.servers import ServiceStack, wait_for

POD_GATE = Path(__file__).parent / "pod_gate"
HOLD = 100  # a held search's supernet training waits before this step until SIGTERM
HELD = "held"
EVENT_S = 600  # bounds on events real processes must reach: they only catch a hang


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[ServiceStack]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("faults")
    gate = root / "gate"
    gate.mkdir()
    with ServiceStack(root, PYTHONPATH=os.pathsep.join([str(POD_GATE),
                                                       os.environ.get("PYTHONPATH", "")]),
                      HURRICANE_TEST_HOLD_AT=str(HOLD), HURRICANE_TEST_HOLD_DIR=str(gate),
                      HURRICANE_TEST_HOLD_MATCH=f"--search {HELD}-") as s:
        s.gate = gate  # type: ignore[attr-defined]
        yield s


def held(service: ServiceStack, sid: str) -> int:
    """Waits until the search's stage1 job holds before step HOLD; returns its pid (from its
    lease: the process the worker started)."""
    gate: Path = service.gate  # type: ignore[attr-defined]
    lease = wait_for(lambda: (lambda ls: ls if ls and ls.doc.get("pid") else None)(
        newest(service.store(), sid, f"{sid}-stage1")), EVENT_S, "the stage1 job to start")
    pid = int(lease.doc["pid"])
    reached = wait_for(lambda: [p for p in gate.glob(f"reached-{pid}")], EVENT_S,
                       f"the stage1 job's hold before step {HOLD}")
    assert [int(p.read_text()) for p in reached] == [HOLD]
    assert newest(service.store(), sid, f"{sid}-stage1").state == "running"  # type: ignore[union-attr]
    return pid


def submit(service: ServiceStack, tmp_path: Any, **over: Any) -> str:
    import yaml

    spec = tiny_spec_dict(**{"supernet": {"iterations": 1000, "checkpoint_every": 25,
                                          "batch_size": 32, "lr": 0.05, "threads": 1}, **over})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(service.client().submit(path)["search_id"])


def unit_running(step: str, unit: str = "ALL"):  # type: ignore[no-untyped-def]
    return lambda v: v["steps"][step].get("units", {}).get(unit, {}).get("state") == "running"


def checkpoints(service: ServiceStack, sid: str) -> list[int]:
    keys = service.store().list(f"searches/{sid}/stage1/ckpt")
    return sorted(int(k.rsplit("ckpt-", 1)[1][:-3]) for k in keys)


def assert_succeeded_once(service: ServiceStack, sid: str, timeout: float = 300) -> dict[str, Any]:
    view = service.wait(sid, timeout=timeout)
    assert view["state"] == "succeeded", view
    versions = service.versions(sid)
    assert len(versions) == len(view["plan"]), versions
    assert set(versions.values()) == {1}, versions  # no step result written twice
    assert service.versions(sid, "/report.json") == {f"runs/searches/{sid}/report.json": 1}
    return view


def test_sigkill_the_jobs_worker_during_supernet_training(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path, name=f"{HELD}-kill")
    job_pid = held(service, sid)
    assert max(checkpoints(service, sid)) == HOLD  # every 25 steps up to the hold
    service.stack.signal("jobs", signal.SIGKILL)  # the worker, its pool and (via PDEATHSIG) its job
    # the job's SIGTERM (PDEATHSIG) ends the held step, which checkpoints, and the job exits
    wait_for(lambda: not pid_alive(job_pid), EVENT_S, "the orphaned job to die with its worker")
    service.stack.start("jobs")  # a new worker: the reconciler re-enqueues the lost unit
    view = assert_succeeded_once(service, sid)
    train = service.store().get_json(f"searches/{sid}/stage1/train.json")
    assert train["resumed_from"] == HOLD + 1  # continued from the checkpoint, not step 0
    assert train["iterations"] == 1000
    assert view["steps"]["stage1"]["units"]["ALL"]["attempt"] >= 2
    assert newest(service.store(), sid, f"{sid}-stage1").number == 2  # the lease was taken over


def test_restart_redis_mid_search(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=120)
    service.stack.stop("redis")  # no persistence: every queue and flight record is lost
    time.sleep(1)
    service.stack.start("redis")
    assert_succeeded_once(service, sid)


def test_restart_the_api_mid_search(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=120)
    old = service.stack.pid("api")
    service.stack.stop("api")
    assert old is not None and not pid_alive(old)
    service.stack.start("api")
    wait_for(service.stack.api_ready, 60, "the API to be ready again")
    assert_succeeded_once(service, sid)


def test_stop_the_s3_server_for_20_seconds_mid_step(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path)
    service.wait(sid, until=unit_running("stage1"), timeout=120)
    wait_for(lambda: checkpoints(service, sid), 60, "a first checkpoint")
    service.moto.pause()  # SIGSTOP: connections hang, nothing answers
    try:
        time.sleep(20)
    finally:
        service.moto.resume()
    view = assert_succeeded_once(service, sid)
    assert view["steps"]["stage1"]["state"] == "succeeded"


def test_cancel_stops_the_running_job_within_10_s_and_resume_finishes(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = submit(service, tmp_path, name=f"{HELD}-cancel")
    job_pid = held(service, sid)
    t0 = time.monotonic()
    out = service.client().cancel(sid)
    assert out is not None and out["state"] == "cancelled"
    wait_for(lambda: not pid_alive(job_pid), 10, "the cancelled job process to stop")
    stopped_after = time.monotonic() - t0
    assert stopped_after <= 10
    unit = service.wait(sid, until=lambda v: v["steps"]["stage1"]["units"]["ALL"]["state"]
                        == "cancelled", states=(), timeout=30)
    assert unit["state"] == "cancelled"
    assert newest(service.store(), sid, f"{sid}-stage1").state == "cancelled"
    resumed = service.client().resume(sid)
    assert resumed["generation"] == 1
    assert_succeeded_once(service, sid)
    train = service.store().get_json(f"searches/{sid}/stage1/train.json")
    assert train["resumed_from"] == HOLD + 1  # the cancelled job checkpointed the held step
    print(f"cancel stopped the running job in {stopped_after:.2f} s")
