"""A dry run for the cluster admin: every Kubernetes object a search would create under a
release's chart values, built by the functions the executor calls (``manifests``), without a
cluster. The values become settings the way they do in a release: the chart is rendered with
real Helm (helm-python-sdk) and its settings ConfigMap and S3 Secret are read as the workers'
environment.

    hurricane cluster plan SPEC --values VALUES.yaml [--values MORE.yaml] [--chart DIR]
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from hurricane.operator.chart import default_chart, merge_values, render_chart
from hurricane.operator.manifests import Cluster, Manifest, manifests, owner_configmap
from hurricane.settings import Settings, get_settings
from hurricane.spec import SearchSpec

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"  # the cluster assigns the real one
S3_KEYS = ("HURRICANE_S3_ACCESS_KEY", "HURRICANE_S3_SECRET_KEY")



def dotted(key: str, value: Any) -> dict[str, Any]:
    """``a.b.c`` = value as nested maps (helm --set's keys)."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out  # type: ignore[no-any-return]


def release_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The HURRICANE_* environment the release's settings load from: its settings ConfigMap
    plus the S3 keys of the Secret its jobs get (HURRICANE_K8S_S3_SECRET, the scoped job
    user's; placeholders when the values name an existing Secret)."""
    cms = [o for o in objs if o["kind"] == "ConfigMap"
           and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "settings"]
    if len(cms) != 1:
        raise ValueError("the chart rendered no settings ConfigMap: is this hurricane's chart?")
    env = dict(cms[0]["data"])
    secret = env.get("HURRICANE_K8S_S3_SECRET")
    for o in objs:
        if o["kind"] == "Secret" and o["metadata"]["name"] == secret:
            env.update({k: v for k, v in (o.get("stringData") or {}).items() if k in S3_KEYS})
            env.update({k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()
                        if k in S3_KEYS})
    for k in S3_KEYS:  # s3.existingSecret: the real keys live in the cluster only
        env.setdefault(k, f"from-secret-{secret}-placeholder")
    return env


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Exactly ``values`` as the process's HURRICANE_* environment, for settings built as a
    worker builds them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("HURRICANE_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)
        get_settings.cache_clear()


def settings_from_env(env: dict[str, str]) -> Settings:
    with _environment(env):
        return Settings()


@dataclass(frozen=True)
class Planned:
    step: str
    unit: str
    obj: Manifest


def plan(spec: SearchSpec, settings: Settings, *, search_id: str) -> list[Planned]:
    """The owner ConfigMap, then every job's objects in plan order (steps that fan out per
    winner planned at their most: one per device)."""
    from hurricane.runs.pipeline import planned_jobs
    from hurricane.storage.store import LocalStore

    cluster = Cluster.from_settings(settings)
    out = [Planned("", "", owner_configmap(search_id, cluster))]
    owner: dict[str, Any] = {"metadata": {**out[0].obj["metadata"], "uid": PLACEHOLDER_UID}}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = planned_jobs(spec, search_id, LocalStore(tmp), store_url=settings.store)
    for step, unit, job in jobs:
        try:
            objs = manifests(job, cluster, owner)
        except (LookupError, ValueError) as err:
            raise PlanError(f"step {step}, unit {unit}: {err}") from err
        out.extend(Planned(step, unit, obj) for obj in objs)
    return out


class PlanError(ValueError):
    """A job of the search cannot run under these values (e.g. no pool for its device)."""


def to_yaml(planned: list[Planned], *, header: list[str]) -> str:
    parts = ["".join(f"# {line}\n" for line in header)]
    for p in planned:
        what = (f"# step {p.step}, unit {p.unit}: {p.obj['kind']}\n" if p.step
                else "# the search's owner object (deleting it deletes every job below)\n")
        parts.append("---\n" + what + yaml.safe_dump(dict(p.obj), sort_keys=False))
    return "".join(parts)


# -- the command line --------------------------------------------------------------------------

cluster_app = typer.Typer(no_args_is_help=True,
                          help="Kubernetes: what a search creates; a local cluster to try it.")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@cluster_app.command("plan")
def plan_command(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="search spec (YAML/JSON)")],
    values: Annotated[list[Path] | None, typer.Option(
        "--values", "-f", help="chart values file(s), as given to helm install -f")] = None,
    set_values: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE on top of the files, as helm --set (dotted keys, YAML "
        "scalars): e.g. --set s3.secretKey=placeholder-secret")] = None,
    chart: Annotated[Path | None, typer.Option(
        help="the hurricane chart (default: charts/hurricane of this checkout)")] = None,
    release: Annotated[str, typer.Option(help="Helm release name")] = "hurricane",
    namespace: Annotated[str, typer.Option(help="release namespace")] = "hurricane",
    search_id: Annotated[str | None, typer.Option(
        help="search id to plan for (default: <spec name>-00000000)")] = None,
) -> None:
    """Print, as YAML, every Kubernetes object a search of SPEC would create under these chart
    values (each step, device and stage; Jobs, Services, TrainJobs, the owner ConfigMap), built
    by the executor's own functions. No cluster is needed."""
    from hurricane.spec import SpecError, read_spec_file

    chart_dir = chart or default_chart()
    if chart_dir is None or not (chart_dir / "Chart.yaml").is_file():
        _fail(f"no chart at {chart_dir}: give --chart (the directory with Chart.yaml)")
        return
    try:
        spec = read_spec_file(spec_file)
    except (SpecError, OSError) as err:
        _fail(str(err))
        return
    user = _user_values(values or [], set_values or [])
    try:
        import helm_python
    except ImportError:
        _fail("rendering the chart needs helm-python-sdk: pip install 'hurricane-nas[cluster]'")
        return
    try:
        objs = render_chart(chart_dir, user, release=release, namespace=namespace)
    except helm_python.HelmError as err:
        _fail(f"the chart refused the values: {err}")
        return
    try:
        settings = settings_from_env(release_env(objs))
    except ValueError as err:
        _fail(f"the chart's settings do not load: {err}")
        return
    sid = search_id or f"{spec.name}-00000000"
    try:
        planned = plan(spec, settings, search_id=sid)
    except PlanError as err:
        _fail(f"this search cannot run under these values: {err}")
        return
    header = _header(spec, sid, settings, planned,
                     f"release {release} in namespace {namespace}, chart {chart_dir}")
    typer.echo(to_yaml(planned, header=header), nl=False)


