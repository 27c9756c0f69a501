"""Executors run a step's heavy job: in this process, or as a local process (the same command
and environment a Kubernetes pod gets), so the local process executor runs what the cluster
runs; the Kubernetes executor (hurricane.operator.executor) is registered here by name and
loaded when created. All share :class:`BaseExecutor`: the cancel check, the relay of a job's
log and progress lines, and cleaning up after a purge. The process executor starts a job at
most once at a time (a lease in the store: a second caller adopts the running job), stops it
on cancellation and maps its exit code onto retryable or final failures."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from hurricane import progress
from hurricane.registry import Registry
from hurricane.runs.contract import (
    EXIT_INVALID,
    EXIT_TRANSIENT,
    Executor,
    JobCancelled,
    JobFailed,
    JobInvalid,
    JobSpec,
    JobTransient,
)
from hurricane.runs.leases import Lease, LeaseView, acquire, newest
from hurricane.runs.records import guarded
from hurricane.runs.unitlog import UnitLog
from hurricane.storage.store import ArtifactStore
from hurricane.storage.stores import open_store

PROGRESS_ENV = "HURRICANE_PROGRESS"
PROGRESS_PREFIX = "@@hurricane-progress "
log = logging.getLogger("hurricane.executor")

__all__ = ["EXECUTORS", "BaseExecutor", "Executor", "InlineExecutor", "JobCancelled", "JobFailed",
           "JobSpec", "ProcessExecutor", "create_executor"]


class BaseExecutor:
    """What every executor shares: its name, whether the search was cancelled (``cancelled``,
    a callable; an unreachable store is not a cancellation), the relay of a job's output
    (progress lines back into this process's bars, the rest into the failure's tail and,
    with ``echo``, onto stderr) and cleanup after a purge (nothing, unless the executor
    leaves objects outside the store)."""

    name: str = "executor"

    def __init__(self, *, cancelled: Callable[[], bool] | None = None, echo: bool = False,
                 poll_s: float | None = None) -> None:
        self.cancelled = cancelled
        self.echo = echo
        self.poll_s = poll_s

    def run(self, job: JobSpec) -> None:
        raise NotImplementedError

    def _is_cancelled(self) -> bool:
        if self.cancelled is None:
            return False
        try:
            return self.cancelled()
        except Exception:  # an unreachable store is not a cancellation
            return False

    def relay_line(self, line: str, relay: ProgressRelay, tail: deque[str],
                   unit_log: UnitLog | None = None) -> None:
        """One line of the job's output (with its newline); ``unit_log`` keeps it for the
        API's log route (progress lines reach it through the relay's reporter)."""
        if line.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                relay.handle(json.loads(line[len(PROGRESS_PREFIX):]))
            return
        tail.append(line)
        if unit_log is not None:
            unit_log.line(line)
        if self.echo:
            sys.stderr.write(line)

    def delete_search(self, search_id: str) -> None:
        """Removes what the search's jobs left outside the store (after a purge)."""


class InlineExecutor(BaseExecutor):
    """Runs the job's function in this process (tests, and inside a pod). With ``cancelled``
    the job stops at its next progress step once that says so (JobCancelled), checked at most
    every ``poll_s``; its writes go through the search's guard (none once it is purged)."""

    name = "inline"

    def __init__(self, *, cancelled: Callable[[], bool] | None = None,
                 poll_s: float | None = None) -> None:
        super().__init__(cancelled=cancelled, poll_s=poll_s)

    def run(self, job: JobSpec) -> None:
        from hurricane.runs.jobs import run_job

        store = guarded(open_store(job.store_url), job.search_id)
        if self.cancelled is None:
            run_job(job.step, job.search_id, store, device=job.device)
            return
        if self.poll_s is None:
            from hurricane.settings import get_settings

            self.poll_s = get_settings().cancel_poll_s
        check = _CancelCheck(progress.reporter(), self.cancelled, self.poll_s,
                             f"job {job.name} stopped: the search was cancelled")
        check.check()
        with progress.use_reporter(check):
            run_job(job.step, job.search_id, store, device=job.device)


