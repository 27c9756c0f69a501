"""The `hurricane` command line: run searches, check specs, run one step or job (pods)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hurricane import progress

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-aware neural architecture search (HURRICANE).")
spec_app = typer.Typer(no_args_is_help=True, help="Search specs: schema and validation.")
ops_app = typer.Typer(no_args_is_help=True, help="The operator pool.")
devices_app = typer.Typer(no_args_is_help=True, help="Device profiles.")
app.add_typer(spec_app, name="spec")
app.add_typer(ops_app, name="ops")
app.add_typer(devices_app, name="devices")
dataset_app = typer.Typer(no_args_is_help=True, help="Packed datasets: write and inspect shards.")
app.add_typer(dataset_app, name="dataset")

StoreOpt = Annotated[str, typer.Option(
    "--store", envvar="HURRICANE_STORE", help="artifact store: a directory or file:// URL")]
DEFAULT_STORE = "./runs"


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _logging() -> None:
    """Our progress lines at INFO; libraries (onnxscript's exporter passes) only warnings."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hurricane").setLevel(logging.INFO)


def _reporter(quiet: bool = False) -> progress.Reporter:
    if os.environ.get("HURRICANE_PROGRESS") == "jsonl":
        return progress.JsonlReporter()
    if not quiet and sys.stderr.isatty():
        return progress.RichReporter()
    return progress.LogReporter()


def _load(path: Path):  # type: ignore[no-untyped-def]
    from hurricane.spec import SpecError, read_spec_file

    try:
        return read_spec_file(path)
    except SpecError as err:
        _fail(str(err))


@spec_app.command("schema")
def spec_schema() -> None:
    """Print the JSON schema of a search spec."""
    from hurricane.spec import spec_schema as schema

    typer.echo(json.dumps(schema(), indent=2))


@spec_app.command("validate")
def spec_validate(path: Path) -> None:
    """Check a spec file (YAML or JSON); errors name each field and what is allowed."""
    spec = _load(path)
    from hurricane.nets.backbone import Layout

    layout = Layout.from_spec(spec.backbone)
    n_ops = len(spec.space.ops)
    typer.echo(f"{path}: valid ({spec.strategy}, {spec.dataset.name}, {layout.num_layers} layers "
               f"× {n_ops} ops, devices: {', '.join(d.name for d in spec.devices)})")


def _check_source(spec) -> None:  # type: ignore[no-untyped-def]
    """Data outside the roots and buckets an operator set (HURRICANE_DATA_ROOTS/_BUCKETS)
    fails now, naming dataset.path and what is allowed; without them a local run reads what
    its user names."""
    from hurricane.data.datasets import DatasetError, check_readable

    try:
        check_readable(spec.dataset)
    except DatasetError as err:
        _fail(str(err))


def _check_packed_source(spec) -> None:  # type: ignore[no-untyped-def]
    """A packed set that is not there fails now, not after profiling."""
    ds = spec.dataset
    if ds.name != "packed":
        return
    from hurricane.data.packed import DatasetError, check_packed

    try:
        check_packed(str(ds.path), spec.backbone.num_classes)
    except (DatasetError, ValueError) as err:
        _fail(str(err))


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="search spec (YAML/JSON)")],
    store: StoreOpt = DEFAULT_STORE,
    search_id: Annotated[str | None, typer.Option(
        help="resume this search (or name a new one); default: <name>-<random>")] = None,
    executor: Annotated[str, typer.Option(help="process (default) or inline")] = "process",
    quiet: Annotated[bool, typer.Option(help="log lines instead of progress bars")] = False,
) -> None:
    """Run a whole search on this machine; print where the artifacts are."""
    spec = _load(spec_path)
    from hurricane.runs.executor import JobFailed, create_executor
    from hurricane.runs.pipeline import SearchConflict, run_search
    from hurricane.runs.report import verdict_words
    from hurricane.search.evolution import InfeasibleBudget
    from hurricane.storage.store import search_key
    from hurricane.storage.stores import open_store

    _logging()
    try:
        ex = create_executor(executor)
    except KeyError as err:
        _fail(f"--executor: {err}")
    _check_source(spec)
    _check_packed_source(spec)
    st = open_store(store)
    with progress.use_reporter(_reporter(quiet)):
        try:
            sid, report = run_search(spec, st, ex, search_id)
        except (SearchConflict, InfeasibleBudget, JobFailed, ValueError) as err:
            _fail(str(err), 1)
    typer.echo(f"\nsearch {sid} finished in {report['total_s']:.1f} s")
    for name, d in report["devices"].items():
        measured = d["measured_latency_ms"]
        chk = d.get("latency_check")
        shown = "not measurable (table)" if measured is None else f"{measured:.3f} ms measured" + (
            f" [{chk['low_ms']:.3f}-{chk['high_ms']:.3f}, {chk['verdict']}]" if chk else "")
        typer.echo(f"  {name}: top-1 {d['top1']:.2%}, latency {shown} "
                   f"/ {d['predicted_latency_ms']:.3f} ms predicted "
                   f"(budget {d['budget_ms']:.3f} ms)\n    arch {d['arch']}")
        if d.get("finalists"):
            typer.echo(f"    picked among evolution's top {d['finalists']} fine-tuned from the "
                       f"supernet ({d['finetuned_top1']:.1%} validation; "
                       f"{d['supernet_rank']} of {d['finalists']} through the supernet)")
        for k, v in d["artifacts"].items():
            typer.echo(f"    {k:11s} {v}")
    typer.echo(f"  report      {st.uri(search_key(sid, 'report.json'))}")
    for label, t in (report.get("supernets") or {}).items():
        q = t.get("quality")
        if q:
            ranking = ("" if q.get("split_half_rho") is None else
                       f", split-half rank agreement {q['split_half_rho']:.2f}"
                       + ("" if q.get("stability_rho") is None
                          else f", {q['stability_rho']:.2f} with the check before"))
            typer.echo(f"  supernet {label}: random architectures {q['accuracy_mean']:.1%} "
                       f"± {q['accuracy_std']:.1%} through it (chance {q['chance']:.1%}"
                       f"{ranking}), {t['iterations']} iterations, final training loss "
                       f"{t['final_loss']:.3f}: {verdict_words(q).replace('**', '')}")
    for w in report.get("warnings") or ():
        typer.echo(f"WARNING: {w}", err=True)


