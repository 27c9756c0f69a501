"""`hurricane stack up|status|down` as a user runs it: real processes started, found by the
client commands without flags, and stopped cleanly; a second `up` refuses to start twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hurricane.machine import pid_alive
from hurricane.service.stack import Stack
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def hurricane(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hurricane", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


def test_stack_up_status_client_and_down(tmp_path: Path) -> None:
    d = tmp_path / "stack"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HURRICANE_")},
           "HURRICANE_STACK_DIR": str(d)}
    api, rport = str(free_port()), str(free_port())
    up = hurricane("stack", "up", "--api-port", api, "--redis-port", rport, env=env)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        assert f"http://127.0.0.1:{api}" in up.stdout and "token" in up.stdout
        status = json.loads(hurricane("stack", "status", env=env).stdout)
        assert status["ready"] and set(status["processes"]) == {"redis", "control", "jobs", "api"}
        assert all(p["alive"] for p in status["processes"].values())
        token = (d / "token").read_text().strip()
        assert token not in "".join(p.read_text() for p in (d / "logs").iterdir())  # never logged
        listing = hurricane("searches", env=env)  # finds the local stack and its token
        assert listing.returncode == 0 and listing.stdout.startswith("search")
        again = hurricane("stack", "up", "--api-port", api, "--redis-port", rport, env=env)
        assert again.returncode == 1 and "already runs" in again.stderr
        pids = [p["pid"] for p in status["processes"].values()]
    finally:
        down = hurricane("stack", "down", env=env)
    assert down.returncode == 0 and "api" in down.stdout and "redis" in down.stdout
    assert not any(pid_alive(p) for p in pids)
    assert hurricane("stack", "status", env=env).returncode == 1
    assert not Stack(d).state()["processes"]
    r = hurricane("searches", env=env)
    assert r.returncode == 2 and "hurricane stack up" in r.stderr


def test_stack_up_restarts_a_killed_member_and_keeps_the_live_ones(tmp_path: Path) -> None:
    """Issue 24: after a SIGKILL of the jobs worker, status says not ready (and which member
    died) and `stack up` restarts that member only, leaving nothing of the old one behind."""
    import signal

    from hurricane.service.stack import group_alive
    from tests.servers import wait_for

    d = tmp_path / "stack"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HURRICANE_")},
           "HURRICANE_STACK_DIR": str(d)}
    api, rport = str(free_port()), str(free_port())
    up = hurricane("stack", "up", "--api-port", api, "--redis-port", rport, env=env)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        before = json.loads(hurricane("stack", "status", env=env).stdout)
        pids = {n: p["pid"] for n, p in before["processes"].items()}
        assert before["ready"] and before["dead"] == []
        os.kill(pids["jobs"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(pids["jobs"]), 60, "the killed worker to be gone")
        st = hurricane("stack", "status", env=env)
        status = json.loads(st.stdout)
        assert st.returncode == 1 and status["ready"] is False and status["dead"] == ["jobs"]
        assert status["processes"]["jobs"]["alive"] is False and "jobs died" in st.stderr
        assert all(status["processes"][n]["alive"] for n in ("redis", "control", "api"))
        again = hurricane("stack", "up", "--api-port", api, "--redis-port", rport, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "restarted jobs" in again.stdout and "kept running: " in again.stdout
        after = json.loads(hurricane("stack", "status", env=env).stdout)
        assert after["ready"] and after["dead"] == []
        new = {n: p["pid"] for n, p in after["processes"].items()}
        assert new["jobs"] != pids["jobs"] and pid_alive(new["jobs"])
        assert {n: new[n] for n in ("redis", "control", "api")} == {
            n: pids[n] for n in ("redis", "control", "api")}  # the live ones kept running
        assert not group_alive(pids["jobs"])  # the old worker's pool children went with it
        # the restarted worker said ready after its own start, not the old one's log line
        log = (d / "logs" / "jobs.log").read_bytes()
        assert log.count(b" ready.") >= 2
        # every member alive again: a third `up` refuses, as before
        third = hurricane("stack", "up", "--api-port", api, "--redis-port", rport, env=env)
        assert third.returncode == 1 and "already runs" in third.stderr
        all_pids = [*pids.values(), new["jobs"]]
    finally:
        down = hurricane("stack", "down", env=env)
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in all_pids)
