"""The container images, checked without a Docker engine: every Dockerfile parses, copies only
what the build context (.dockerignore) sends, pins its bases, runs as a non-root user in exec
form; the wheel built from that context carries the whole package; every entrypoint and the
executor's pod commands parse with the project's own CLIs; the API image's pinned requirements
cover everything the API loads with torch and the inference engines absent."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = ROOT / "images"
IMAGES = ("api", "worker", "trainer", "profiler")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VENV = "/opt/venv"
JOB_ENTRYPOINT = ["python", "-m", "hurricane", "job"]
# Not in the API image (the import-linter contract keeps torch out of hurricane.api; the
# inference engines and ONNX tooling belong to the job images).
API_BLOCKED = ("torch", "torchvision", "onnxruntime", "openvino", "onnx", "onnxscript")


# -- a small Dockerfile parser --------------------------------------------------------------------


@dataclass
class Instruction:
    cmd: str  # upper case: FROM, RUN, COPY, ...
    rest: str  # everything after the keyword, continuations joined
    line: int

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` / ``--name`` flags, and what follows them."""
        out: dict[str, str] = {}
        rest = self.rest
        while m := re.match(r"--([a-z-]+)(?:=(\S*))?\s+", rest):
            out[m.group(1)] = m.group(2) or ""
            rest = rest[m.end():]
        return out, rest

    def exec_form(self, text: str | None = None) -> list[str] | None:
        """The JSON-array (exec) form's words, or None for the shell form."""
        text = self.rest if text is None else text
        try:
            words = json.loads(text)
        except ValueError:
            return None
        return words if isinstance(words, list) and all(isinstance(w, str) for w in words) else None


@dataclass
class Stage:
    index: int
    base: str  # as written, ARGs not yet expanded
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def args(self) -> dict[str, str]:
        """ARG defaults declared in this stage."""
        out = {}
        for i in self.all("ARG"):
            name, _, default = i.rest.partition("=")
            out[name.strip()] = default.strip().strip('"')
        return out

    def pairs(self, cmd: str) -> dict[str, str]:
        """key=value pairs of every LABEL or ENV of the stage (later ones win)."""
        out = {}
        for i in self.all(cmd):
            for word in shlex.split(i.rest):
                key, eq, value = word.partition("=")
                if not eq:
                    raise ValueError(f"line {i.line}: {cmd} {i.rest!r}: use the key=value form")
                out[key] = value
        return out


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def base_image(self, stage: Stage) -> str:
        return expand(stage.base, self.global_args)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction) with backslash continuations joined; comment lines are
    dropped, inside a continuation too (as Docker does)."""
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        yield start, " ".join(buf)
        buf = []
    if buf:
        raise ValueError(f"line {start}: the file ends inside a line continuation")


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for n, line in logical_lines(path.read_text()):
        cmd, _, rest = line.partition(" ")
        ins = Instruction(cmd.upper(), rest.strip(), n)
        if "<<" in ins.rest and ins.cmd in ("RUN", "COPY", "ADD"):
            raise ValueError(f"{path.name}:{n}: heredocs are not supported by this parser")
        if ins.cmd == "FROM":
            _, target = ins.flags()
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", target, flags=re.IGNORECASE)
            if m is None:
                raise ValueError(f"{path.name}:{n}: cannot parse FROM {ins.rest!r}")
            stages.append(Stage(len(stages), m.group(1), m.group(2)))
        elif not stages:
            if ins.cmd != "ARG":
                raise ValueError(f"{path.name}:{n}: only ARG may precede the first FROM")
            name, _, default = ins.rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ValueError(f"{path.name}: no FROM")
    return Dockerfile(path, global_args, stages)


def expand(text: str, env: dict[str, str]) -> str:
    """$VAR / ${VAR} from ``env``; unknown variables stay as written."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def pinned(ref: str) -> bool:
    """An image reference with a digest, or with a tag that names an exact (patch) version:
    ``python:3.11.14-slim-bookworm`` is pinned, ``python:3.11-slim`` and ``latest`` float."""
    if re.search(r"@sha256:[0-9a-f]{64}$", ref):
        return True
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        return False
    return re.search(r"(?<![\d.])\d+\.\d+\.\d+(?![\d.])", tag) is not None


