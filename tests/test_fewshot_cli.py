"""`hurricane devices adapt` as a user runs it: two known devices' tables profiled for real
(torch, ONNX Runtime), the architectures to time on a new one picked, timed there (OpenVINO),
and its predictor and layer table built from those timings; bad input named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hurricane.latency.devices import device_profile
from hurricane.latency.fewshot import FewShotPredictor
from hurricane.latency.latency_table import LatencyTable
from hurricane.latency.profiling import Protocol, measure_arch
from hurricane.nets.arch import Arch
from hurricane.nets.backbone import Layout
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict

pytest.importorskip("openvino")
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hurricane", *args], capture_output=True,
                          text=True, cwd=ROOT, env=os.environ, timeout=600)


def test_pick_time_and_adapt_a_new_device(tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict(strategy="spos", space={"kind": "pool"})))
    for dev in ("cpu", "cpu-ort"):
        out = _cli("profile", str(spec_path), "--device", dev, "--out", str(tmp_path / f"{dev}.csv"))
        assert out.returncode == 0, out.stderr[-2000:]
    tables = ["--table", f"cpu={tmp_path / 'cpu.csv'}", "--table", f"ort={tmp_path / 'cpu-ort.csv'}"]

    picked = _cli("devices", "adapt", "ov", "--spec", str(spec_path), *tables, "--pick", "6")
    assert picked.returncode == 0, picked.stderr[-2000:]
    lines = picked.stdout.split()
    assert lines[0] == "arch" and len(lines) == 7 and len(set(lines[1:])) == 6
    archs = [Arch.parse(x) for x in lines[1:]]

    # the user times them on the device
    spec = SearchSpec.model_validate(tiny_spec_dict())
    layout, proto = Layout.from_spec(spec.backbone), Protocol(warmup=1, repeats=3)
    ms = [measure_arch(layout, a, proto, device_profile("cpu-ov")).median_ms for a in archs]
    meas = tmp_path / "ov.csv"
    meas.write_text("arch,latency_ms\n" + "".join(f"{a},{y}\n" for a, y in zip(archs, ms, strict=True)))

    done = _cli("devices", "adapt", "ov", "--spec", str(spec_path), *tables,
                "--measurements", str(meas), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ov: 6 measurements, a prior of 2 known devices" in done.stdout
    assert "follows cpu" in done.stdout and "follows ort" in done.stdout
    model = FewShotPredictor.from_json(json.loads((tmp_path / "out" / "ov.predictor.json").read_text()))
    assert sorted(model.prior.names) == ["cpu", "ort"]
    table = LatencyTable.from_csv((tmp_path / "out" / "ov.table.csv").read_text(), device="ov")
    # the distilled table ranks the measured architectures as the predictor does
    pred = model.predict(archs)
    sums = [table.arch_latency(a) for a in archs]
    assert all(x > 0 for x in sums) and sorted(range(6), key=lambda i: sums[i])[0] == \
        sorted(range(6), key=lambda i: pred[i])[0]


def test_bad_input_is_named(tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict(strategy="spos", space={"kind": "pool"})))
    out = _cli("profile", str(spec_path), "--out", str(tmp_path / "cpu.csv"))
    assert out.returncode == 0, out.stderr[-2000:]
    one = _cli("devices", "adapt", "ov", "--spec", str(spec_path), "--table",
               f"cpu={tmp_path / 'cpu.csv'}", "--pick", "5")
    assert one.returncode != 0 and "at least 2 known devices" in one.stderr + one.stdout
    both = _cli("devices", "adapt", "ov", "--spec", str(spec_path), "--table",
                f"cpu={tmp_path / 'cpu.csv'}", "--table", f"b={tmp_path / 'cpu.csv'}")
    assert both.returncode != 0 and "exactly one of --pick" in both.stderr + both.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,latency_ms\nChoice_3-Choice_3-Choice_3-Choice_3-Choice_3,fast\n")
    r = _cli("devices", "adapt", "ov", "--spec", str(spec_path), "--table",
             f"cpu={tmp_path / 'cpu.csv'}", "--table", f"b={tmp_path / 'cpu.csv'}",
             "--measurements", str(bad))
    assert r.returncode != 0 and "row 2: latency_ms must be a number" in r.stderr + r.stdout
