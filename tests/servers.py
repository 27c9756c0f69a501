"""Real server processes for tests: free ports, waiting for a port, and an S3-protocol server (moto)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


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
            self._proc = subprocess.Popen([str(exe), "-H", self.host, "-p", str(self.port)],
                                          stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
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
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RedisServer:
    """``redis-server`` (the OS package) on a free loopback port, no persistence."""

    def __init__(self, *, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.log = log
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
                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        wait_for_port("127.0.0.1", self.port, 20)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
