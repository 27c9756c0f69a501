"""bench/soak.py keeps working: its tiny mode (3 searches from 2 users, one cancelled and one
purged while it trains, one S3 freeze) against a real local stack, asserting what the soak
itself checks: outcomes as asked, each step result written once, no 5xx, no job twice at once,
nothing written under the purged prefix after the purge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# About 2 min on 2 cores (a real stack, 3 searches): `make test-slow`, CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_the_tiny_soak(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--tiny",
                           "--dir", str(tmp_path / "run"), "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, env=dict(os.environ))
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["ok"] and proc.returncode == 0, doc["problems"]
    # the cancel lands once stage1 runs; a search that ended first stays succeeded ("ok" holds
    # each to what the soak asked of it, and what it asked in the end)
    out_ = doc["outcomes"]
    assert out_["purged"] == 1 and out_["failed"] == 0
    assert out_["succeeded"] + out_["cancelled"] == 2
    assert doc["http_5xx"] == 0 and doc["duplicate_writes"] == 0 and doc["duplicate_jobs"] == 0
    assert doc["fault_counts"] == {"freeze_s3": 1}
    assert doc["status_latency"]["overall"]["requests"] > 0
    (purged,) = [s for s in doc["searches"] if s["action"] == "purge"]
    assert purged["written_after_purge"] == [] and purged["left_after_purge"] == []
    (ran,) = [s for s in doc["searches"] if s["action"] == "run"]
    assert ran["results_written"] == 8  # seven step results and the report, once each
    assert doc["job_process_samples"] > 0 and doc["jobs_seen"] >= 7