class _CancelCheck:
    """A reporter that passes everything on to ``inner`` and raises JobCancelled from a
    progress step once ``cancelled()`` says so (asked at most every ``every_s``): how a job
    running in this process is stopped, since no signal can reach it alone."""

    def __init__(self, inner: progress.Reporter, cancelled: Callable[[], bool], every_s: float,
                 why: str) -> None:
        self.inner, self.cancelled, self.every_s, self.why = inner, cancelled, every_s, why
        self.last = time.monotonic()

    def check(self) -> None:
        self.last = time.monotonic()
        try:
            stop = self.cancelled()
        except Exception:  # an unreachable store is not a cancellation
            return
        if stop:
            raise JobCancelled(self.why)

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[progress.Task]:
        outer = self
        with self.inner.task(description, total, completed) as t:

            class _T:
                def advance(self, n: int = 1, **metrics: Any) -> None:
                    t.advance(n, **metrics)
                    if time.monotonic() - outer.last >= outer.every_s:
                        outer.check()

            yield _T()

    def message(self, text: str) -> None:
        self.inner.message(text)


class ProgressRelay:
    """Turns a child's progress lines back into bars of this process's reporter."""

    def __init__(self, reporter: progress.Reporter) -> None:
        self.reporter = reporter  # captured by the caller: context variables stay in their thread
        self.stack: list[tuple[contextlib.AbstractContextManager[progress.Task], progress.Task]] = []

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            cm = self.reporter.task(str(event["description"]), int(event["total"]),
                                    int(event.get("completed", 0)))
            self.stack.append((cm, cm.__enter__()))
        elif kind == "advance" and self.stack:
            self.stack[-1][1].advance(int(event.get("n", 1)), **(event.get("metrics") or {}))
        elif kind == "end" and self.stack:
            self.stack.pop()[0].__exit__(None, None, None)
        elif kind == "message":
            self.reporter.message(str(event.get("text", "")))

    def close(self) -> None:
        while self.stack:
            self.stack.pop()[0].__exit__(None, None, None)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies (a killed
    worker must not leave its job running unwatched; torchrun forwards SIGTERM to its ranks)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _classify(job: JobSpec, code: int, tail: str) -> JobFailed:
    if code == EXIT_INVALID:
        return JobInvalid(f"job {job.name} refused its input (exit code {code}):\n{tail}")
    if code == EXIT_TRANSIENT:
        return JobTransient(f"job {job.name} lost the object store (exit code {code}):\n{tail}")
    if code < 0:
        return JobTransient(f"job {job.name} was killed by signal {-code}; last output:\n{tail}")
    return JobFailed(f"job {job.name} exited with code {code}; last output:\n{tail}")