@pytest.mark.parametrize(("ref", "ok"), [
    ("python:3.11.14-slim-bookworm", True), ("nvidia/cuda:13.0.1-base-ubuntu22.04", True),
    ("reg.io:5000/team/img:1.2.3", True), ("python@sha256:" + "a" * 64, True),
    ("python:3.11-slim", False), ("python:latest", False), ("python", False),
    ("reg.io:5000/img", False), ("ubuntu:22.04", False),
])
def test_pinned(ref: str, ok: bool) -> None:
    assert pinned(ref) is ok


NON_PYTHON_DIRS = {"dashboard/src"}  # the API image's `ui` stage (Node) copies these


def builder_of(df: Dockerfile) -> Stage:
    """The stage that installs the Python package (``builder``; the API image has a ``ui``
    stage before it that builds the dashboard)."""
    return next(s for s in df.stages if s.name == "builder")


def dockerfile(image: str) -> Dockerfile:
    return parse_dockerfile(IMAGES_DIR / f"{image}.Dockerfile")


def copy_sources(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD: (flags, sources, destination), JSON or whitespace form."""
    flags, rest = ins.flags()
    words = ins.exec_form(rest) or rest.split()
    if len(words) < 2:
        raise ValueError(f"line {ins.line}: {ins.cmd} needs a source and a destination")
    return flags, words[:-1], words[-1]


# -- .dockerignore, matched as Docker (moby/patternmatcher) does ----------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go filepath.Match syntax plus ``**``: ``*`` and ``?`` never cross a ``/``."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1:i + 2] == "*":
            i += 1
            if pattern[i + 1:i + 2] == "/":
                i += 1
            out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
        elif ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":  # a character class, [^...] negated: the same in Go and in re
            end = pattern.index("]", i + 1)
            out += pattern[i:end + 1]
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class Rule:
    negate: bool  # a `!pattern` line: re-include
    pattern: str  # cleaned as Docker does (no leading /, no trailing /)
    regex: re.Pattern[str]


def load_dockerignore(text: str) -> list[Rule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = posixpath.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append(Rule(negate, line, _pattern_regex(line)))
    return rules


def ignored(path: str, rules: list[Rule]) -> bool:
    """The last rule that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = [path, *("/".join(parts[:k]) for k in range(1, len(parts)))]
    out = False
    for rule in rules:
        if any(rule.regex.match(c) for c in candidates):
            out = not rule.negate
    return out


RULES = load_dockerignore((ROOT / ".dockerignore").read_text())


def _may_reopen(folder: str, rules: list[Rule]) -> bool:
    """Could a `!` rule bring back something inside this (ignored) folder?"""
    for rule in rules:
        if rule.negate:
            literal = re.split(r"[*?\[\\]", rule.pattern)[0]
            if not literal or literal.startswith(folder + "/") or folder.startswith(literal):
                return True
    return False


def context_files(rules: list[Rule] = RULES) -> list[str]:
    """The files `docker build .` sends from this checkout, relative to it."""
    out = []
    for dirpath, dirs, files in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = sorted(d for d in dirs
                         if not ignored(prefix + d, rules) or _may_reopen(prefix + d, rules))
        out += [prefix + f for f in sorted(files) if not ignored(prefix + f, rules)]
    return out


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = load_dockerignore("*\n!src\n**/__pycache__\n!src/keep.pyc\nsrc/*.tmp\n/docs/**\n")
    assert ignored("README.md", rules) and not ignored("src", rules)
    assert not ignored("src/a/b.py", rules)  # a re-included folder brings its contents back
    assert ignored("src/a/__pycache__/b.pyc", rules)  # ... except what a later rule excludes
    assert not ignored("src/keep.pyc", rules)  # the last matching rule wins
    assert ignored("src/x.tmp", rules) and not ignored("src/a/x.tmp", rules)  # * stops at /
    assert ignored("docs/a/b.md", rules)
    assert _pattern_regex("a?c").match("abc") and not _pattern_regex("a?c").match("a/c")
    assert _pattern_regex("[a-c]x").match("bx") and not _pattern_regex("[^a]x").match("ax")
    assert _may_reopen("images", load_dockerignore("*\n!images/req-*.txt"))
    assert not _may_reopen("tests", load_dockerignore("*\n!images/req-*.txt"))


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", ".pypath/hurricane/cli.py", "runs/s/spec.json",
    "bench/.store/a/b.json", "bench/results/api_load.json", "bench/api_load.py",
    "build/lib/hurricane/cli.py", "dist/hurricane_nas-0.1.0-py3-none-any.whl",
    "hurricane/__pycache__/cli.cpython-311.pyc", "hurricane/runs/steps/__pycache__/a.cpython-311.pyc",
    "api/__pycache__/app.cpython-311.pyc", "hurricane/x.pyc", ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/hurricane/cli.data.json", ".ruff_cache/0.17.6/1", ".hypothesis/examples/a",
    "tests/test_api.py", "hurricane_nas.egg-info/PKG-INFO", "charts/hurricane/values.yaml",
    "examples/notes.md", "images/api.Dockerfile", "scripts/bootstrap.sh", "big-data/x.bin",
    "dashboard/node_modules/echarts/index.js", "api/ui/index.html", "api/ui/assets/index-x.js",
])
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path, RULES), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "hurricane/__init__.py", "hurricane/__main__.py",
    "hurricane/py.typed", "hurricane/runs/steps/__init__.py", "api/app.py", "workers/app.py",
    "operator/manifests.py", "images/requirements-api.txt", "images/requirements-trainer.txt",
    "dashboard/package-lock.json", "dashboard/src/main.ts", "examples/digits.yaml",
])
def test_dockerignore_sends(path: str) -> None:
    assert not ignored(path, RULES), f"{path} is needed by the image builds"


