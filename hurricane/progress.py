"""Progress reporting for long steps: a context-local reporter the CLI (or a worker) installs."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

log = logging.getLogger("hurricane")


class Task(Protocol):
    def advance(self, n: int = 1, **metrics: Any) -> None: ...


class Reporter(Protocol):
    def task(
        self, description: str, total: int, completed: int = 0
    ) -> contextlib.AbstractContextManager[Task]: ...

    def message(self, text: str) -> None: ...


class _LogTask:
    def __init__(self, description: str, total: int, completed: int, every: float) -> None:
        self.description, self.total, self.done = description, total, completed
        self.every, self.last = every, time.monotonic()

    def advance(self, n: int = 1, **metrics: Any) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in metrics.items())
            log.info("%s %d/%d %s", self.description, self.done, self.total, extra)


class LogReporter:
    """Plain log lines (workers, pods, non-interactive runs)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Task]:
        yield _LogTask(description, total, completed, self.every_s)

    def message(self, text: str) -> None:
        log.info("%s", text)


class RichReporter:
    """Progress bars on an interactive terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Task]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                      console=self.console, transient=False) as bar:
            tid = bar.add_task(description, total=total, completed=completed, info="")

            class _T:
                def advance(self, n: int = 1, **metrics: Any) -> None:
                    info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in metrics.items())
                    bar.update(tid, advance=n, info=info)

            yield _T()

    def message(self, text: str) -> None:
        self.console.print(text)


_T = TypeVar("_T")
_current: ContextVar[Reporter | None] = ContextVar("hurricane_reporter", default=None)
_default = LogReporter()


def reporter() -> Reporter:
    return _current.get() or _default


@contextlib.contextmanager
def _bound(var: ContextVar[_T | None], value: _T) -> Iterator[_T]:
    """``var`` set to ``value`` in this context (thread or task) until the block ends."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def use_reporter(r: Reporter) -> contextlib.AbstractContextManager[Reporter]:
    return _bound(_current, r)


StateHook = Callable[[str, str], None]
_state_hook: ContextVar[StateHook | None] = ContextVar("hurricane_state_hook", default=None)


def unit_state(state: str, reason: str = "") -> None:
    """An executor tells whoever runs the job that it waits (``"queued"``, with why: e.g. for
    admission by a cluster queue) or runs again (``"running"``). The pipeline records it as the
    unit's state (status, API, event stream); without a hook it is a progress message."""
    hook = _state_hook.get()
    if hook is not None:
        hook(state, reason)
    else:
        message(f"{state}: {reason}" if reason else state)


def use_state_hook(hook: StateHook) -> contextlib.AbstractContextManager[StateHook]:
    return _bound(_state_hook, hook)


def task(description: str, total: int, completed: int = 0) -> contextlib.AbstractContextManager[Task]:
    return reporter().task(description, total, completed)


def message(text: str) -> None:
    reporter().message(text)


class JsonlReporter:
    """Progress as prefixed JSON lines on stdout, relayed into bars by a parent process."""

    def __init__(self, prefix: str = "@@hurricane-progress ", min_interval_s: float = 0.2) -> None:
        self.prefix, self.min_interval_s = prefix, min_interval_s

    def _emit(self, **event: Any) -> None:
        import json
        import sys

        sys.stdout.write(self.prefix + json.dumps(event, default=str) + "\n")
        sys.stdout.flush()

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Task]:
        self._emit(event="start", description=description, total=total, completed=completed)
        outer = self

        class _T:
            pending, last = 0, 0.0

            def advance(self, n: int = 1, **metrics: Any) -> None:
                self.pending += n
                now = time.monotonic()
                if now - self.last >= outer.min_interval_s:
                    outer._emit(event="advance", n=self.pending, metrics=metrics)
                    self.pending, self.last = 0, now

        t = _T()
        try:
            yield t
        finally:
            if t.pending:
                self._emit(event="advance", n=t.pending, metrics={})
            self._emit(event="end")

    def message(self, text: str) -> None:
        self._emit(event="message", text=text)