@app.command()
def step(
    name: str,
    search: Annotated[str, typer.Option(help="search id")],
    store: StoreOpt = DEFAULT_STORE,
    executor: Annotated[str, typer.Option(help="where its job runs")] = "inline",
) -> None:
    """Run one pipeline step of a submitted search (idempotent)."""
    import hurricane.runs.steps  # noqa: F401
    from hurricane.runs.executor import create_executor
    from hurricane.runs.pipeline import run_step, stored_spec
    from hurricane.storage.stores import open_store

    st = open_store(store)
    with progress.use_reporter(_reporter()):
        out = run_step(name, stored_spec(st, search), search, st, create_executor(executor))
    typer.echo(json.dumps(out, indent=2))


@app.command()
def job(
    name: str,
    search: Annotated[str, typer.Option(help="search id")],
    store: StoreOpt = DEFAULT_STORE,
    device: Annotated[str | None, typer.Option(help="only this target device")] = None,
) -> None:
    """Run one step's heavy job in this process (the command a pod runs). Exit code 65: the
    input cannot work (not retried); 75: the object store was unreachable (retried)."""
    from hurricane.runs.jobs import job_main

    _logging()
    with progress.use_reporter(_reporter()):
        code = job_main(name, search, store, device)
    if code:
        raise typer.Exit(code)


