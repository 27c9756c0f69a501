"""The hurricane Helm chart as this package finds and renders it: real Helm (helm-python-sdk, a
library with Helm inside; no helm binary), for `hurricane cluster plan` and `hurricane cluster
up`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def default_chart() -> Path | None:
    """charts/hurricane of the checkout this package runs from, if there is one."""
    import hurricane

    here = Path(hurricane.__file__).resolve().parents[1] / "charts" / "hurricane"
    return here if (here / "Chart.yaml").is_file() else None


def merge_values(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_chart(chart: Path, values: dict[str, Any], *, release: str,
                 namespace: str) -> list[dict[str, Any]]:
    """Every object of the chart for these user values (raises helm_python.HelmError, naming
    the key, when the chart refuses them)."""
    import helm_python as helm

    with helm.Chart.load(chart) as c:
        templates = c.render(values, name=release, namespace=namespace)
    objs: list[dict[str, Any]] = []
    for path, text in sorted(templates.items()):
        if path.endswith((".yaml", ".yml")):
            objs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objs
