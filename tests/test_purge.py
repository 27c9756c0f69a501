"""Purge stops running work before it deletes anything, under every executor: a training held
at a step (tests/pod_gate for the job processes and pods, a gated progress reporter for the
inline executor) is purged; the purge returns only once the job has stopped, and nothing is
left or written under the purged prefix after it. Also the guard itself (a purged search's
writes are refused), the tombstone (a purged id is not used again) and the sweep."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hurricane import progress
from hurricane.machine import pid_alive
from hurricane.runs.contract import WHOLE, JobSpec
from hurricane.runs.executor import InlineExecutor, ProcessExecutor
from hurricane.runs.leases import newest
from hurricane.runs.pipeline import run_step, run_unit
from hurricane.runs.purge import purge_search, running_units, sweep, unfinished
from hurricane.runs.records import (
    SearchConflict,
    SearchPurged,
    guarded,
    purged_key,
    read_unit_state,
    stop_requested,
    submit,
    unit_state_key,
    write_unit_state,
)
from hurricane.spec import SearchSpec
from hurricane.storage.store import LocalStore
from tests.conftest import tiny_spec_dict
from tests.servers import in_thread, wait_for

POD_GATE = Path(__file__).parent / "pod_gate"
HOLD = 30  # the training holds before this step (checkpoints every 10: three written by then)
EVENT_S = 600  # bounds on events a real process must reach: they only catch a hang


@pytest.fixture
def ready(store: LocalStore) -> tuple[LocalStore, str, SearchSpec]:
    """A search whose steps before stage1 are done; stage1 trains 500 steps."""
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"recipe": "spos", "iterations": 500, "checkpoint_every": 10}))
    sid = submit(spec, store, "purge-me", owner="alice")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    return store, sid, spec


def _held(store: LocalStore, sid: str) -> None:
    """The unit is recorded running and its training holds before step HOLD."""
    unit = read_unit_state(store, sid, "stage1", WHOLE)
    assert unit is not None and unit["state"] == "running"
    ckpts = store.list(f"searches/{sid}/stage1/ckpt")
    assert ckpts and ckpts[-1].endswith(f"ckpt-{HOLD:09d}.pt")  # trained up to the hold


def _assert_purged(store: LocalStore, sid: str, t: threading.Thread, out: dict[str, Any]) -> None:
    t.join(EVENT_S)
    assert not t.is_alive()
    assert isinstance(out.get("error"), SearchPurged), out
    assert store.list(f"searches/{sid}") == []  # every writer has ended: nothing came back
    assert not store.list("index/active") and not store.list("index/owners/alice")
    tomb = store.get_json(purged_key(sid))
    assert tomb["state"] == "deleted" and tomb["unstopped"] == [] and tomb["by"] == "test"


def test_purge_stops_a_process_job_before_deleting(ready, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, sid, spec = ready
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(POD_GATE),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HURRICANE_TEST_HOLD_AT", str(HOLD))
    monkeypatch.setenv("HURRICANE_TEST_HOLD_DIR", str(gate))
    ex = ProcessExecutor(echo=False, cancelled=lambda: stop_requested(store, sid), poll_s=0.1,
                         grace_s=60)
    t, out = in_thread(run_unit, "stage1", spec, sid, store, ex, WHOLE)
    wait_for(lambda: list(gate.glob("reached-*")), EVENT_S, "the training's hold")
    _held(store, sid)
    lease = newest(store, sid, f"{sid}-stage1")
    assert lease is not None and lease.state == "running"
    job_pid = int(wait_for(lambda: (newest(store, sid, f"{sid}-stage1") or lease).doc.get("pid"),
                           EVENT_S, "the job's pid on its lease"))
    result = purge_search(store, sid, by="test", wait_s=EVENT_S, poll_s=0.05)
    # the purge returned only once the job had stopped: it cannot write after the deletion
    assert not pid_alive(job_pid)
    assert result.unstopped == () and result.deleted > 0
    _assert_purged(store, sid, t, out)


class _Gate:
    """A progress reporter that holds the training's step ``at`` until ``release`` is set."""

    def __init__(self, at: int) -> None:
        self.at, self.reached, self.release = at, threading.Event(), threading.Event()

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Any]:
        gate, done = self, [completed]

        class T:
            def advance(self, n: int = 1, **metrics: Any) -> None:
                done[0] += n
                if description.startswith("stage1") and done[0] == gate.at:
                    gate.reached.set()
                    if not gate.release.wait(EVENT_S):
                        raise RuntimeError("the gate was never released")

        yield T()

    def message(self, text: str) -> None:
        pass