def test_build_context_is_small() -> None:
    files = context_files()
    size = sum((ROOT / f).stat().st_size for f in files)
    assert "pyproject.toml" in files and "hurricane/cli.py" in files
    assert size < 5 * 2**20, f"the build context is {size / 2**20:.1f} MiB in {len(files)} files"


# -- the Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_structure(image: str) -> None:
    df = dockerfile(image)
    assert len(df.stages) >= 2, "multi-stage: a builder and a runtime stage"
    names = [s.name for s in df.stages]
    for stage in df.stages:
        ref = df.base_image(stage)
        if ref not in names[:stage.index]:  # else: a stage built on an earlier one
            assert pinned(ref), f"{image}: FROM {ref} is not pinned to a version tag or digest"
        for ins in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_sources(ins)
            if "from" in flags:
                earlier = names[:stage.index] + [str(i) for i in range(stage.index)]
                assert flags["from"] in earlier, f"{image}:{ins.line}: --from={flags['from']} " \
                    "names no earlier stage"
                continue
            assert ins.cmd == "COPY", f"{image}:{ins.line}: ADD fetches and unpacks; use COPY"
            for src in sources:
                matches = sorted(ROOT.glob(src))
                assert matches, f"{image}:{ins.line}: COPY {src}: not in the build context"
                for m in matches:
                    rel = m.relative_to(ROOT).as_posix()
                    assert not ignored(rel, RULES), f"{image}:{ins.line}: .dockerignore excludes {rel}"
                    if m.is_dir() and rel not in NON_PYTHON_DIRS:
                        sources_py = [p.relative_to(ROOT).as_posix() for p in m.rglob("*.py")]
                        assert sources_py, f"{image}:{ins.line}: {rel} holds no Python sources"
                        lost = [p for p in sources_py if ignored(p, RULES)]
                        assert not lost, f"{image}:{ins.line}: .dockerignore drops {lost}"