@app.command()
def status(
    search: Annotated[str, typer.Argument(metavar="ID")],
    store: Annotated[str | None, typer.Option(
        "--store", help="a local run's store (default ./runs when no server is set)")] = None,
    server: Annotated[str | None, typer.Option(
        "--server", help="ask this API (default: HURRICANE_SERVER, else the local stack)")] = None,
    token: Annotated[str | None, typer.Option("--token", help="bearer token")] = None,
) -> None:
    """Show a search's state, plan and per-step (per-device) states and timings: from the
    service when one is set or runs here, else from a local store."""
    from hurricane.service.client import NoServer, resolve

    if store is None:
        try:
            resolve(server, token)
        except NoServer:
            store = os.environ.get("HURRICANE_STORE", DEFAULT_STORE)
        else:
            from hurricane.service.cli_service import remote_status

            remote_status(search, server, token)
            return
    from hurricane.runs.records import SearchNotFound, summarize
    from hurricane.storage.stores import open_store

    try:
        typer.echo(json.dumps(summarize(open_store(store), search), indent=2))
    except SearchNotFound:
        _fail(f"no search {search!r} in {store}")


@ops_app.command("list")
def ops_list(
    cin: int = 64, cout: int = 64, hw: int = 56,
    stride: Annotated[int, typer.Option(min=1, max=2)] = 1,
) -> None:
    """Every registered op with FLOPs (multiply-adds) and parameters at one input shape."""
    from hurricane.nets.flops import op_cost
    from hurricane.nets.ops import OPS

    typer.echo(f"{'op':14s} {'MFLOPs':>10s} {'params':>10s}   (input {cin}x{hw}x{hw} -> {cout}, "
               f"stride {stride})")
    for name in OPS:
        c = op_cost(name, cin, cout, stride, hw)
        typer.echo(f"{name:14s} {c.macs / 1e6:10.3f} {c.params:10d}")


@devices_app.command("list")
def devices_list() -> None:
    """Registered device profiles, and whether this machine can run each."""
    from hurricane.latency.backends import backend_for
    from hurricane.latency.devices import DEVICES

    typer.echo(f"{'device':11s} {'backend':12s} {'node':5s} {'here':4s} description")
    for name in DEVICES:
        d = DEVICES.get(name)
        why = backend_for(d).unavailable(d)
        typer.echo(f"{name:11s} {d.backend:12s} {d.node_label:5s} {'yes' if not why else 'no':4s} "
                   f"{d.description}" + (f"\n{'':35s}({why})" if why else ""))


