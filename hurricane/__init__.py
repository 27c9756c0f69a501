"""hurricane-nas: hardware-aware neural architecture search (HURRICANE) as a batch system."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make torch 10-25x slower as soon as another process
# wants a core (measured: a supernet step 0.15 s -> 3.6 s with 2 threads on 2 busy cores;
# 0.20 s with passive waiting). Set before torch loads its OpenMP runtime; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _CheckoutComponents(importlib.abc.MetaPathFinder):
    """Resolves hurricane.api/.workers/.operator to the api/, workers/, operator/ folders of a
    source checkout (editable install). Those folders are namespace portions on purpose: a
    regular package named ``operator`` at the repository root would shadow the standard
    library for any Python started there. Installed wheels carry them inside ``hurricane/``
    and never reach this finder."""

    def __init__(self, locations: dict[str, str]) -> None:
        self.locations = locations

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        where = self.locations.get(fullname)
        if where is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [where]
        return spec


def _install_checkout_finder() -> None:
    here = Path(__file__).resolve().parent
    found = {f"{__name__}.{n}": str(here.parent / n) for n in ("api", "workers", "operator")
             if not (here / n).is_dir() and (here.parent / n / ".hurricane-component").is_file()}
    if found and not any(isinstance(f, _CheckoutComponents) for f in sys.meta_path):
        sys.meta_path.append(_CheckoutComponents(found))


_install_checkout_finder()


def surface(package: str, homes: Mapping[str, tuple[str, ...]]) -> Callable[[str], object]:
    """A subpackage's module ``__getattr__`` (PEP 562) for its public names, given by home
    module: each is loaded from its home on first use. So ``from hurricane.latency import
    LatencyPredictor`` works, and importing one torch-free module of a package (the API does)
    never loads its torch-bound neighbours."""
    home = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home[name]}"), name)

    return __getattr__
