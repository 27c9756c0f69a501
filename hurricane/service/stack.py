"""`hurricane stack`: the service on this machine as processes (redis-server, the API under
uvicorn, a control worker with the reconciler's beat, a jobs worker), with pids, logs and
settings in a state directory, started and stopped cleanly."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hurricane.machine import pid_alive

DEFAULT_DIR = Path(os.environ.get("HURRICANE_STACK_DIR", "~/.local/state/hurricane/stack")).expanduser()


class StackError(RuntimeError):
    """The stack cannot start or is not running; the message says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


@dataclass
class StackConfig:
    """What `stack up` starts. ``redis_url`` given: use that Redis, start none."""

    state_dir: Path = DEFAULT_DIR
    host: str = "127.0.0.1"
    api_port: int = 8000
    redis_port: int = 6379
    redis_url: str | None = None
    store: str | None = None  # default: <state_dir>/store
    device_labels: tuple[str, ...] = ("cpu",)
    jobs_concurrency: int = 1  # jobs share this machine's cores: one at a time by default
    control_concurrency: int = 2
    api_workers: int = 1
    user: str = field(default_factory=lambda: _user_name())
    env: dict[str, str] = field(default_factory=dict)  # extra HURRICANE_* settings


def _user_name() -> str:
    name = re.sub(r"[^a-z0-9_.-]", "-", getpass.getuser().lower()).strip("-._") or "local"
    return name[:63]


