"""The `hurricane` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec_dict

ROOT = Path(__file__).resolve().parents[1]


def hurricane(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hurricane", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=600)


def test_spec_schema_prints_json() -> None:
    r = hurricane("spec", "schema")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "SearchSpec"


def test_spec_validate_ok_and_errors(tmp_path: Path) -> None:
    r = hurricane("spec", "validate", "examples/digits-cpu.yaml")
    assert r.returncode == 0 and "valid" in r.stdout
    bad = tiny_spec_dict(space={"ops": ["SEP_3", "Conv_9"]}, evolution={"population": 0})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    r = hurricane("spec", "validate", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2
    assert "space.ops" in r.stderr and "Conv_9" in r.stderr and "allowed:" in r.stderr
    assert "evolution.population" in r.stderr and "greater than or equal to 2" in r.stderr


def test_listings() -> None:
    r = hurricane("ops", "list", "--cin", "16", "--cout", "16", "--hw", "8")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 33 and "ChoiceX_SE" in r.stdout
    assert "cpu" in hurricane("devices", "list").stdout
    assert "profile → space → predictor" in hurricane("strategies").stdout


@pytest.mark.slow  # about 1.5 min on 2 cores: `make test-slow`, CI
def test_run_end_to_end_with_local_processes(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict()))
    store = tmp_path / "store"
    r = hurricane("run", str(spec), "--store", str(store), "--search-id", "cli-1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "search cli-1 finished" in r.stdout and "model.onnx" in r.stdout
    assert "picked among evolution's top 3 fine-tuned from the supernet" in r.stdout
    base = store / "searches" / "cli-1"
    for rel in ("retrain/cpu/final.pt", "retrain/cpu/arch.json", "export/cpu/model.onnx",
                "report.json"):
        assert (base / rel).is_file(), rel
    report = json.loads((base / "report.json").read_text())
    assert report["devices"]["cpu"]["meets_budget"]
    assert all(r["_meta"]["executor"] == "process"
               for r in (json.loads((base / s / "result.json").read_text())
                         for s in ("profile", "predictor", "stage1", "search1", "retrain",
                                   "export")))
    st = hurricane("status", "cli-1", "--store", str(store))
    assert json.loads(st.stdout)["state"] == "succeeded"
    # one step on its own (what a Celery task wraps) returns its stored result
    sp = hurricane("step", "space", "--search", "cli-1", "--store", str(store))
    assert sp.returncode == 0
    assert json.loads(sp.stdout) == json.loads((base / "space" / "result.json").read_text())
    # the same id with another spec is refused, and nothing stored changes
    spec.write_text(yaml.safe_dump(tiny_spec_dict(seed=42)))
    r = hurricane("run", str(spec), "--store", str(store), "--search-id", "cli-1")
    assert r.returncode == 1 and "different spec" in r.stderr
    assert json.loads((base / "spec.json").read_text())["seed"] == 3


def test_profile_writes_a_table_and_absent_devices_explain_themselves(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict()))
    out = tmp_path / "ort.csv"
    r = hurricane("profile", str(spec), "--device", "cpu-ort", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = out.read_text().splitlines()
    assert rows[0] == "layer,op,median_ms,iqr_ms" and len(rows) == 2 + 5 * 5  # 5 layers × 5 ops
    r = hurricane("profile", str(spec), "--device", "dsp-qnn")
    assert r.returncode == 1 and "QNNExecutionProvider" in r.stderr
    assert "hurricane.io/device=dsp" in r.stderr
    listing = hurricane("devices", "list").stdout
    assert "cpu-ov" in listing and "no CUDA device" in listing


def test_missing_search_is_a_clear_error(tmp_path: Path) -> None:
    r = hurricane("status", "nope", "--store", str(tmp_path))
    assert r.returncode == 2 and "no search 'nope'" in r.stderr
