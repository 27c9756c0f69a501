"""The pipeline's steps. Each step is one ``Step`` object (hurricane.runs.contract), declared
in a module of its name: its units, done test, finish, job function and traits. Importing
this package registers every step, and stays torch-free: a declaration names its job and
finish functions by ``"module:function"``, loaded when they run.

Declarations: one module per step, each imported below (the one place built-in steps are
registered; a strategy gives their order). docs/adding-a-step.md walks through adding one.

Implementations: measure (profile, space, predictor), oneshot (supernet stages and their
evolution), oneproxy (transfer), gradient (ProxylessNAS), final (retrain, export), quality
(supernet quality), common (helpers), keys (store keys, torch-free), results (the results
view: winners and artifacts per device, torch-free).

_PUBLIC names, by home module, what tools, benchmarks and tests use: ``from
hurricane.runs.steps import NAME`` loads its module on first use.
"""

from __future__ import annotations

from hurricane import surface
from hurricane.runs.steps import (  # noqa: F401 (each registers its step)
    export,
    predictor,
    profile,
    proxyless,
    retrain,
    search1,
    search2,
    space,
    stage1,
    stage2,
    transfer,
)

_PUBLIC = {
    "common": ("data_of", "latency_model", "layout_of", "load_space", "load_table",
               "protocol_of", "resolve_budget", "target", "target_profile", "train_config"),
    "final": ("load_final", "retrain_arch", "winners"),
    "keys": ("evolution_key", "export_key", "predictor_key", "table_key", "train_key",
             "transfer_key"),
    "measure": ("pool_space", "profiled_ops"),
    "oneshot": ("a_win0", "inherit_weights", "path_sampler", "stage2_dir", "stage2_space",
                "train_supernet"),
    "results": ("device_artifacts", "device_winners", "step_of", "winner_step", "winner_steps"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
