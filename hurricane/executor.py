"""Executors run a step's heavy job: in this process, as a local process, or (later) as a pod.

A job is named deterministically (``<search-id>-<step>``) and is fully described by its
command and environment, the same ones a Kubernetes pod would get, so the local process
executor runs exactly what the cluster runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from hurricane import progress
from hurricane.registry import Registry

PROGRESS_ENV = "HURRICANE_PROGRESS"
PROGRESS_PREFIX = "@@hurricane-progress "


@dataclass(frozen=True)
class JobSpec:
    """A unit of work that a pod (or a local process) runs: one step of one search."""

    search_id: str
    step: str
    store_url: str
    device: str | None = None
    nprocs: int = 1
    node_label: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "-".join(p for p in (self.search_id, self.step, self.device) if p)

    def command(self) -> list[str]:
        cmd = ["python", "-m", "hurricane", "job", self.step, "--search", self.search_id,
               "--store", self.store_url]
        return [*cmd, "--device", self.device] if self.device else cmd


class JobFailed(RuntimeError):
    """A job exited unsuccessfully; the message carries the tail of its log."""


class Executor(Protocol):
    name: str

    def run(self, job: JobSpec) -> None: ...


class InlineExecutor:
    """Runs the job's function in this process (tests, and inside a pod)."""

    name = "inline"

    def run(self, job: JobSpec) -> None:
        from hurricane.pipeline import run_job
        from hurricane.store import open_store

        run_job(job.step, job.search_id, open_store(job.store_url), device=job.device)


class _ProgressRelay:
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


class ProcessExecutor:
    """Runs the job's command as a local process (``torchrun`` when it asks for several)."""

    name = "process"

    def __init__(self, *, python: str | None = None, echo: bool = True) -> None:
        self.python = python or sys.executable
        self.echo = echo

    def argv(self, job: JobSpec) -> list[str]:
        cmd = job.command()
        if job.nprocs > 1:
            return [self.python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={job.nprocs}", "-m", *cmd[2:]]
        return [self.python, *cmd[1:]]

    def run(self, job: JobSpec) -> None:
        env = {**os.environ, **job.env, PROGRESS_ENV: "jsonl", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(self.argv(job), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, text=True, bufsize=1)
        tail: deque[str] = deque(maxlen=40)
        relay = _ProgressRelay(progress.reporter())

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(PROGRESS_PREFIX):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        relay.handle(json.loads(line[len(PROGRESS_PREFIX):]))
                    continue
                tail.append(line)
                if self.echo:
                    sys.stderr.write(line)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        code = proc.wait()
        t.join()
        relay.close()
        if code != 0:
            raise JobFailed(f"job {job.name} exited with code {code}; last output:\n"
                            + "".join(tail))


EXECUTORS: Registry[type] = Registry("executor")
EXECUTORS.register("inline", InlineExecutor)
EXECUTORS.register("process", ProcessExecutor)


def create_executor(name: str) -> Executor:
    return EXECUTORS.get(name)()  # type: ignore[no-any-return]