@pytest.mark.parametrize("image", IMAGES)
def test_runtime_stage(image: str) -> None:
    df = dockerfile(image)
    rt = df.final
    assert df.base_image(rt) not in [s.name for s in df.stages], "the runtime starts from a base image"
    # only the virtualenv comes from the builder: no sources, compilers or caches
    copies = rt.all("COPY") + rt.all("ADD")
    assert copies, "the runtime stage copies the venv"
    for ins in copies:
        flags, sources, dest = copy_sources(ins)
        assert flags.get("from") == builder_of(df).name and sources == [VENV] and dest == VENV, \
            f"{image}:{ins.line}: the runtime stage copies only {VENV} from the builder"
    env = rt.pairs("ENV")
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH", "").startswith(f"{VENV}/bin:"), "`python`, `celery`, ... are the venv's"
    assert rt.all("WORKDIR"), "the runtime stage sets WORKDIR"
    # labels
    labels = {k: expand(v, rt.args()) for k, v in rt.pairs("LABEL").items()}
    oci = "org.opencontainers.image."
    for key in ("source", "title", "version", "licenses"):
        assert oci + key in labels, f"{image}: LABEL {oci}{key} missing"
    assert labels[oci + "version"] == PROJECT["version"]
    lic = PROJECT["license"]
    assert labels[oci + "licenses"] == (lic["text"] if isinstance(lic, dict) else lic)
    assert labels[oci + "title"] == f"hurricane-{image}"
    # a non-root user without a login shell, switched to before the entrypoint
    order = [i.cmd for i in rt.instructions]
    users = rt.all("USER")
    assert users and "ENTRYPOINT" in order
    assert order.index("ENTRYPOINT") > max(k for k, c in enumerate(order) if c == "USER")
    uid = users[-1].rest.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot)"
    from hurricane.operator.manifests import UID

    assert int(uid) == UID, "the job pods' runAsUser is the images' user"
    runs = " ".join(i.rest for i in rt.all("RUN"))
    assert re.search(rf"useradd .*--uid {uid}\b", runs) and "--shell /usr/sbin/nologin" in runs
    entry = rt.all("ENTRYPOINT")[-1]
    assert entry.exec_form() is not None, f"{image}: ENTRYPOINT must be exec form (a JSON array)"
    health = rt.all("HEALTHCHECK")
    assert bool(health) == (image == "api"), "only the API has a HEALTHCHECK"


@pytest.mark.parametrize("image", IMAGES)
def test_builder_builds_the_wheel_and_checks_dependencies(image: str) -> None:
    df = dockerfile(image)
    builder = builder_of(df)
    runs = [" ".join(i.rest.split()) for i in builder.all("RUN")]
    req = f"images/requirements-{image}.txt"
    copied = [s for i in builder.all("COPY") for s in copy_sources(i)[1]]
    assert req in copied, f"{image}: the builder installs {req}"
    assert any("pip install --no-deps" in r and "-r " in r and "pip check" in r for r in runs)
    assert any("pip wheel --no-deps" in r and "pip install --no-deps" in r for r in runs)
    # the build backend is pinned (the wheel builds without isolation, as this suite builds it)
    tools = dict(re.findall(r"\b(pip|setuptools)==(\S+)", " ".join(r for r in runs if "--upgrade" in r)))
    assert set(tools) == {"pip", "setuptools"}, "the builder pins pip and setuptools"
    backend = Requirement(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"][0])
    assert backend.name == "setuptools" and backend.specifier.contains(tools["setuptools"])
    assert requirement_pins(image).get("setuptools", tools["setuptools"]) == tools["setuptools"]
    assert any("pip wheel --no-deps --no-build-isolation" in r for r in runs)
    cpu = any("--extra-index-url https://download.pytorch.org/whl/cpu" in r for r in runs)
    assert cpu == (image in ("worker", "profiler")), "CPU torch comes from PyTorch's CPU index"


# -- the wheel the images install -----------------------------------------------------------------


def test_wheel_from_the_build_context_carries_the_whole_package(tmp_path: Path) -> None:
    ctx = tmp_path / "context"
    for rel in context_files():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ctx / rel)
    out = tmp_path / "wheels"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out), str(ctx)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("hurricane_nas-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    mapping = {"hurricane": "hurricane", "api": "hurricane/api", "workers": "hurricane/workers",
               "operator": "hurricane/operator"}
    for folder, package in mapping.items():
        for py in (ROOT / folder).rglob("*.py"):
            inner = py.relative_to(ROOT / folder).as_posix()
            if "__pycache__" not in inner:
                assert f"{package}/{inner}" in names, f"the wheel lacks {package}/{inner}"
    assert "hurricane/py.typed" in names
    assert not any(n.startswith(("api/", "workers/", "operator/")) for n in names), \
        "the components exist only inside hurricane/ (never a top-level `operator`)"
    entry = zipfile.ZipFile(whl).read(f"hurricane_nas-{PROJECT['version']}.dist-info/entry_points.txt")
    assert b"hurricane = hurricane.cli:main" in entry


# -- entrypoints and the commands the chart and the executor run ----------------------------------


