"""The live tail of one unit's job output in the store (``logs/<job>.json``): what the API's log
route serves while the job runs. Both out-of-process executors keep one per job: the job's output
lines, its progress messages, and a line when a progress task starts or ends (nested tasks
throttled). Written at most every ``every_s`` by a background thread and once at the end, through
the search's guard (a purged search gets nothing); a write that fails never fails the job."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from hurricane import progress
from hurricane.runs.records import SearchPurged, guarded
from hurricane.storage.store import ArtifactStore, search_key

log = logging.getLogger("hurricane.executor")

MAX_LINES = 500
MAX_LINE_CHARS = 2000  # one runaway line (a printed tensor) does not crowd out the rest
TASK_LINE_GAP_S = 1.0  # nested progress tasks add a line at most this often


def unit_log_key(search_id: str, job_name: str) -> str:
    return search_key(search_id, "logs", f"{job_name}.json")


class UnitLog:
    """The last ``max_lines`` lines of one job, kept in memory and written to the store.

    ``store``: the store, or a function that opens it (called in the writer thread, so an
    executor never waits for a store to open); either is guarded for ``search_id``."""

    def __init__(self, store: ArtifactStore | Callable[[], ArtifactStore], search_id: str,
                 job_name: str, *, every_s: float = 5.0, max_lines: int = MAX_LINES,
                 clock: Callable[[], float] = time.time) -> None:
        self._store_or_open = store
        self.search_id, self.job_name, self.every_s, self.clock = search_id, job_name, every_s, clock
        self.key = unit_log_key(search_id, job_name)
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._total = 0  # lines ever added (those before the tail were dropped)
        self._version = self._written = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: ArtifactStore | None = None
        self._disabled = False  # the store could not be opened, or the search was purged
        self._depth = 0
        self._last_task_line = 0.0
        self.started = clock()

    # -- lines ----------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One line of the job's output (a trailing newline is dropped)."""
        text = text.rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" … ({len(text) - MAX_LINE_CHARS} more characters)"
        with self._lock:
            self._lines.append(text)
            self._total += 1
            self._version += 1

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def tee(self, inner: progress.Reporter) -> progress.Reporter:
        """A reporter that passes everything on to ``inner`` and records messages and task
        starts and ends as lines."""
        return _Tee(self, inner)

    def _task_line(self, text: str, depth: int) -> None:
        now = time.monotonic()
        if depth > 1 and now - self._last_task_line < TASK_LINE_GAP_S:
            return
        self._last_task_line = now
        self.line(text)

    # -- writing --------------------------------------------------------------------------------

    def start(self) -> UnitLog:
        """Starts the writer thread (a write at most every ``every_s``, when lines came)."""
        self._thread = threading.Thread(target=self._run, name=f"unitlog-{self.job_name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.write("running")  # replaces an earlier attempt's tail at once
        while not self._stop.wait(self.every_s):
            if self._version != self._written:
                self.write("running")

    def close(self, state: str, exit_code: int | None = None, *, write: bool = True) -> None:
        """Stops the writer thread and writes the final tail with the job's outcome (unless
        ``write`` is false: e.g. another caller has taken the job over)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if write:
            self.write(state, exit_code)

    def _open(self) -> ArtifactStore | None:
        if self._store is None and not self._disabled:
            try:
                opened = (self._store_or_open if isinstance(self._store_or_open, ArtifactStore)
                          else self._store_or_open())
                self._store = guarded(opened, self.search_id)
            except Exception as err:
                self._disabled = True
                log.warning("job %s: its output is not kept in the store (%s: %s)",
                            self.job_name, type(err).__name__, err)
        return self._store

    def doc(self, state: str, exit_code: int | None = None) -> dict[str, Any]:
        with self._lock:
            return {"job": self.job_name, "state": state, "exit_code": exit_code,
                    "started": self.started, "updated": self.clock(),
                    "dropped": self._total - len(self._lines), "lines": list(self._lines),
                    "_version": self._version}

    def write(self, state: str, exit_code: int | None = None) -> bool:
        """Writes the tail now; False when it could not be written (never raises)."""
        with self._write_lock:
            store = self._open()
            if store is None:
                return False
            doc = self.doc(state, exit_code)
            version = doc.pop("_version")
            try:
                store.put_json(self.key, doc)
            except SearchPurged:
                self._disabled, self._store = True, None  # nothing more for a purged search
                return False
            except Exception as err:  # the job goes on; the next write may land
                log.warning("job %s: its output tail was not written (%s: %s)", self.job_name,
                            type(err).__name__, err)
                return False
            self._written = version
            return True


class _Tee:
    """``inner`` plus the task lines and messages recorded in a UnitLog."""

    def __init__(self, unit_log: UnitLog, inner: progress.Reporter) -> None:
        self.log, self.inner = unit_log, inner

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[progress.Task]:
        ul = self.log
        ul._depth += 1
        depth, t0 = ul._depth, time.monotonic()
        ul._task_line(f"» {description}: started ({completed}/{total})", depth)
        seen: dict[str, Any] = {"n": completed, "metrics": {}}
        try:
            with self.inner.task(description, total, completed) as t:

                class _T:
                    def advance(self, n: int = 1, **metrics: Any) -> None:
                        seen["n"] += n
                        if metrics:
                            seen["metrics"] = metrics
                        t.advance(n, **metrics)

                yield _T()
        finally:
            ul._depth -= 1
            shown = ", ".join(f"{k} {_short(v)}" for k, v in seen["metrics"].items())
            ul._task_line(f"» {description}: ended ({seen['n']}/{total}) after "
                          f"{time.monotonic() - t0:.1f} s" + (f"; {shown}" if shown else ""),
                          depth)

    def message(self, text: str) -> None:
        self.log.line(f"» {text}")
        self.inner.message(text)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)[:40]