def _user_values(files: list[Path], sets: list[str]) -> dict[str, Any]:
    """The values files merged in order, then each --set on top, as helm does."""
    user: dict[str, Any] = {}
    for f in files:
        try:
            user = merge_values(user, yaml.safe_load(f.read_text()) or {})
        except (OSError, yaml.YAMLError) as err:
            _fail(f"--values {f}: {err}")
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            _fail(f"--set {item!r}: give KEY=VALUE")
        user = merge_values(user, dotted(key, yaml.safe_load(raw) if raw else ""))
    return user


def _header(spec: Any, sid: str, settings: Any, planned: list[Any], release: str) -> list[str]:
    """The comment lines above the plan: what was planned, under which release and setup."""
    kinds: dict[str, int] = {}
    for p in planned:
        kinds[p.obj["kind"]] = kinds.get(p.obj["kind"], 0) + 1
    kueue = settings.k8s_kueue
    return [f"hurricane cluster plan: search {sid} ({spec.strategy}, devices "
            f"{', '.join(d.name for d in spec.devices)})",
            release,
            f"training backend {settings.k8s_training_backend}; Kueue "
            + (f"queue {kueue.queue}"
               + (f", priority {kueue.priority_class}" if kueue.priority_class else "")
               if kueue.enabled else "off"),
            "objects: " + ", ".join(f"{n} {k}" for k, n in kinds.items()),
            f"ownerReferences name uid {PLACEHOLDER_UID}: the cluster assigns the real one"]


def register(app: typer.Typer) -> None:
    """The ``cluster`` command group of ``hurricane`` (entry point hurricane.commands)."""
    from hurricane.operator.localcluster import add_commands

    add_commands(cluster_app)  # up, down, status: the Kubernetes mode on this machine
    app.add_typer(cluster_app, name="cluster")
