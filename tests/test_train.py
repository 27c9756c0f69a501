"""Training: exact resume from checkpoints, atomic checkpoint files, SPOS param groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer, Preempted, TrainConfig, param_groups, train
from hurricane.runs.steps import data_of, layout_of, path_sampler, pool_space


def _run(spec, store, prefix, *, stop_after=None, forward=None):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = Supernet(layout_of(spec), pool_space(spec))
    cfg = TrainConfig(iterations=10, batch_size=16, lr=0.1, checkpoint_every=3, seed=spec.seed,
                      threads=1)
    ckpt = Checkpointer(store, prefix, keep=2)
    res = train(net, data_of(spec).train, cfg,
                forward=forward or path_sampler(pool_space(spec), spec.seed),
                checkpointer=ckpt, stop_after=stop_after)
    return net, res, ckpt


def test_sigterm_stops_after_the_step_at_a_checkpoint_and_resumes_exactly(tiny_spec, store) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM (Kueue's eviction, a drain, a cancel) during step 5: that step finishes, a
    checkpoint of step 5 is written (not only the periodic one of step 3), Preempted is raised;
    a new run continues from step 5 to the same weights as a straight run. The handler is gone
    afterwards."""
    straight, _, _ = _run(tiny_spec, store, "s")
    sample = path_sampler(pool_space(tiny_spec), tiny_spec.seed)

    def forward(m, x, step):  # type: ignore[no-untyped-def]
        if step == 4:  # the fifth step
            os.kill(os.getpid(), signal.SIGTERM)
        return sample(m, x, step)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted) as err:
        _run(tiny_spec, store, "p", forward=forward)
    assert err.value.step == 5 and signal.getsignal(signal.SIGTERM) is before
    _, _, ckpt = _run(tiny_spec, store, "p", stop_after=0)
    assert ckpt.steps() == [3, 5]
    resumed, res, _ = _run(tiny_spec, store, "p")
    assert res.resumed_from == 5 and res.steps == 10
    a, b = straight.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_sigtermed_job_process_ends_by_the_signal_after_its_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`hurricane job stage1` SIGTERMed mid-training exits the way SIGTERM ends a process
    (callers treat it as a disruption, never as a failed job), after the checkpoint of the step
    it was in. The training holds before step 40 until the signal comes (tests/pod_gate), so
    the signal lands mid-training on any machine."""
    from hurricane.runs.executor import InlineExecutor
    from hurricane.runs.pipeline import run_step
    from hurricane.runs.records import submit
    from hurricane.spec import SearchSpec
    from hurricane.storage.store import LocalStore
    from tests.conftest import tiny_spec_dict
    from tests.servers import wait_for

    store = LocalStore(tmp_path / "runs")
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"recipe": "spos", "iterations": 3000, "checkpoint_every": 100_000}))
    sid = submit(spec, store, "term")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    gate = tmp_path / "gate"
    gate.mkdir()
    gate_path = Path(__file__).parent / "pod_gate"
    env = {**os.environ, "HURRICANE_PROGRESS": "jsonl", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(gate_path), os.environ.get("PYTHONPATH", "")]),
           "HURRICANE_TEST_HOLD_AT": "40", "HURRICANE_TEST_HOLD_DIR": str(gate)}
    out = tmp_path / "job.log"
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "hurricane", "job", "stage1", "--search",
                                 sid, "--store", store.url], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: list(gate.glob("reached-*")) or proc.poll() is not None, 600,
                     "the training's hold at step 40")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    rest = out.read_text()
    assert proc.returncode == -signal.SIGTERM, rest[-2000:]
    stopped = int(rest.split("stopped after step ")[1].split()[0])
    assert stopped == 41  # the held step ends, checkpoints, and the process exits
    ckpts = store.list(f"searches/{sid}/stage1/ckpt")
    assert ckpts[-1].endswith(f"ckpt-{stopped:09d}.pt")


def test_resume_gives_bitwise_identical_weights(tiny_spec, store) -> None:
    straight, res, _ = _run(tiny_spec, store, "a")
    assert res.steps == 10 and res.resumed_from == 0
    _, part, ckpt = _run(tiny_spec, store, "b", stop_after=4)
    assert part.steps == 4 and ckpt.steps() == [3, 4]
    resumed, res2, _ = _run(tiny_spec, store, "b")  # a new process would do exactly this
    assert res2.resumed_from == 4 and res2.steps == 10
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoints_are_pruned_and_leave_no_temp_files(tiny_spec, store) -> None:
    _run(tiny_spec, store, "c")
    names = [k.rsplit("/", 1)[-1] for k in store.list("c")]
    assert names == ["ckpt-000000009.pt", "ckpt-000000010.pt"]
    assert not [p for p in store.root.rglob("*.tmp")]


def test_no_weight_decay_on_bn_and_bias() -> None:
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                            torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(m, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert {p.ndim for p in no_decay["params"]} == {1}