def test_purge_stops_an_inline_job_before_deleting(ready) -> None:  # type: ignore[no-untyped-def]
    store, sid, spec = ready
    gate = _Gate(HOLD)
    ex = InlineExecutor(cancelled=lambda: stop_requested(store, sid), poll_s=0.0)

    def run() -> bool:
        with progress.use_reporter(gate):
            return run_unit("stage1", spec, sid, store, ex, WHOLE)

    t, out = in_thread(run)
    assert gate.reached.wait(EVENT_S)
    _held(store, sid)
    p, purged = in_thread(lambda: purge_search(store, sid, by="test", wait_s=EVENT_S,
                                                poll_s=0.05))
    wait_for(lambda: store.exists(purged_key(sid)), EVENT_S, "the tombstone")
    # the purge waits for the held unit: the record stands for the training still running
    assert running_units(store, sid, stale_s=30) == ["stage1/ALL"] and p.is_alive()
    gate.release.set()  # the next progress step sees the purge and raises
    p.join(EVENT_S)
    assert not p.is_alive() and purged["result"].unstopped == ()
    _assert_purged(store, sid, t, out)


def test_purge_stops_a_kubernetes_job_before_deleting(ready, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At the HTTP seam (tests/kube_fake.py): the pod, a real process held at a step, gets
    SIGTERM when its Job is deleted; its SIGTERM checkpoint is refused (the search is purged),
    so it ends without writing, and the executor waits until the pod is gone."""
    from hurricane.operator.executor import KubernetesExecutor
    from hurricane.operator.manifests import job_name
    from hurricane.settings import Settings
    from tests.kube_fake import FakeKubeServer, LocalKubelet

    store, sid, spec = ready
    gate = tmp_path / "gate"
    gate.mkdir()
    with FakeKubeServer() as srv:
        k = srv.kube
        kubelet = LocalKubelet(k, tmp_path / "node", env_from={"hurricane-settings": {
            "PYTHONPATH": os.pathsep.join([str(POD_GATE), os.environ.get("PYTHONPATH", "")]),
            "HURRICANE_TEST_HOLD_AT": str(HOLD), "HURRICANE_TEST_HOLD_DIR": str(gate)}})
        try:
            s = Settings(k8s_namespace="nas", k8s_release="rel", k8s_poll_s=0.1,
                         k8s_trainer_image="reg/trainer:1", k8s_profiler_image="reg/profiler:1",
                         stop_wait_s=EVENT_S)
            ex = KubernetesExecutor(settings=s, api_client=srv.client(),
                                    cancelled=lambda: stop_requested(store, sid))
            t, out = in_thread(run_unit, "stage1", spec, sid, store, ex, WHOLE)
            wait_for(lambda: list(gate.glob("reached-*")), EVENT_S, "the training's hold")
            _held(store, sid)
            name = job_name(JobSpec(sid, "stage1", store.url))
            pod_name = kubelet.pod_of[name]
            result = purge_search(store, sid, by="test", wait_s=EVENT_S, poll_s=0.05)
            # the pod had ended before anything was deleted, and it ended refusing to write
            logs = kubelet.logs[pod_name]
            assert kubelet.ended.get(pod_name) is not None  # torchrun's exit; its rank's log:
            assert any("job stage1/all: search 'purge-me' was purged" in x for x in logs), logs
            assert not any("checkpoint written" in x for x in logs)  # the SIGTERM one refused
            assert ("Job", name) not in k.objects and result.unstopped == ()
            _assert_purged(store, sid, t, out)
        finally:
            kubelet.close()


# -- the guard, the tombstone and the sweep (no jobs) -------------------------------------------


def test_a_purged_search_refuses_every_write_of_its_work(store, tiny_spec) -> None:  # type: ignore[no-untyped-def]
    sid = submit(tiny_spec, store, "g", owner="alice")
    g = guarded(store, sid)
    assert g.put_json(f"searches/{sid}/stage1/x.json", {"a": 1})
    assert guarded(g, sid) is g
    write_unit_state(g, sid, "stage1", WHOLE, "running", generation=0)
    unit = store.get_json(unit_state_key(sid, "stage1", WHOLE))
    assert unit["pid"] == os.getpid() and unit["host"] == socket.gethostname()
    store.put_json(purged_key(sid), {"search_id": sid, "owner": "alice"})
    assert stop_requested(store, sid)
    for write in (lambda: g.put_json(f"searches/{sid}/stage1/y.json", {}),
                  lambda: g.put_bytes(f"searches/{sid}/stage1/x.json", b"{}"),
                  lambda: g.put_file(f"searches/{sid}/f.bin", __file__),
                  lambda: g.put_json(f"index/active/{sid}", {})):
        with pytest.raises(SearchPurged, match="was purged"):
            write()
    assert not store.exists(f"searches/{sid}/stage1/y.json")
    assert g.put_json("devices/other/table.json", {})  # outside the search: not its business
    assert g.get_json(f"searches/{sid}/stage1/x.json") == {"a": 1}  # reads pass
    g.delete(f"searches/{sid}/stage1/x.json")  # and so do deletions
    with pytest.raises(SearchConflict, match="was purged"):
        submit(tiny_spec, store, sid, owner="alice")


def test_a_unit_whose_worker_died_is_not_waited_for_and_sweep_finishes(store, tiny_spec) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    sid = submit(tiny_spec, store, "d", owner="alice")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.put_json(unit_state_key(sid, "stage1", WHOLE), {
        "state": "running", "generation": 0, "host": socket.gethostname(), "pid": dead.pid,
        "started": "2026-01-01T00:00:00.000+00:00"})
    store.put_json(unit_state_key(sid, "profile", "cpu"), {
        "state": "running", "generation": 0, "host": socket.gethostname(), "pid": os.getpid()})
    assert running_units(store, sid, stale_s=30) == ["profile/cpu"]  # this process lives
    result = purge_search(store, sid, by="test", wait_s=0.0)  # gives up at once
    assert result.unstopped == ("profile/cpu",) and store.list(f"searches/{sid}") == []
    store.put_json(f"searches/{sid}/stage1/late.json", {})  # a write that was on its way
    assert sweep(store, sid) == 1 and store.list(f"searches/{sid}") == []
    assert sweep(store, "never-purged") == 0
    assert store.get_json(purged_key(sid))["unstopped"] == ["profile/cpu"]
    assert unfinished(store, older_than_s=0) == []  # done: no longer marked


def test_a_purge_whose_caller_died_is_found_and_finished(store, tiny_spec) -> None:  # type: ignore[no-untyped-def]
    from hurricane.runs.purge import stop_and_wait

    sid = submit(tiny_spec, store, "half", owner="alice")
    stop_and_wait(store, sid, by="test", wait_s=0, poll_s=0.1, stale_s=30)  # then it died
    assert unfinished(store, older_than_s=3600) == []  # not yet: it may still be deleting
    assert unfinished(store, older_than_s=-1) == [sid]
    assert sweep(store, sid) > 0 and store.list(f"searches/{sid}") == []
    assert unfinished(store, older_than_s=-1) == [] and store.list("index/owners/alice") == []