def entrypoint(image: str) -> list[str]:
    words = dockerfile(image).final.all("ENTRYPOINT")[-1].exec_form()
    assert words is not None
    return words


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_program_is_in_the_image(image: str) -> None:
    prog = entrypoint(image)[0]
    if prog == "python":  # the venv's, first on PATH
        return
    scripts = [e for e in md.entry_points(group="console_scripts") if e.name == prog]
    assert scripts, f"no distribution provides the `{prog}` command"
    dists = {canonicalize_name(e.dist.name) for e in scripts if e.dist is not None}
    assert dists & set(requirement_pins(image)), f"{prog} comes from {dists}: not in the {image} image"


def _click_rest(ctx: Any) -> list[str]:
    """What a click group left for its subcommand (the attribute moved in click 8.2)."""
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return [*protected, *ctx.args]


def parse_job_command(argv: list[str]) -> dict[str, Any]:
    """``python -m hurricane <args>`` through hurricane.cli's Typer app, without running it."""
    import typer.main

    from hurricane.cli import app

    assert argv[:3] == ["python", "-m", "hurricane"], argv
    group: Any = typer.main.get_command(app)  # a group of typer's own (vendored) click
    ctx = group.make_context("hurricane", list(argv[3:]), resilient_parsing=False)
    name, cmd, rest = group.resolve_command(ctx, _click_rest(ctx))
    assert cmd is not None and name == "job"
    return cmd.make_context(name, rest, parent=ctx, resilient_parsing=False).params


@pytest.mark.parametrize("image", ["trainer", "profiler"])
def test_job_images_run_the_job_command(image: str) -> None:
    ep = entrypoint(image)
    assert ep == JOB_ENTRYPOINT
    args = ["profile", "--search", "s", "--store", "s3://b/p", "--device", "cpu"]
    params = parse_job_command([*ep, *args])
    assert params == {"name": "profile", "search": "s", "store": "s3://b/p", "device": "cpu"}
    from hurricane.runs.contract import JobSpec

    for job in (JobSpec("digits-0a1b", "stage1", "s3://bucket/runs"),
                JobSpec("digits-0a1b", "profile", "s3://bucket/runs", device="cpu")):
        cmd = job.command()
        assert cmd[:len(ep)] == ep, f"the executor's command {cmd} does not start with {ep}"
        assert parse_job_command(cmd)["name"] == job.step


def test_executor_pods_run_in_the_job_images() -> None:
    """The Kubernetes executor's pods: measuring jobs in the profiler image run JobSpec.command();
    training jobs in the trainer image run torchrun around the same module; both as the
    images' user."""
    from hurricane.operator.manifests import Cluster, manifests
    from hurricane.runs.contract import JobSpec
    from hurricane.settings import Settings

    cluster = Cluster.from_settings(Settings(
        k8s_trainer_image="hurricane-trainer:0.1.0", k8s_profiler_image="hurricane-profiler:0.1.0",
        k8s_pools=[{"name": "cpu", "label": "cpu"}]))  # type: ignore[list-item]
    owner = {"metadata": {"name": "hurricane-search-s", "uid": "0f6a5c3e-1d2b-4c5d-9e8f-0a1b2c3d4e5f"}}
    jobs = [JobSpec("digits-0a1b", "profile", "s3://b/p", device="cpu", node_label="cpu"),
            JobSpec("digits-0a1b", "stage1", "s3://b/p", nprocs=2, nodes=2),
            JobSpec("digits-0a1b", "search1", "s3://b/p")]
    seen = set()
    for job in jobs:
        for m in manifests(job, cluster, owner):
            if m["kind"] != "Job":
                continue
            pod = m["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            image = container["image"].split(":")[0].removeprefix("hurricane-")
            seen.add(image)
            assert pod["securityContext"]["runAsUser"] == int(dockerfile(image).final.all("USER")[-1].rest)
            cmd = container["command"]
            ep = entrypoint(image)
            if cmd[:3] == ["python", "-m", "torch.distributed.run"]:
                assert image == "trainer" and "torch" in requirement_pins(image)
                tail = cmd[len(cmd) - 1 - cmd[::-1].index("-m"):]  # from the last -m on
                assert ["python", *tail] == job.command()
            else:
                assert cmd[:len(ep)] == ep and cmd == job.command()
            assert parse_job_command(job.command())["name"] == job.step
    assert seen == {"trainer", "profiler"}


def test_api_entrypoint() -> None:
    from fastapi import FastAPI
    from uvicorn.main import main as uvicorn_command  # the click command (uvicorn.main is shadowed)

    ep = entrypoint("api")
    assert ep[0] == "uvicorn"
    ctx = uvicorn_command.make_context("uvicorn", [*ep[1:], "--workers", "2"],
                                       resilient_parsing=False)
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000
    assert ctx.params["workers"] == 2
    module, _, attr = ctx.params["app"].partition(":")
    app = getattr(importlib.import_module(module), attr)
    assert isinstance(app, FastAPI)
    assert "get" in app.openapi()["paths"]["/healthz"], "the route the HEALTHCHECK asks"


def test_worker_entrypoint() -> None:
    from celery import Celery
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    ep = entrypoint("worker")
    assert ep[0] == "celery"
    # what the chart appends
    args = ["-Q", "control", "-c", "2", "-n", "control@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO"]
    ctx = celery.make_context("celery", [*ep[1:], *args], resilient_parsing=False)
    app = find_app(ctx.params["app"])
    assert isinstance(app, Celery) and app.main == "hurricane"
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)  # what celery() sets
    name, cmd, rest = celery.resolve_command(ctx, _click_rest(ctx))
    assert name == "worker" and cmd is not None
    params = cmd.make_context(name, rest, parent=ctx, resilient_parsing=False).params
    assert params["concurrency"] == 2 and params["hostname"].startswith("control@")
    assert "control" in str(params["queues"])