class Stack:
    """The processes of one state directory (``stack.json`` records them)."""

    def __init__(self, state_dir: Path = DEFAULT_DIR) -> None:
        self.dir = Path(state_dir).expanduser().resolve()
        self.file = self.dir / "stack.json"

    # -- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.file.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def _save(self, st: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.file)

    @property
    def url(self) -> str | None:
        return self.state().get("url")

    def token(self) -> str | None:
        path = self.dir / "token"
        return path.read_text().strip() if path.is_file() else None

    def env(self) -> dict[str, str]:
        """The settings every process of the stack runs with (store, Redis, tokens, keys)."""
        path = self.dir / "env.json"
        return json.loads(path.read_text()) if path.is_file() else {}  # type: ignore[no-any-return]

    # -- processes ----------------------------------------------------------------------------

    def start(self, name: str, argv: list[str] | None = None) -> int:
        """Starts process ``name`` (its command from stack.json unless given) in a session of
        its own, output appended to logs/<name>.log."""
        st = self.state()
        procs = st.setdefault("processes", {})
        if argv is None:
            argv = procs[name]["argv"]
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env(), "PYTHONUNBUFFERED": "1"}
        offset = log.stat().st_size if log.is_file() else 0  # this start's lines begin here
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.dir,
                                    start_new_session=True)
        procs[name] = {"pid": proc.pid, "argv": argv, "log": str(log), "started": time.time(),
                       "log_offset": offset}
        self._save(st)
        return proc.pid

    def pid(self, name: str) -> int | None:
        p = self.state().get("processes", {}).get(name)
        return int(p["pid"]) if p else None

    def alive(self, name: str) -> bool:
        pid = self.pid(name)
        return pid is not None and pid_alive(pid)

    def signal(self, name: str, sig: int) -> None:
        """Signals the process's whole group (a worker and its pool children)."""
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def stop(self, name: str, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if it was running."""
        pid = self.pid(name)
        if pid is None or not pid_alive(pid):
            return False
        self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            self.signal(name, signal.SIGKILL)
            while pid_alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return True

    # -- the stack ----------------------------------------------------------------------------

    def up(self, cfg: StackConfig, *, timeout: float = 90.0) -> dict[str, Any]:
        """Starts every process and waits until the API is ready and the workers listen. When
        a stack runs from this directory and some of its members died, restarts those (with
        the commands they ran, ``cfg`` aside) and leaves the live ones running."""
        procs = self.state().get("processes") or {}
        dead = [n for n in procs if not self.alive(n)]
        if procs and not dead:
            raise StackError(f"a stack already runs from {self.dir}: `hurricane stack down` first")
        if procs and len(dead) < len(procs):
            return self.revive(dead, timeout=timeout)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        py = sys.executable
        redis_url = cfg.redis_url or f"redis://{cfg.host}:{cfg.redis_port}/0"
        store = cfg.store or str(self.dir / "store")
        tokens = self.dir / "tokens.yaml"
        token = self.token()
        if token is None or not tokens.is_file():
            from hurricane.service.tokens import add_token

            tokens.unlink(missing_ok=True)
            token = add_token(tokens, cfg.user, "admin")
            (self.dir / "token").write_text(token + "\n")
            (self.dir / "token").chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k.startswith("HURRICANE_")
               and k not in ("HURRICANE_SERVER", "HURRICANE_TOKEN", "HURRICANE_STACK_DIR")}
        env.update({"HURRICANE_STORE": store, "HURRICANE_REDIS_URL": redis_url,
                    "HURRICANE_TOKENS_FILE": str(tokens),
                    "HURRICANE_SIGNING_KEY": self.env().get("HURRICANE_SIGNING_KEY")
                    or secrets.token_hex(32), **cfg.env})
        (self.dir / "env.json").write_text(json.dumps(env, indent=2))
        (self.dir / "env.json").chmod(0o600)
        url = f"http://{cfg.host}:{cfg.api_port}"
        self._save({"url": url, "redis_url": redis_url, "store": store, "user": cfg.user,
                    "config": {k: str(v) if isinstance(v, Path) else v
                               for k, v in cfg.__dict__.items() if k != "env"},
                    "processes": {}})
        for port, what in ((cfg.api_port, "the API"),) + (
                () if cfg.redis_url else ((cfg.redis_port, "redis-server"),)):
            if port_open(cfg.host, port):
                raise StackError(f"port {port} for {what} is taken; choose another "
                                 "(--api-port/--redis-port)")
        try:
            if not cfg.redis_url:
                exe = shutil.which("redis-server")
                if exe is None:
                    raise StackError("redis-server is not installed: `apt-get install -y "
                                     "redis-server` (the README's set-up command does it)")
                (self.dir / "redis").mkdir(exist_ok=True)
                self.start("redis", [exe, "--bind", cfg.host, "--port", str(cfg.redis_port),
                                     "--save", "", "--appendonly", "no",
                                     "--dir", str(self.dir / "redis")])
                self._wait(lambda: port_open(cfg.host, cfg.redis_port), "redis", timeout)
            tag = f"{os.getpid()}{secrets.token_hex(2)}"
            celery = [py, "-m", "celery", "-A", "hurricane.workers.app", "worker",
                      "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
            self.start("control", [*celery, "-Q", "control", "-c", str(cfg.control_concurrency),
                                   "-n", f"control-{tag}@%h", "-B",
                                   "-s", str(self.dir / "beat-schedule")])
            queues = ",".join(["train", *(f"profile.{lb}" for lb in cfg.device_labels)])
            self.start("jobs", [*celery, "-Q", queues, "-c", str(cfg.jobs_concurrency),
                                "-n", f"jobs-{tag}@%h"])
            self.start("api", [py, "-m", "uvicorn", "hurricane.api.app:app", "--host", cfg.host,
                               "--port", str(cfg.api_port), "--workers", str(cfg.api_workers),
                               "--no-access-log", "--log-level", "warning"])
            self.wait_ready(timeout)
        except BaseException:
            self.down()
            raise
        return self.state()

    def revive(self, names: list[str], *, timeout: float = 90.0) -> dict[str, Any]:
        """Restarts the members ``names`` (dead ones), in start order, after what is left of
        each (its pool children, in its process group) is gone; the others keep running.
        Returns the state with ``restarted`` and ``kept``."""
        st = self.state()
        procs = st.get("processes", {})
        kept = [n for n in procs if n not in names]
        order: list[str] = [n for n in ("redis", "control", "jobs", "api") if n in names]
        order += [n for n in names if n not in order]
        cfg = st.get("config", {})
        for name in order:
            old = self.pid(name)
            if old is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(old, signal.SIGKILL)  # the dead leader's group: orphans only
                self._wait(lambda o=old: not group_alive(o), f"{name}'s old processes", timeout)  # type: ignore[misc]
            self.start(name)
            if name == "redis":
                host, port = cfg.get("host", "127.0.0.1"), int(cfg.get("redis_port", 6379))
                self._wait(lambda h=host, p=port: port_open(h, p), "redis", timeout)  # type: ignore[misc]
        for name in order:
            if name == "api":
                self._wait(self.api_ready, "api", timeout)
            elif name in ("control", "jobs"):
                self._wait(lambda n=name: self.worker_ready(n), name, timeout)  # type: ignore[misc]
        return {**self.state(), "restarted": order, "kept": kept}

    def worker_ready(self, name: str, since: float | None = None) -> bool:
        """The worker's log says it is ready (after ``since``, a log offset; default: where
        its latest start began)."""
        p = self.state().get("processes", {}).get(name)
        if not p:
            return False
        start = int(p.get("log_offset", 0) if since is None else since)
        with contextlib.suppress(OSError), open(p["log"], "rb") as f:
            f.seek(start)
            return b" ready." in f.read()
        return False

    def wait_ready(self, timeout: float = 90.0) -> None:
        st = self.state()
        self._wait(lambda: self.api_ready(), "api", timeout)
        for name in ("control", "jobs"):
            if name in st.get("processes", {}):
                self._wait(lambda n=name: self.worker_ready(n), name, timeout)  # type: ignore[misc]

    def api_ready(self) -> bool:
        url = self.url
        if not url:
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait(self, ok: Any, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if name in self.state().get("processes", {}) and not self.alive(name):
                log = self.state()["processes"][name]["log"]
                tail = Path(log).read_text(errors="replace")[-1500:] if Path(log).is_file() else ""
                raise StackError(f"{name} exited while starting; its log ({log}) ends:\n{tail}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} is not ready after {timeout:.0f} s; see "
                                 f"{self.dir / 'logs' / (name + '.log')}")
            time.sleep(0.2)

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stops the API, the workers, then Redis; returns the names it stopped."""
        stopped = []
        for name in ("api", "control", "jobs", "redis"):
            if self.stop(name, timeout):
                stopped.append(name)
        st = self.state()
        if st:
            st["processes"] = {}
            self._save(st)
        return stopped

    def status(self) -> dict[str, Any]:
        """Pids and liveness of every member; ready only while every member lives and the
        API answers /readyz (``dead`` names the others: `stack up` restarts them)."""
        st = self.state()
        procs = {n: {"pid": p["pid"], "alive": pid_alive(int(p["pid"])), "log": p["log"]}
                 for n, p in st.get("processes", {}).items()}
        dead = [n for n, p in procs.items() if not p["alive"]]
        return {"dir": str(self.dir), "url": st.get("url"), "store": st.get("store"),
                "redis_url": st.get("redis_url"), "processes": procs, "dead": dead,
                "ready": bool(procs) and not dead and self.api_ready()}


def group_alive(pgid: int) -> bool:
    """A process of group ``pgid`` runs (zombies, which nobody may have reaped, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (d / "stat").read_text().rsplit(") ", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                return True
    return False
