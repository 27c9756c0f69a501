"""Transient job progress in Redis: the API's status and event stream read it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from hurricane.progress import Task
from hurricane.workers.flight import field, progress_key

TTL_S = 3 * 24 * 3600


class RedisReporter:
    """A progress reporter writing the innermost bar of one unit to ``hurricane:progress:<id>``
    (at most every ``min_interval_s``); messages go to a capped list beside it."""

    def __init__(self, r: redis.Redis, search_id: str, step: str, unit: str,
                 min_interval_s: float = 0.5) -> None:
        self.r, self.search_id, self.field = r, search_id, field(step, unit)
        self.min_interval_s = min_interval_s

    def _write(self, doc: dict[str, Any]) -> None:
        with contextlib.suppress(redis.RedisError):  # progress is best effort
            key = progress_key(self.search_id)
            self.r.hset(key, self.field, json.dumps({**doc, "updated": time.time()}))
            self.r.expire(key, TTL_S)

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Task]:
        outer = self
        state: dict[str, Any] = {"description": description, "total": total,
                                 "completed": completed, "metrics": {}}
        self._write(state)

        class _T:
            last = time.monotonic()

            def advance(self, n: int = 1, **metrics: Any) -> None:
                state["completed"] += n
                if metrics:
                    state["metrics"] = {k: v for k, v in metrics.items()
                                        if isinstance(v, int | float | str)}
                now = time.monotonic()
                if now - self.last >= outer.min_interval_s or state["completed"] >= total:
                    self.last = now
                    outer._write(state)

        try:
            yield _T()
        finally:
            self._write(state)

    def message(self, text: str) -> None:
        with contextlib.suppress(redis.RedisError):
            key = f"{progress_key(self.search_id)}:log"
            self.r.rpush(key, json.dumps({"at": time.time(), "unit": self.field, "text": text}))
            self.r.ltrim(key, -200, -1)
            self.r.expire(key, TTL_S)
