"""Writes each image's requirements file: the full dependency closure of the image's roots, pinned
to pyproject.toml's pins and, for transitive packages, to this virtualenv's versions.

    .venv/bin/python images/lock.py           # rewrite images/requirements-*.txt
    .venv/bin/python images/lock.py --check   # exit 1 if a file differs from what it would write

The images install these files with ``pip install --no-deps`` and then run ``pip check``, so an
image gets exactly the versions the test suite ran against, and a missing package fails the build.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SELF = "hurricane-nas"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What the CPU wheels of torch do not need: CUDA libraries, their Python bindings and Triton.
CUDA_ONLY = ("nvidia-", "cuda-", "triton")


@dataclass(frozen=True)
class Image:
    """One image's requirement roots; ``cpu_torch``: torch/torchvision from the CPU index."""

    name: str
    roots: tuple[str, ...]
    cpu_torch: bool = False

    @property
    def path(self) -> Path:
        return HERE / f"requirements-{self.name}.txt"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def project_requirements(*extras: str) -> tuple[str, ...]:
    """pyproject.toml's dependencies plus the named extras, as written there."""
    p = _project()
    return tuple(p["dependencies"]) + tuple(r for e in extras for r in p["optional-dependencies"][e])


def pyproject_pins() -> dict[str, str]:
    """Canonical name -> version of every ``==`` pin in pyproject.toml (extras included)."""
    pins: dict[str, str] = {}
    for line in project_requirements(*_project()["optional-dependencies"]):
        req = Requirement(line)
        for spec in req.specifier:
            if spec.operator == "==":
                pins[canonicalize_name(req.name)] = spec.version
    return pins


# The API (`uvicorn hurricane.api.app:app`): what importing hurricane.api.app loads once torch,
# torchvision, onnx*, openvino are absent (tests/test_images.py measures it), plus what it loads
# later: uvloop/httptools (uvicorn's loop and parser), minio (the s3:// store), matplotlib (the
# SRCC matrix as PNG). numpy and scipy: hurricane.api.devices -> hurricane.latency.proxy ->
# hurricane.latency.predictor imports them at module level (the predictor's own Bayesian ridge needs no
# scikit-learn). celery[redis]: the API sends tasks by name.
API_ROOTS = (
    "fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client",
    "pydantic", "pydantic-settings", "pyyaml", "rich", "minio",
    "celery[redis]", "redis",
    "numpy", "scipy", "matplotlib",
)

IMAGES = {
    "api": Image("api", API_ROOTS),
    "worker": Image("worker", project_requirements("workers", "operator"), cpu_torch=True),
    "trainer": Image("trainer", project_requirements()),
    "profiler": Image("profiler", project_requirements(), cpu_torch=True),
}


def _requirements_of(name: str, extras: frozenset[str]) -> Iterable[Requirement]:
    """The installed distribution's requirements that apply here with these extras."""
    for line in md.distribution(name).requires or ():
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            yield req


def closure(roots: Iterable[str], *, cpu_torch: bool = False) -> dict[str, str]:
    """Canonical name -> installed version of the roots and everything they require (extras
    followed, markers evaluated for this interpreter and platform)."""
    todo = [Requirement(r) for r in roots]
    seen: dict[str, frozenset[str]] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == SELF or (cpu_torch and name.startswith(CUDA_ONLY)):
            continue
        extras = frozenset(req.extras) | seen.get(name, frozenset())
        if name in seen and extras == seen[name]:
            continue
        seen[name] = extras
        try:
            todo.extend(_requirements_of(name, extras))
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} (required for an image) is not installed in this virtualenv: "
                             "rebuild it with scripts/bootstrap.sh") from None
    return {n: md.version(n) for n in sorted(seen)}


def pins(image: Image) -> dict[str, str]:
    """The image's pins: pyproject.toml's where it pins the package, the venv's otherwise."""
    want = pyproject_pins()
    got = closure(image.roots, cpu_torch=image.cpu_torch)
    for name, version in got.items():
        if name in want and want[name] != version:
            raise SystemExit(f"pyproject.toml pins {name}=={want[name]} but this virtualenv has "
                             f"{version}: rebuild it with scripts/bootstrap.sh")
    if image.cpu_torch:
        for name in ("torch", "torchvision"):
            if name in got:
                got[name] = got[name].split("+")[0] + "+cpu"
    return got


def render(image: Image) -> str:
    via = "pyproject.toml's pins and the project virtualenv's versions"
    head = [f"# {image.name} image: the full dependency closure, generated by images/lock.py from {via}.",
            "# Installed with `pip install --no-deps -r` followed by `pip check`; do not edit by hand."]
    if image.cpu_torch:
        head.append("# torch/torchvision are the CPU builds (+cpu): the Dockerfile adds "
                    f"--extra-index-url {CPU_INDEX}")
    return "\n".join([*head, *(f"{n}=={v}" for n, v in pins(image).items())]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = ap.parse_args(argv)
    stale = []
    for image in IMAGES.values():
        text = render(image)
        if image.path.is_file() and image.path.read_text() == text:
            continue
        if args.check:
            stale.append(image.path.name)
        else:
            image.path.write_text(text)
            print(f"wrote {image.path.relative_to(ROOT)} ({text.count('==')} pins)")
    if stale:
        print(f"stale: {', '.join(stale)}; run `.venv/bin/python images/lock.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
