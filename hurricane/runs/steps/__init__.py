"""The pipeline's steps (what the runner and Celery call) and jobs (what a pod runs).

Importing this package registers every step and job; the names below are the ones tools,
benchmarks and tests use.
"""

from __future__ import annotations

from hurricane.runs.steps import final, measure, oneshot, proxyless, transfer  # noqa: F401 (registers)
from hurricane.runs.steps.common import (
    data_of,
    latency_model,
    layout_of,
    load_space,
    load_table,
    protocol_of,
    resolve_budget,
    target,
    target_profile,
    train_config,
)
from hurricane.runs.steps.final import load_final, retrain_arch, winners
from hurricane.runs.steps.measure import pool_space, profiled_ops
from hurricane.runs.steps.oneshot import (
    a_win0,
    inherit_weights,
    path_sampler,
    stage2_dir,
    stage2_space,
    train_supernet,
)

__all__ = [
    "a_win0", "data_of", "inherit_weights", "latency_model", "layout_of", "load_final",
    "load_space", "load_table", "path_sampler", "pool_space", "profiled_ops", "protocol_of",
    "resolve_budget", "retrain_arch", "stage2_dir", "stage2_space", "target", "target_profile",
    "train_config", "train_supernet", "winners",
]
