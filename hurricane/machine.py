"""What machine a measurement came from (benchmarks and reports record it beside numbers)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(*packages: str) -> dict[str, Any]:
    """CPU model, cores (usable and total), Python, platform and the given packages' versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"cpu": cpu_model(), "cores_usable": usable,
                            "cores_total": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    for p in packages:
        try:
            info[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            info[p] = None
    return info


def pid_alive(pid: int) -> bool:
    """A process with this pid exists here and is not a zombie (an exited child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True
