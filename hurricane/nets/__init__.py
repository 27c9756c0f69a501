"""The networks a search builds: the op pool, architectures, backbone, supernet, training, export.

oppool       the 32-op pool's names and hyper-parameters (torch-free, for the API)
ops          the op pool as block builders
arch         architectures as frozen values, and search spaces (torch-free)
backbone     the fixed macro-structure: stem, learnable layers and their shapes, head
supernet     the single-path supernet, its weight sharing and standalone subnets
sampling     which paths a supernet trains at each step (torch-free)
flops        FLOPs and parameter counts of ops and networks
train        iteration-based training (train.train): checkpoints, exact resume, a stop on SIGTERM
distributed  data-parallel training across torchrun's processes
export       ONNX export, checked against torch with onnxruntime

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.nets import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "arch": ("Arch", "SearchSpace", "SEP"),
    "backbone": ("build_stem", "Head", "Layout"),
    "distributed": ("barrier", "finish", "Place", "place"),
    "export": ("export_and_check",),
    "flops": ("layer_summary", "network_cost", "op_cost"),
    "oppool": ("MANUAL_SPACE_OPS", "OPS"),
    "ops": ("build_op",),
    "sampling": ("PathPlan",),
    "supernet": ("Network", "recalibrate_bn", "Supernet"),
    "train": ("Checkpointer", "evaluate", "linear_lr", "param_groups", "Preempted", "set_threads",
              "step_seed", "StepLossFn", "TrainConfig"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