def _read_source(arg: str):  # type: ignore[no-untyped-def]
    """``[NAME=]PATH``: a layer × op table (profile's CSV or JSON) or a measured-latency CSV."""
    from hurricane.latency.latency_sources import MeasuredLatencies

    name, _, rest = arg.partition("=")
    path = Path(rest) if rest and "/" not in name else Path(arg)
    label = name if rest and "/" not in name else path.stem
    if not path.is_file():
        _fail(f"{path}: no such file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        _fail(f"{path}: cannot read it ({err})")
    first = text.lstrip().split("\n", 1)[0]
    try:
        if path.suffix == ".json" or first.replace(" ", "").startswith("layer,op,median_ms"):
            from hurricane.latency.profiling import LatencyTable  # imports torch: only for tables

            try:
                return label, LatencyTable.load(path, device=label)
            except (KeyError, TypeError, json.JSONDecodeError) as err:
                raise ValueError(f"not a latency table ({type(err).__name__}: {err})") from None
        return None, MeasuredLatencies.from_csv(text, source=str(path))
    except ValueError as err:
        msg = str(err)
        _fail(msg if msg.startswith(str(path)) else f"{path}: {msg}")


@devices_app.command("adapt")
def devices_adapt(
    name: Annotated[str, typer.Argument(help="the new device's name")],
    spec: Annotated[Path, typer.Option(help="a search spec: the device is built for its space "
                                             "(backbone layers and profiled ops)")],
    table: Annotated[list[str], typer.Option(
        "--table", metavar="NAME=FILE", help="a known device's layer table (`hurricane profile "
        "--out` CSV or JSON) covering the spec's space; at least 2")],
    pick: Annotated[int | None, typer.Option(
        min=3, max=1000, help="print which K architectures to time on the device (CSV arch "
        "column, in order) and stop")] = None,
    measurements: Annotated[Path | None, typer.Option(
        help="arch,latency_ms CSV of architectures timed on the device")] = None,
    out: Annotated[Path | None, typer.Option(
        help="write NAME.table.csv (import it: `PUT /v1/devices/NAME/table`), NAME.table.json "
             "and NAME.predictor.json here")] = None,
    seed: Annotated[int, typer.Option(help="seed of the prior's reference set and the pick")] = 0,
) -> None:
    """A new device from a few measurements: which architectures to time on it (--pick), then
    its predictor and layer table from the known devices' tables and those timings
    (--measurements)."""
    from hurricane.latency.adapt import adapt_device, prior_of, read_measurements, spec_space
    from hurricane.latency.adapt import pick as pick_archs

    if (pick is None) == (measurements is None):
        _fail("give exactly one of --pick K (which architectures to time) or --measurements "
              "FILE (their timings)")
    space = spec_space(_load(spec))
    tables: dict[str, Any] = {}
    for arg in table:
        label, src = _read_source(arg)
        if label is None:
            _fail(f"--table {arg}: not a layer table (layer,op,median_ms CSV or JSON)")
        if label in tables:
            _fail(f"--table: two tables are named {label!r}; name them with NAME=FILE")
        tables[label] = src
    try:
        prior = prior_of(tables, space, seed=seed, device=name)
        if pick is not None:
            typer.echo("arch")
            for a in pick_archs(prior, space, pick, seed=seed):
                typer.echo(str(a))
            return
        assert measurements is not None
        if not measurements.is_file():
            _fail(f"--measurements {measurements}: no such file")
        rows = read_measurements(measurements.read_text(), source=str(measurements))
        bad = [str(a) for a, _ in rows if not space.contains(a)]
        if bad:
            _fail(f"--measurements: {len(bad)} architecture(s) are not in the spec's space "
                  f"({space.num_layers} layers of {', '.join(space.choices[0])}), e.g. {bad[0]}")
        done = adapt_device(name, prior, [a for a, _ in rows], [y for _, y in rows])
    except ValueError as err:
        _fail(str(err))
    s = done.summary()
    typer.echo(f"{name}: {s['samples']} measurements, a prior of {len(s['known_devices'])} "
               f"known devices; leave-one-out MAPE {s['loo']['mape']:.2f}%, SRCC "
               f"{s['loo']['srcc']:.3f}, within 10% {s['loo']['within_10pct']:.0%}")
    for dev, w in s["weights"]:
        typer.echo(f"  follows {dev:20s} {w:6.1%}")
    fit = s["table_follows_predictor"]
    typer.echo(f"  its layer table follows the predictor with MAPE {fit['mape']:.2f}%")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.table.csv").write_text(done.table.to_csv())
        (out / f"{name}.table.json").write_text(json.dumps(done.table.to_json(), indent=1) + "\n")
        (out / f"{name}.predictor.json").write_text(json.dumps(done.predictor.to_json()) + "\n")
        typer.echo(f"  wrote {out}/{name}.table.csv, .table.json, .predictor.json")


@devices_app.command("correlate")
def devices_correlate(
    sources: Annotated[list[str], typer.Argument(
        metavar="[NAME=]FILE...",
        help="latency tables (`hurricane profile --out`: layer,op,median_ms CSV or JSON; device "
             "NAME, default the file name) and/or measured-latency CSVs (one column per device, "
             "one row per architecture, optional arch/encoding/arch_id column)")],
    samples: Annotated[int, typer.Option(
        min=3, help="architectures sampled from the tables' space (tables only)")] = 1000,
    seed: Annotated[int, typer.Option(help="seed of that sample")] = 0,
    proxy: Annotated[str | None, typer.Option(
        help="also decide, for every other device, reuse or adapt with this proxy")] = None,
    threshold: Annotated[float, typer.Option(help="SRCC for reusing the proxy's architectures")] = 0.9,
    out: Annotated[Path | None, typer.Option(help="write the matrix as JSON here")] = None,
    png: Annotated[Path | None, typer.Option(help="write a heatmap PNG here")] = None,
) -> None:
    """Rank correlation (SRCC) of architecture latencies between devices (latency monotonicity)."""
    from rich.console import Console
    from rich.table import Table

    from hurricane.latency.latency_sources import collect_latencies
    from hurricane.latency.proxy import matrix_json, plot_srcc, proxy_decisions, srcc_matrix_counts

    tables, measured = {}, []
    for arg in sources:
        label, src = _read_source(arg)
        if label is None:
            measured.append(src)
        elif label in tables:
            _fail(f"two tables are named {label!r}; name them with NAME=FILE")
        else:
            tables[label] = src
    try:
        lat, info = collect_latencies(tables=tables, measured=measured, samples=samples, seed=seed)
        names, m, counts = srcc_matrix_counts(lat)
        decisions = proxy_decisions(names, m, proxy, threshold) if proxy else None
    except ValueError as err:
        _fail(str(err))
    console = Console(width=max(100, 12 + 8 * len(names) + max(map(len, names))))
    console.print(f"SRCC of architecture latencies ({info['architectures']} architectures, "
                  f"{info['architectures_from']})", highlight=False)
    grid = Table()
    grid.add_column("device")
    for j in range(len(names)):
        grid.add_column(str(j + 1), justify="right")
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            v = m[i, j]
            style = "dim" if i == j else "green" if v >= threshold else "yellow" if v >= 0.5 else "red"
            cells.append("-" if v != v else f"[{style}]{v:.3f}[/{style}]")
        grid.add_row(f"{i + 1} {name}", *cells)
    console.print(grid)
    if decisions:
        console.print(f"proxy {proxy}: reuse its Pareto architectures where SRCC >= {threshold}, "
                      "else adapt its predictor", highlight=False)
        plan = Table()
        for col in ("target", "SRCC", "decision"):
            plan.add_column(col)
        for target, d in decisions.items():
            plan.add_row(target, "-" if d.srcc != d.srcc else f"{d.srcc:.3f}", d.action)
        console.print(plan)
    if out:
        doc = matrix_json(names, m, counts, **info, threshold=threshold,
                          decisions=None if decisions is None else
                          {"proxy": proxy, **{t: d.to_json() for t, d in decisions.items()}})
        out.write_text(json.dumps(doc, indent=2) + "\n")
        typer.echo(f"matrix → {out}")
    if png:
        plot_srcc(names, m, png)
        typer.echo(f"heatmap → {png}")


@app.command()
def profile(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC")],
    device: Annotated[str, typer.Option(help="device profile (`hurricane devices list`)")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="write the table here (.csv or .json)")] = None,
) -> None:
    """Measure the layer × op latency table of a spec's backbone and operator pool."""
    spec = _load(spec_path)
    from hurricane.latency.backends import DeviceUnavailable
    from hurricane.latency.devices import DEVICES
    from hurricane.runs.steps.common import layout_of, protocol_of
    from hurricane.runs.steps.measure import pool_space

    try:
        dev = DEVICES.get(device)
    except KeyError as err:
        _fail(f"--device: {err}")
    from hurricane.latency.profiling import profile_table

    with progress.use_reporter(_reporter()):
        try:
            table = profile_table(layout_of(spec), pool_space(spec), dev, protocol_of(spec))
        except DeviceUnavailable as err:
            _fail(str(err), 1)
    text = json.dumps(table.to_json(), indent=2) if out and out.suffix == ".json" else table.to_csv()
    if out:
        out.write_text(text)
        typer.echo(f"{len(table.ops)} layers × {len(table.ops[0])} ops on {device} → {out}")
    else:
        typer.echo(text)


