"""Run by the distributed-training tests under torchrun (or plainly, as one process): trains a
supernet with hurricane.nets.train.train on a spec's data and writes the loss curve and the final
weights of rank 0. Usage: ddp_worker.py SPEC.json OUT.pt STEPS [float64]"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from hurricane.nets.distributed import finish, place
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import train
from hurricane.runs.steps import data_of, layout_of, path_sampler, pool_space, train_config
from hurricane.spec import SearchSpec


def main() -> None:
    spec_path, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4 and sys.argv[4] == "float64":
        torch.set_default_dtype(torch.float64)
    spec = SearchSpec.model_validate(json.loads(spec_path.read_text()))
    where = place("cpu")
    space = pool_space(spec)
    torch.manual_seed(spec.seed)
    net = Supernet(layout_of(spec), space)
    cfg = replace(train_config(spec.supernet, spec.seed, iterations=steps, training=spec.training),
                  log_every=1)
    res = train(net, data_of(spec).train, cfg, forward=path_sampler(space, spec.seed), where=where)
    if where.main:
        torch.save({"history": [h[1] for h in res.history], "model": net.state_dict(),
                    "world_size": res.world_size}, out)
    finish()


if __name__ == "__main__":
    main()
