"""The search methods: HURRICANE's hardware-aware space, evolution under a budget, ProxylessNAS.

hwspace    the hardware-aware search space (Eq. 2): the top-p ops per layer
evolution  evolutionary search under a latency budget (torch-free)
proxyless  the ProxylessNAS baseline: gated paths with an expected-latency loss

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.search import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "evolution": ("Candidate", "EvolutionConfig", "EvolutionResult", "EvolutionSearch", "InfeasibleBudget"),
    "hwspace": ("eq2_scores", "hardware_space", "layer_capacity", "plot_heatmap"),
    "proxyless": ("proxyless_search", "ProxylessConfig"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
