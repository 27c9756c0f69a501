"""Packaging rules: no importable top-level `operator`/`api`; components under `hurricane.*`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, operator, sys
assert operator.__file__.startswith(sys.base_prefix), operator.__file__
assert hasattr(operator, 'itemgetter')
import hurricane.api.service, hurricane.workers.tasks, hurricane.operator.manifests
print(importlib.util.find_spec('api') is None)
"""


def _probe(cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_components_import_and_stdlib_operator_wins_outside_the_checkout(tmp_path: Path) -> None:
    assert _probe(tmp_path) == "True"  # no top-level `api` from anywhere but the checkout


def test_stdlib_operator_wins_even_from_the_repository_root() -> None:
    _probe(ROOT)  # operator/ is a namespace portion, so the standard library's module wins


def test_components_have_no_init_files() -> None:
    for name in ("api", "workers", "operator"):
        assert not (ROOT / name / "__init__.py").exists(), name


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise(tmp_path: Path) -> None:
    import os

    probe = "import hurricane, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "PASSIVE"  # spinning threads: 25x slower on a busy 2-core box
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path,
                       env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip() == "ACTIVE"


SUBPACKAGES = ("data", "latency", "nets", "runs", "runs.steps", "search", "service", "storage")


def test_subpackages_are_light_and_resolve_their_public_names(tmp_path: Path) -> None:
    """Importing every subpackage loads none of their torch-bound modules; each public name
    resolves to the object its home module defines."""
    probe = ("import importlib, sys\n"
             f"packages = [importlib.import_module('hurricane.' + p) for p in {SUBPACKAGES!r}]\n"
             "assert 'torch' not in sys.modules, 'a subpackage __init__ loaded torch'\n"
             "for pkg in packages:\n"
             "    for module, names in pkg._PUBLIC.items():\n"
             "        home = importlib.import_module(f'{pkg.__name__}.{module}')\n"
             "        for name in names:\n"
             "            assert getattr(pkg, name) is getattr(home, name), (pkg.__name__, name)\n"
             "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_other_packages_import_only_a_subpackages_public_names() -> None:
    """What one part of hurricane imports from a subpackage's modules is in that subpackage's
    __all__ (runs.steps: its own), so each __init__ stays a true list of its public surface."""
    import ast
    import importlib
    import importlib.util

    public = {f"hurricane.{p}": set(importlib.import_module(f"hurricane.{p}").__all__)
              for p in SUBPACKAGES}
    public["hurricane.runs.steps"] = set(importlib.import_module("hurricane.runs.steps").__all__)

    def is_module(name: str) -> bool:  # `from hurricane.latency import tables`: a module
        return importlib.util.find_spec(name) is not None
    stray = []
    for folder, package in (("hurricane", "hurricane"), ("api", "hurricane.api"),
                            ("workers", "hurricane.workers"), ("operator", "hurricane.operator")):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            importer = ".".join((package, *parts))
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                owner = max((p for p in public if node.module.startswith(p + ".")
                             or node.module == p), key=len, default=None)
                if owner is None or importer.startswith(owner + "."):
                    continue
                stray += [f"{importer}: {node.module}.{a.name}" for a in node.names
                          if a.name not in public[owner]
                          and not (node.module == owner and is_module(f"{owner}.{a.name}"))
                          and a.name != node.module.rpartition(".")[2]]  # nets.train.train
    assert not stray, "not in the subpackage's __all__:\n" + "\n".join(stray)
