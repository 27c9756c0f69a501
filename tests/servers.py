"""Real server processes for tests: free ports, waiting for a port, and an S3-protocol server (moto)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Return once ``host:port`` accepts a TCP connection; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from e
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM (after SIGCONT: a paused process cannot act on it), SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def wait_for(cond: Callable[[], Any], timeout: float, what: str = "the condition") -> Any:
    """Polls ``cond`` until it returns something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


class MotoServer:
    """``moto_server`` (an S3-protocol server) on a free loopback port, as a context manager.

    ``pause``/``resume`` freeze the process (SIGSTOP/SIGCONT): the kernel still accepts connections,
    but nothing answers, which is what a hung or partitioned object store looks like to a client.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, start_timeout: float = 30.0,
                 log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the moto server is not running")
        return self._proc.pid

    def start(self) -> MotoServer:
        exe = Path(sys.executable).parent / "moto_server"
        if not exe.exists():
            raise FileNotFoundError(f"{exe} not found: install moto[server] into this environment")
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            # tests/s3_atomic: conditional PUTs atomic, as on S3 and MinIO (its docstring)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).parent / "s3_atomic"), os.environ.get("PYTHONPATH", "")])}
            self._proc = subprocess.Popen([str(exe), "-H", self.host, "-p", str(self.port)],
                                          stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env)
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        try:
            self._wait_http()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_http(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        wait_for_port(self.host, self.port, self.start_timeout)
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode} while starting")
            try:
                # moto's own API answers without credentials once the application is loaded
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered HTTP, whatever the status
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto_server on {self.endpoint} does not answer HTTP") from e
                time.sleep(0.1)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RedisServer:
    """``redis-server`` (the OS package) on a free loopback port, no persistence; with
    ``password``, clients must AUTH (requirepass)."""

    def __init__(self, *, port: int | None = None, log: Path | None = None,
                 password: str | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.password = password
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import shutil

        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed: apt-get install -y redis-server")
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no",
                 *(("--requirepass", self.password) if self.password else ())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        wait_for_port("127.0.0.1", self.port, 120)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServiceStack:
    """The whole service as real processes on free loopback ports: moto_server (S3, with a
    versioned bucket so that every write of an object can be counted), and `hurricane stack`
    (redis-server, the API under uvicorn, a control worker with the reconciler's beat, a
    jobs worker) storing to ``s3://<bucket>/runs``."""

    BUCKET = "hurricane-e2e"
    ACCESS, SECRET = "testing-key", "testing-secret-x"

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = env
        self.moto = MotoServer(log=root / "moto.log")

    def __enter__(self) -> ServiceStack:
        from minio import Minio
        from minio.versioningconfig import ENABLED, VersioningConfig

        from hurricane.service.stack import Stack, StackConfig

        self.root.mkdir(parents=True, exist_ok=True)
        self.moto.start()
        self.minio = Minio(self.moto.endpoint.removeprefix("http://"), access_key=self.ACCESS,
                           secret_key=self.SECRET, secure=False, region="us-east-1")
        self.minio.make_bucket(self.BUCKET)
        self.minio.set_bucket_versioning(self.BUCKET, VersioningConfig(ENABLED))
        settings = {
            "HURRICANE_S3_ENDPOINT": self.moto.endpoint, "HURRICANE_S3_ACCESS_KEY": self.ACCESS,
            "HURRICANE_S3_SECRET_KEY": self.SECRET, "HURRICANE_S3_TIMEOUT_S": "5",
            "HURRICANE_STORE_RETRY_S": "120", "HURRICANE_JOB_HEARTBEAT_S": "1",
            "HURRICANE_RECONCILE_INTERVAL_S": "2", "HURRICANE_CANCEL_POLL_S": "0.5",
            "HURRICANE_CANCEL_GRACE_S": "3", **self.env}
        self.stack = Stack(self.root / "stack")
        try:
            self.stack.up(StackConfig(state_dir=self.stack.dir, api_port=free_port(),
                                      redis_port=free_port(), store=f"s3://{self.BUCKET}/runs",
                                      env=settings), timeout=120)
        except BaseException:
            self.moto.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stack.down(timeout=10)
        finally:
            self.moto.stop()

    @property
    def url(self) -> str:
        return str(self.stack.url)

    @property
    def token(self) -> str:
        return str(self.stack.token())

    def client(self):  # type: ignore[no-untyped-def]
        from hurricane.service.client import Client

        return Client(self.url, self.token)

    def store(self):  # type: ignore[no-untyped-def]
        from hurricane.storage.s3store import S3Store

        return S3Store(endpoint=self.moto.endpoint, access_key=self.ACCESS, secret_key=self.SECRET,
                       bucket=self.BUCKET, prefix="runs", region="us-east-1", timeout_s=5,
                       retry_s=120)

    def versions(self, search_id: str, suffix: str = "/result.json") -> dict[str, int]:
        """How many times each object of the search ending in ``suffix`` was written."""
        out: dict[str, int] = {}
        for obj in self.minio.list_objects(self.BUCKET, prefix=f"runs/searches/{search_id}/",
                                           recursive=True, include_version=True):
            if obj.object_name.endswith(suffix) and not obj.is_delete_marker:
                out[obj.object_name] = out.get(obj.object_name, 0) + 1
        return out

    def wait(self, search_id: str, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 300.0, *, until: object = None) -> dict[str, object]:
        """Polls the API until the search is in one of ``states`` (or ``until(view)``)."""
        from hurricane.service.client import ApiError

        c = self.client()
        deadline = time.monotonic() + timeout
        view: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                view = c.get(search_id)
            except ApiError:
                time.sleep(0.5)  # the API is being restarted
                continue
            if view["state"] in states or (callable(until) and until(view)):
                return view
            time.sleep(0.5)
        raise TimeoutError(f"search {search_id} is {view.get('state')} after {timeout:.0f} s: "
                           f"{json.dumps(view.get('steps'), default=str)[:2000]}")


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Runs ``fn(*args)`` in a daemon thread; the dict gets its ``result`` or its ``error``."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn(*args)
        except BaseException as err:
            out["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out