@app.command()
def strategies() -> None:
    """Registered search strategies and their steps."""
    from hurricane.runs.strategies import STRATEGIES

    for name in STRATEGIES:
        s = STRATEGIES.get(name)
        typer.echo(f"{name:10s} {' → '.join(s.steps)}\n           {s.description}")


@dataset_app.command("pack")
def dataset_pack(
    image_dir: Annotated[Path, typer.Argument(metavar="IMAGE_DIR", help="DIR/<class>/*.jpg, or "
                                              "DIR/train/<class>/*.jpg with optional val/, test/")],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="a directory or s3://bucket/prefix "
                                        "(endpoint and keys: HURRICANE_S3_*)")],
    shard_size: Annotated[str, typer.Option(help="bytes per shard, e.g. 256MB, 1GiB")] = "256MB",
    val_fraction: Annotated[float, typer.Option(help="share of each class held out for the "
                                                "search's validation (when there is no val/)")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="share of each class held out for the "
                                                 "final test (when there is no test/)")] = 0.2,
    seed: Annotated[int, typer.Option(help="seed of the held-out draws")] = 0,
) -> None:
    """Pack an image folder into tar shards + an index (classes, counts, checksums), so a
    search can stream it from a directory, a volume or object storage."""
    from hurricane.data.packed import DatasetError, pack, parse_size

    for name, v in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 < v < 0.5:
            _fail(f"{name} must be in (0, 0.5), got {v}")
    try:
        shard_bytes = parse_size(shard_size)
    except ValueError as err:
        _fail(f"--shard-size: {err}")
    with progress.use_reporter(_reporter()):
        try:
            index = pack(image_dir, dest, shard_bytes=shard_bytes, val_fraction=val_fraction,
                         test_fraction=test_fraction, seed=seed)
        except (DatasetError, ValueError, OSError) as err:
            _fail(str(err))
    _print_dataset(index.summary(), brief=True)


