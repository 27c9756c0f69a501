"""A gate for tests that must act on a training mid-way, whatever the machine's speed.

Put this folder first on a training process's PYTHONPATH with ``HURRICANE_TEST_HOLD_AT=N`` and
``HURRICANE_TEST_HOLD_DIR=<dir>``: when ``hurricane.nets.train`` is imported, its step loop is
wrapped so that before step N it writes ``<dir>/reached-<rank>-<pid>`` (the step; rank from
torchrun's ``RANK``, else 0) and then holds until the process receives SIGTERM (train's own
StopRequest handler sees it too), then goes on. Each rank holds once: a later process of the
same rank (a resumed pod, a restarted torchrun rank) passes step N. A test thus evicts, cancels
or kills a training at a known step instead of racing it: nothing advances between "reached"
and the signal.

With ``HURRICANE_TEST_HOLD_ARM`` set, only a process that claims the file ``<dir>/armed`` (an
atomic rename to its ``reached-…`` file) holds: a test arms the gate for the one training it
wants to catch, and every other training of a long-lived service passes. With
``HURRICANE_TEST_HOLD_MATCH=<text>`` only a process whose command line holds that text (e.g. a
search id's prefix) may hold; the others train on.

Only tests use it; nothing in the library knows about it."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HOLD_AT = os.environ.get("HURRICANE_TEST_HOLD_AT")
HOLD_DIR = os.environ.get("HURRICANE_TEST_HOLD_DIR")
HOLD_MATCH = os.environ.get("HURRICANE_TEST_HOLD_MATCH", "")
HOLD_LIMIT_S = 600.0  # a forgotten gate fails the test instead of hanging it forever


def _patch(train: Any) -> None:
    step_at = int(HOLD_AT or "0")
    lr_fn, stop_cls = train.linear_lr, train.StopRequest
    handle = stop_cls._handle
    seen = {"term": False}

    def _handle(self: Any, signum: int, frame: Any) -> None:
        seen["term"] = True
        handle(self, signum, frame)

    def linear_lr(base: float, step: int, total: int) -> float:
        rank = os.environ.get("RANK", "0")
        if (step == step_at and not seen["term"] and HOLD_MATCH in " ".join(sys.argv)
                and _claim(rank)):
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no StopRequest handler"
            Path(HOLD_DIR or ".", f"reached-{rank}-{os.getpid()}").write_text(str(step))
            deadline = time.monotonic() + HOLD_LIMIT_S
            while not seen["term"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pod_gate: no SIGTERM within {HOLD_LIMIT_S:.0f} s")
                time.sleep(0.01)  # the signal interrupts the sleep; its handler runs here
        return float(lr_fn(base, step, total))

    stop_cls._handle = _handle
    train.linear_lr = linear_lr


def _claim(rank: str) -> bool:
    """Whether this process holds: armed mode, it took the armed file; otherwise, no process
    of its rank held before."""
    d = Path(HOLD_DIR or ".")
    if os.environ.get("HURRICANE_TEST_HOLD_ARM"):
        try:
            (d / "armed").rename(d / f"reached-{rank}-{os.getpid()}")
        except FileNotFoundError:
            return False
        return True
    return not any(d.glob(f"reached-{rank}-*"))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "hurricane.nets.train":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module  # type: ignore[attr-defined]

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[attr-defined]
        return spec


if HOLD_AT and HOLD_DIR:
    sys.meta_path.insert(0, _Finder())
