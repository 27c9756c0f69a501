"""Admission limits an operator sets on one search (sizes, world size, work): each refusal
names the spec field, its value and the limit (the settings in hurricane/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hurricane.spec import SearchSpec

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Limits:
    """The maxima (the settings' ``max_*`` fields)."""

    iterations: int = 1_000_000
    batch_size: int = 4096
    world_size: int = 64
    input_layers: int = 16_384
    evolution_evals: int = 100_000
    predictor_samples: int = 2_000

    @classmethod
    def from_settings(cls, s: object) -> Limits:
        return cls(**{f: int(getattr(s, f"max_{f}")) for f in cls.__dataclass_fields__})


def _over(out: list[tuple[Loc, str]], loc: Loc, value: int, limit: int, setting: str,
          what: str | None = None) -> None:
    if value > limit:
        out.append((loc, f"{what or '.'.join(map(str, loc))} is {value:,}; the limit is "
                    f"{limit:,} (setting {setting})"))


def check(spec: SearchSpec, limits: Limits) -> list[tuple[Loc, str]]:
    """Every field of ``spec`` over a limit, as (field path, message); only the parts the
    spec's strategy runs are checked (proxyless settings do not bind a spos search)."""
    out: list[tuple[Loc, str]] = []
    proxyless = spec.strategy == "proxyless"
    it, bs = "HURRICANE_MAX_ITERATIONS", "HURRICANE_MAX_BATCH_SIZE"
    if proxyless:
        _over(out, ("proxyless", "iterations"), spec.proxyless.iterations, limits.iterations, it)
        _over(out, ("proxyless", "batch_size"), spec.proxyless.batch_size, limits.batch_size, bs)
    else:
        _over(out, ("supernet", "iterations"), spec.supernet.iterations, limits.iterations, it)
        _over(out, ("supernet", "batch_size"), spec.supernet.batch_size, limits.batch_size, bs)
        if spec.hurricane.stage2_iterations is not None and spec.strategy == "hurricane":
            _over(out, ("hurricane", "stage2_iterations"), spec.hurricane.stage2_iterations,
                  limits.iterations, it)
        _over(out, ("evolution", "bn_batch_size"), spec.evolution.bn_batch_size,
              limits.batch_size, bs)
        if spec.evolution.finalists > 1:
            _over(out, ("evolution", "finalist_iterations"), spec.evolution.finalist_iterations,
                  limits.iterations, it)
        evo = spec.evolution
        _over(out, ("evolution",), evo.population * evo.iterations, limits.evolution_evals,
              "HURRICANE_MAX_EVOLUTION_EVALS",
              f"evolution.population × evolution.iterations ({evo.population:,} × "
              f"{evo.iterations:,})")
    _over(out, ("retrain", "iterations"), spec.retrain.iterations, limits.iterations, it)
    _over(out, ("retrain", "batch_size"), spec.retrain.batch_size, limits.batch_size, bs)
    _over(out, ("profile", "batch_size"), spec.profile.batch_size, limits.batch_size, bs)
    t = spec.training
    _over(out, ("training",), t.world_size, limits.world_size, "HURRICANE_MAX_WORLD_SIZE",
          f"training.nodes × training.processes_per_node ({t.nodes} × "
          f"{t.processes_per_node})")
    bb = spec.backbone
    _over(out, ("backbone",), bb.input_size * bb.num_layers, limits.input_layers,
          "HURRICANE_MAX_INPUT_LAYERS",
          f"backbone.input_size × layers ({bb.input_size} × {bb.num_layers}, the sum of "
          "backbone.layers_per_stage)")
    if spec.predictor.enabled:
        _over(out, ("predictor", "samples"), spec.predictor.samples, limits.predictor_samples,
              "HURRICANE_MAX_PREDICTOR_SAMPLES")
    if any(d.proxy for d in spec.devices):
        _over(out, ("one_proxy", "samples"), spec.one_proxy.samples, limits.predictor_samples,
              "HURRICANE_MAX_PREDICTOR_SAMPLES")
    return out
