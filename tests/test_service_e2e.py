"""The service end to end with real processes: redis-server, moto_server (S3), the API under
uvicorn and Celery workers (`hurricane stack` with an s3:// store). A digits spec is
submitted over HTTP, followed to the end, fetched with `hurricane fetch`, and the fetched
checkpoint is loaded and scored on the held-out digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_spec_dict
from tests.servers import ServiceStack

# A search through the whole stack, about 3.5 min on 2 cores: `make test-slow`, CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def learning_spec(**over: object) -> dict[str, object]:
    """The tiny backbone, retrained long enough to learn digits (≈98% in 300 steps)."""
    return tiny_spec_dict(retrain={"iterations": 300, "batch_size": 64, "lr": 0.1,
                                   "checkpoint_every": 100}, **over)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[ServiceStack]:  # type: ignore[no-untyped-def]
    with ServiceStack(tmp_path_factory.mktemp("e2e")) as s:
        yield s


def test_submit_watch_fetch_and_score_the_checkpoint(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from hurricane.nets.arch import Arch
    from hurricane.nets.backbone import Layout
    from hurricane.nets.supernet import Network
    from hurricane.nets.train import evaluate
    from hurricane.runs.steps import data_of
    from hurricane.spec import BackboneSpec, SearchSpec

    spec_file = tmp_path / "digits.yaml"
    spec_file.write_text(yaml.safe_dump(learning_spec()))
    env = {**os.environ, "HURRICANE_SERVER": service.url, "HURRICANE_TOKEN": service.token}
    cli = [sys.executable, "-m", "hurricane"]
    sub = subprocess.run([*cli, "submit", str(spec_file)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert sub.returncode == 0, sub.stderr[-3000:]
    sid = sub.stdout.strip()
    watch = subprocess.Popen([*cli, "watch", sid], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    events = list(service.client().events(sid))  # the same stream, read here too
    out, err = watch.communicate(timeout=1800)
    assert watch.returncode == 0 and f"{sid} succeeded" in out, out[-2000:] + err[-3000:]
    assert "step stage1: succeeded" in err  # the live view followed every step
    kinds = [e for e, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["state"] == "succeeded"
    stage1 = [d for e, d in events if e == "progress" and d["step"] == "stage1"]
    assert stage1 and stage1[0]["description"] == "stage1: supernet" and stage1[0]["total"] == 12
    assert [d["completed"] for d in stage1] == sorted(d["completed"] for d in stage1)
    units = [(d["step"], d["unit"], d["state"]) for e, d in events if e == "unit"]
    assert ("retrain", "cpu", "running") in units and ("retrain", "cpu", "succeeded") in units

    view = service.client().get(sid)
    assert view["state"] == "succeeded" and view["owner"] == service.stack.state()["user"]
    assert all(st["state"] == "succeeded" for st in view["steps"].values())
    # every step result was written exactly once (the bucket is versioned)
    versions = service.versions(sid)
    assert len(versions) == len(view["plan"]) and set(versions.values()) == {1}

    out = tmp_path / "fetched"
    fetch = subprocess.run([*cli, "fetch", sid, "--device", "cpu", "--out", str(out)],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert fetch.returncode == 0, fetch.stderr[-2000:]
    files = {p.name for p in (out / sid).iterdir()}
    assert {"final.pt", "model.onnx", "arch.json", "metrics.json", "report.json"} <= files

    blob = torch.load(out / sid / "final.pt", map_location="cpu", weights_only=False)
    net = Network(Layout.from_spec(BackboneSpec.model_validate(blob["backbone"])),
                  Arch.parse(blob["arch"]))
    net.load_state_dict(blob["state_dict"])
    data = data_of(SearchSpec.model_validate(learning_spec()))
    top1 = evaluate(net.eval(), data.test)
    assert top1 >= 0.9, top1
    report = json.loads((out / sid / "report.json").read_text())
    assert report["devices"]["cpu"]["top1"] == pytest.approx(top1, abs=1e-9)
    assert json.loads((out / sid / "arch.json").read_text())["arch"] == blob["arch"]

    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / sid / "model.onnx"), providers=["CPUExecutionProvider"])
    x, _ = next(data.test.eval_batches(32))
    with torch.no_grad():
        ref = net(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-3

    # a fetch of a file changed behind the server's back is refused by its checksum
    listing = service.client().artifacts(sid, device="cpu")
    final = next(a for a in listing["data"] if a["key"].endswith("final.pt"))
    from hurricane.service.client import ApiError

    with pytest.raises(ApiError, match="SHA-256"):
        service.client().download(final["url"], tmp_path / "x.pt", size=final["size"],
                                  sha256="0" * 64)