class ProcessExecutor(BaseExecutor):
    """Runs the job's command as a local process (``torchrun`` when it asks for several)."""

    name = "process"
    poll_s: float

    def __init__(self, *, python: str | None = None, echo: bool = True,
                 cancelled: Callable[[], bool] | None = None, leases: bool = True,
                 heartbeat_s: float | None = None, stale_s: float | None = None,
                 poll_s: float | None = None, grace_s: float | None = None) -> None:
        from hurricane.settings import get_settings

        s = get_settings()
        super().__init__(cancelled=cancelled, echo=echo, poll_s=poll_s or s.cancel_poll_s)
        self.python = python or sys.executable
        self.leases = leases
        self.heartbeat_s = heartbeat_s or s.job_heartbeat_s
        self.stale_s = stale_s or s.job_stale_s
        self.grace_s = s.cancel_grace_s if grace_s is None else grace_s

    def argv(self, job: JobSpec) -> list[str]:
        cmd = job.command()
        if job.nodes > 1:
            raise JobInvalid(f"job {job.name}: training.nodes = {job.nodes}, but local processes "
                             "run on one node (use the kubernetes executor, or nodes: 1)")
        if job.nprocs > 1:
            return [self.python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={job.nprocs}", f"--max-restarts={job.max_restarts}",
                    "-m", *cmd[2:]]
        return [self.python, *cmd[1:]]

    def run(self, job: JobSpec) -> None:
        self.argv(job)  # refuses what cannot run here before taking the job's lease
        if not self.leases:
            self._spawn(job, None)
            return
        # a purged search's lease is neither taken nor written (SearchPurged)
        store = guarded(open_store(job.store_url), job.search_id)
        while True:
            held = acquire(store, job.search_id, job.name, heartbeat_s=self.heartbeat_s,
                           stale_s=self.stale_s)
            if isinstance(held, Lease):
                self._spawn(job, held, store)
                return
            if self._adopt(job, held):
                return
            # the adopted job's holder died: take the lease over (loop)

    def _adopt(self, job: JobSpec, lease: LeaseView) -> bool:
        """Waits for a job another caller runs; True when it succeeded, False when its holder
        died (the caller takes over), raising when it failed or the search was cancelled."""
        store = guarded(open_store(job.store_url), job.search_id)
        progress.message(f"job {job.name} already runs on {lease.doc.get('host')} "
                         f"(lease {lease.number}): waiting for it")
        log.info("adopting job %s (lease %d held by %s on %s)", job.name, lease.number,
                 lease.doc.get("holder"), lease.doc.get("host"))
        while True:
            if self._is_cancelled():
                raise JobCancelled(f"job {job.name}: search cancelled while waiting for it")
            time.sleep(min(self.poll_s, self.heartbeat_s))
            cur = newest(store, job.search_id, job.name) or lease
            if cur.state == "succeeded":
                return True
            if cur.state == "cancelled":
                raise JobCancelled(f"job {job.name} was cancelled")
            if cur.state == "failed":
                raise _classify(job, int(cur.doc.get("exit_code", 1)), cur.doc.get("tail", ""))
            if not cur.live(self.stale_s):
                log.warning("job %s: lease %d went stale (%.0f s without heartbeat): taking over",
                            job.name, cur.number, cur.age_s())
                return False

    def _spawn(self, job: JobSpec, lease: Lease | None, store: ArtifactStore | None = None) -> None:
        env = {**os.environ, **job.env, PROGRESS_ENV: "jsonl", "PYTHONUNBUFFERED": "1"}
        unit_log = UnitLog(store or (lambda: open_store(job.store_url)), job.search_id, job.name,
                           every_s=self.heartbeat_s)
        proc = subprocess.Popen(self.argv(job), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, text=True, bufsize=1, start_new_session=True,
                                preexec_fn=_die_with_parent)
        if lease is not None:
            with contextlib.suppress(Exception):
                lease.update(pid=proc.pid)
        tail: deque[str] = deque(maxlen=40)
        relay = ProgressRelay(unit_log.tee(progress.reporter()))
        unit_log.start()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.relay_line(line, relay, tail, unit_log)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        cancelled = False
        code = -int(signal.SIGTERM)  # until the process's own exit code is known
        try:
            while True:
                try:
                    code = proc.wait(timeout=self.poll_s)
                    break
                except subprocess.TimeoutExpired:
                    if self._is_cancelled():
                        cancelled = True
                        code = self._stop(proc)
                        break
                    if lease is not None and lease.lost.is_set():
                        self._stop(proc)
                        raise JobTransient(f"job {job.name}: another worker took its lease "
                                           "over (heartbeats did not reach the store): stopped "
                                           "this copy") from None
        except BaseException:
            code = self._stop(proc)  # the caller is going away (KeyboardInterrupt, time limit)
            if lease is not None:
                with contextlib.suppress(Exception):
                    lease.release("failed", exit_code=-int(signal.SIGTERM), tail="caller stopped")
            raise
        finally:
            t.join(timeout=5)
            relay.close()
            unit_log.close("cancelled" if cancelled else "succeeded" if code == 0 else "failed",
                           exit_code=code, write=lease is None or not lease.lost.is_set())
        text = "".join(tail)
        if cancelled:
            if lease is not None:
                lease.release("cancelled", exit_code=code)
            raise JobCancelled(f"job {job.name} stopped: the search was cancelled")
        if lease is not None:
            lease.release("succeeded" if code == 0 else "failed", exit_code=code,
                          tail=text[-4000:])
        if code != 0:
            raise _classify(job, code, text)

    def _stop(self, proc: subprocess.Popen[str]) -> int:
        """SIGTERM to the job's process group, SIGKILL after the grace period."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()


EXECUTORS: Registry[type[BaseExecutor] | str] = Registry("executor")
"""Executor classes by name; a ``"module:Class"`` entry is imported when first created (the
library never imports the service components: hurricane.operator registers by path)."""
EXECUTORS.register("inline", InlineExecutor)
EXECUTORS.register("process", ProcessExecutor)
EXECUTORS.register("kubernetes", "hurricane.operator.executor:KubernetesExecutor")


def executor_class(name: str) -> type[BaseExecutor]:
    entry = EXECUTORS.get(name)
    if isinstance(entry, str):
        from hurricane.runs.contract import resolve

        cls = resolve(entry)
        if not (isinstance(cls, type) and issubclass(cls, BaseExecutor)):
            raise TypeError(f"executor {name!r}: {entry} is not a BaseExecutor")
        return cls
    return entry


def create_executor(name: str, **options: Any) -> BaseExecutor:
    """The executor ``name`` (``hurricane executors``: inline, process, kubernetes) with
    ``options`` (keyword arguments of its class)."""
    return executor_class(name)(**options)
