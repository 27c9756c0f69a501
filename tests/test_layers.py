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
