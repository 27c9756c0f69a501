"""The README demo, end to end (slow: a few minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_search_reaches_90_percent_within_budget(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "hurricane", "run", "examples/digits-cpu.yaml",
                        "--store", str(tmp_path), "--search-id", "demo", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True,
                       timeout=3600)  # a hang guard only: the run takes minutes
    assert r.returncode == 0, r.stderr[-3000:]
    base = tmp_path / "searches" / "demo"
    report = json.loads((base / "report.json").read_text())
    cpu = report["devices"]["cpu"]
    assert cpu["top1"] >= 0.90
    assert cpu["predicted_latency_ms"] <= cpu["budget_ms"]
    for rel in ("retrain/cpu/final.pt", "retrain/cpu/arch.json", "export/cpu/model.onnx"):
        assert (base / rel).stat().st_size > 0