# -- the HEALTHCHECK ------------------------------------------------------------------------------


@pytest.fixture
def healthz_server() -> Iterator[tuple[str, dict[str, int]]]:
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = state["status"] if self.path == "/healthz" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}')

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_api_healthcheck_runs_without_curl(healthz_server: tuple[str, dict[str, int]]) -> None:
    url, state = healthz_server
    (hc,) = dockerfile("api").final.all("HEALTHCHECK")
    flags, rest = hc.flags()
    assert rest.startswith("CMD ") and {"interval", "timeout", "retries"} <= set(flags)
    words = hc.exec_form(rest[4:])
    assert words is not None and words[:2] == ["python", "-c"], "exec form, python only"
    port = entrypoint("api")[entrypoint("api").index("--port") + 1]
    code = words[2].replace(f"http://127.0.0.1:{port}", url)
    assert code != words[2], "the health check probes the port the entrypoint listens on"

    def run() -> int:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    assert run() == 0
    state["status"] = 503
    assert run() != 0


# -- requirements ---------------------------------------------------------------------------------


def requirement_pins(image: str) -> dict[str, str]:
    """Canonical name -> pinned version of images/requirements-<image>.txt; every line must be
    a bare ``name==version`` (comments aside)."""
    pins: dict[str, str] = {}
    path = IMAGES_DIR / f"requirements-{image}.txt"
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert m, f"{path.name}:{n}: {raw!r} is not a bare name==version pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name}:{n}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hurricane_images_lock", IMAGES_DIR / "lock.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_image_requirements_file_is_used_and_pinned() -> None:
    used = {s for image in IMAGES for i in builder_of(dockerfile(image)).all("COPY")
            for s in copy_sources(i)[1] if s.startswith("images/")}
    present = {p.relative_to(ROOT).as_posix() for p in IMAGES_DIR.glob("requirements-*.txt")}
    assert used == present
    for image in IMAGES:
        assert requirement_pins(image)


