"""`hurricane stack up|status|down` as a user runs it: real processes started, found by the
client commands without flags, and stopped cleanly; a second `up` refuses to start twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hurricane.machine import pid_alive
from hurricane.stack import Stack
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def hurricane(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hurricane", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=180)


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
