"""A training process on a packed s3:// dataset for the kill-and-resume test: logs
``start=<step it resumes from>``, one sha256 per batch it trains on, then ``weights=<sha256>``.
With HOLD, the process stops before training on its HOLD-th batch (after logging it) and waits
there to be killed, so the test kills it at a known batch on any machine.
Usage: packed_train_worker.py S3_URL CHECKPOINT_DIR LOG [HOLD]"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator

import torch

from hurricane.data.datasets import load_data
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer, TrainConfig, train
from hurricane.runs.steps import layout_of, path_sampler, pool_space
from hurricane.spec import SearchSpec
from hurricane.storage.store import LocalStore
from tests.conftest import tiny_spec_dict


class Logged:
    """The split, with every batch the training loop takes written to the log."""

    def __init__(self, inner, log, hold: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.log, self.hold = inner, log, hold

    def __len__(self) -> int:
        return len(self.inner)

    def train_batches(self, *a, **k) -> Iterator:  # type: ignore[no-untyped-def]
        for n, (x, y) in enumerate(self.inner.train_batches(*a, **k), start=1):
            self.log.write(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
                           + "\n")
            self.log.flush()
            if n == self.hold:  # wait here for the test's SIGKILL (bounded: never hang a run)
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                raise RuntimeError(f"held at batch {n} for 600 s and nobody killed the process")
            yield x, y


def main() -> None:
    url, ckpt_dir, log_path = sys.argv[1:4]
    hold = int(sys.argv[4]) if len(sys.argv) > 4 else None
    torch.set_num_threads(1)
    spec = SearchSpec.model_validate(tiny_spec_dict(
        dataset={"name": "packed", "path": url, "num_workers": 2},
        backbone={**tiny_spec_dict()["backbone"], "num_classes": 4}))
    data = load_data(spec.dataset, input_size=spec.backbone.input_size, seed=spec.seed)
    torch.manual_seed(0)
    net = Supernet(layout_of(spec), pool_space(spec))
    cfg = TrainConfig(iterations=16, batch_size=8, lr=0.1, checkpoint_every=3, seed=spec.seed,
                      threads=1)
    ckpt = Checkpointer(LocalStore(ckpt_dir), "ckpt", keep=2)
    with open(log_path, "w") as log:
        log.write(f"start={max(ckpt.steps(), default=0)}\n")
        train(net, Logged(data.train, log, hold), cfg,  # type: ignore[arg-type]
              forward=path_sampler(pool_space(spec), spec.seed), checkpointer=ckpt)
        digest = hashlib.sha256()
        for k, v in net.state_dict().items():
            digest.update(k.encode() + v.numpy().tobytes())
        log.write(f"weights={digest.hexdigest()}\n")


if __name__ == "__main__":
    main()