@pytest.mark.parametrize("image", IMAGES)
def test_requirements_agree_with_pyproject_and_are_closed(image: str) -> None:
    pins = requirement_pins(image)
    lock = _lock()
    for name, version in lock.pyproject_pins().items():
        if name in pins:
            assert Version(pins[name]).public == version, \
                f"requirements-{image}.txt pins {name}=={pins[name]}, pyproject.toml {version}"
    roots = lock.IMAGES[image].roots
    for r in roots:
        assert canonicalize_name(Requirement(r).name) in pins, f"{image}: root {r} not pinned"
    # closed: every requirement of every pinned package (this venv's metadata, markers for this
    # platform) is pinned too, at a version its specifier accepts: what `pip check` will verify
    want = lock.closure(roots, cpu_torch=lock.IMAGES[image].cpu_torch)
    assert set(pins) == set(want), (f"requirements-{image}.txt: missing {sorted(set(want) - set(pins))}, "
                                    f"extra {sorted(set(pins) - set(want))}; run images/lock.py")
    for name in pins:
        for req in md.distribution(name).requires or ():
            r = Requirement(req)
            dep = canonicalize_name(r.name)
            if dep in pins and (r.marker is None or r.marker.evaluate({"extra": ""})):
                assert r.specifier.contains(pins[dep], prereleases=True), \
                    f"{name} requires {req}; requirements-{image}.txt pins {dep}=={pins[dep]}"
    torch = pins.get("torch", "")
    if image in ("worker", "profiler"):
        assert torch.endswith("+cpu") and not any(n.startswith(("nvidia-", "triton")) for n in pins)
    if image == "trainer":  # CUDA torch from PyPI, with NCCL for DDP
        assert "+" not in torch and any(n.startswith("nvidia-nccl") for n in pins)
    if image == "api":
        assert not set(pins) & {canonicalize_name(b) for b in (*API_BLOCKED, "typer")}


PROBE = r"""
import importlib.abc, json, os, sys, tempfile
before = set(sys.modules)  # interpreter start-up (site, .pth files): not the API's doing
ABSENT = set(json.loads(sys.argv[1]))
refused = set()

class Absent(importlib.abc.MetaPathFinder):
    # as if not installed (sys.modules[name] = None would break scipy's torch-array check)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            refused.add(name.partition(".")[0])
            raise ModuleNotFoundError(f"No module named {name!r} (not in the API image)", name=name)
        return None

sys.meta_path.insert(0, Absent())
os.environ["MPLBACKEND"] = "Agg"
import hurricane.api.app
kind = type(hurricane.api.app.app).__name__
# what the API loads after start-up: uvicorn's loop and HTTP parser, the s3:// store, the PNG plot
import uvicorn.main, uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl, uvicorn.lifespan.on
import hurricane.storage.s3store
from hurricane.latency.proxy import plot_srcc
with tempfile.TemporaryDirectory() as d:
    from pathlib import Path
    plot_srcc(["a", "b"], [[1.0, 0.5], [0.5, 1.0]], Path(d) / "m.png")
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())
         if m is not None and n not in before}
print(json.dumps({"app": kind, "files": files, "refused": sorted(refused)}))
"""


def test_api_imports_are_covered_by_its_requirements(tmp_path: Path) -> None:
    """hurricane.api.app (and what it loads once serving) imports with only the distributions
    of requirements-api.txt importable: torch, torchvision, onnxruntime, openvino, onnx* and
    everything else this venv has beyond that list are made absent; what it then loads from
    site-packages is covered by the list."""
    pins = requirement_pins("api")
    owners = md.packages_distributions()
    absent = set(API_BLOCKED) | {
        top for top, dists in owners.items()
        if not {canonicalize_name(d) for d in dists} & set(pins)
        and top != "hurricane" and not top.startswith("__editable__")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(absent))],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["app"] == "FastAPI"
    tops = set()  # top-level import names, from where each module's file lies (extension
    for file in out["files"].values():  # modules may register under names of their own)
        m = re.search(r"[/\\](?:site|dist)-packages[/\\]([^/\\]+)", file or "")
        if m:
            top = m.group(1).split(".")[0]  # a package folder, or a module file's name
            if top != "hurricane" and not top.startswith("__editable__"):
                tops.add(top)
    assert not tops & set(API_BLOCKED)
    unknown = sorted(t for t in tops if t not in owners)
    assert not unknown, f"modules loaded from site-packages with no distribution: {unknown}"
    loaded = {canonicalize_name(d) for t in tops for d in owners[t]}
    assert loaded <= set(pins), f"the API loads {sorted(loaded - set(pins))}: not in requirements-api.txt"
    # the measurement saw the real stack (the latency predictor brings numpy and scipy)
    assert {"fastapi", "celery", "minio", "numpy", "scipy", "matplotlib", "uvloop"} <= loaded
    # and the API image stays lean: scikit-learn (the digits loader's) is not in it
    assert "scikit-learn" not in loaded and "scikit-learn" not in pins