def _print_dataset(info: dict, *, brief: bool = False) -> None:  # type: ignore[type-arg]
    n = info["samples"]
    typer.echo(f"{info['source']}: {len(info['classes'])} classes, {n['train']} train / "
               f"{n['val']} val / {n['test']} test images, {len(info['shards'])} shards, "
               f"{info['bytes'] / 1e6:.1f} MB")
    if brief:
        return
    width = max(len(c) for c in info["classes"])
    typer.echo(f"  {'class':{width}s}  {'train':>8s} {'val':>8s} {'test':>8s}")
    for c in info["classes"]:
        row = " ".join(f"{info['per_class'][s][c]:8d}" for s in ("train", "val", "test"))
        typer.echo(f"  {c:{width}s}  {row}")
    for sh in info["shards"]:
        typer.echo(f"  {sh['name']}  {sh['samples']:7d} images  {sh['bytes'] / 1e6:9.1f} MB  "
                   f"sha256 {sh['sha256'][:16]}")


@dataset_app.command("inspect")
def dataset_inspect(
    source: Annotated[str, typer.Argument(metavar="SRC", help="a directory or s3://bucket/prefix")],
    as_json: Annotated[bool, typer.Option("--json", help="the whole summary as JSON")] = False,
) -> None:
    """Classes, image counts per split and shards of a packed dataset."""
    from hurricane.data.packed import DatasetError, inspect

    try:
        info = inspect(source)
    except (DatasetError, ValueError, OSError) as err:
        _fail(str(err))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        _print_dataset(info)


def main() -> None:
    app()


def _register_service_commands() -> None:
    from hurricane.service.cli_service import register

    register(app)


# Command groups of the service components (``register(app)`` in each), imported by name when
# installed: the library never imports them (import-linter holds that), and one whose
# dependencies are missing is left out of the CLI.
COMPONENT_COMMANDS = ("hurricane.operator.plan",)  # `hurricane cluster …`


def _register_components() -> None:
    import importlib

    for module in COMPONENT_COMMANDS:
        try:
            importlib.import_module(module).register(app)
        except ImportError as err:
            logging.getLogger("hurricane").debug("%s left out of the CLI: %s", module, err)


_register_service_commands()
_register_components()
