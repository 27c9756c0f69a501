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
