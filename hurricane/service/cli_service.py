"""The service commands of `hurricane`: a client (submit, searches, watch, cancel, resume,
fetch; status when a server is set), `stack up|down|status` and `token create`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="API URL (default: HURRICANE_SERVER, else the local stack)")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", help="bearer token (default: HURRICANE_TOKEN, else the local stack's)")]
TERMINAL = ("succeeded", "failed", "cancelled")

stack_app = typer.Typer(no_args_is_help=True, help="The service as local processes.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def client(server: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from hurricane.service.client import Client, NoServer, resolve

    try:
        url, tok = resolve(server, token)
    except NoServer as err:
        _fail(str(err))
    if tok is None:
        _fail(f"no token for {url}: give --token (or HURRICANE_TOKEN)")
    return Client(url, tok)


def _call(fn, *args: Any, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    from hurricane.service.client import ApiError

    try:
        return fn(*args, **kw)
    except ApiError as err:
        _fail(str(err), 1)


def _line(v: dict[str, Any]) -> str:
    steps = v.get("steps", {})
    done = sum(s.get("state") == "succeeded" for s in steps.values())
    return f"{v['search_id']}  {v['state']:9s}  {done}/{len(steps)} steps"


def submit(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="search spec (YAML/JSON)")],
    wait: Annotated[bool, typer.Option(help="watch it until it ends")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="a retried submit with the same key returns the same search")] = None,
    server: ServerOpt = None, token: TokenOpt = None,
) -> None:
    """Submit a search to the service; prints its id."""
    if not spec_path.is_file():
        _fail(f"{spec_path}: no such file")
    c = client(server, token)
    out = _call(c.submit, spec_path, idempotency_key=idempotency_key)
    typer.echo(out["search_id"])
    if wait:
        raise typer.Exit(_watch(c, out["search_id"]))


def searches(
    state: Annotated[str | None, typer.Option(help="only searches in this state")] = None,
    limit: int = 50, server: ServerOpt = None, token: TokenOpt = None,
) -> None:
    """List your searches on the service, newest first."""
    c = client(server, token)
    page = _call(c.searches, state=state, limit=limit)
    typer.echo(f"{'search':50s} {'state':10s} {'created':30s} devices")
    for s in page["data"]:
        typer.echo(f"{s['search_id']:50s} {s['state']:10s} {s['created']:30s} "
                   f"{','.join(s['devices'])}")


def remote_status(search_id: str, server: str | None, token: str | None) -> None:
    from hurricane.service.client import ApiError

    c = client(server, token)
    try:
        typer.echo(json.dumps(c.get(search_id), indent=2))
    except ApiError as err:
        hint = " (a search run with `hurricane run`? give --store DIR)" if err.status == 404 else ""
        _fail(f"{err}{hint}", 1)


def _watch(c: Any, search_id: str) -> int:
    """Live progress bars from the event stream; exit code 0 when it succeeded."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hurricane.service.client import ApiError

    console = Console(stderr=True)
    bars: dict[str, Any] = {}
    final = "failed"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console,
                  disable=not sys.stderr.isatty()) as bar:
        try:
            for event, d in c.events(search_id):
                if event == "progress":
                    key = f"{d['step']}/{d['unit']}"
                    info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in (d.get("metrics") or {}).items())
                    if key not in bars or bar.tasks[bars[key]].description != d["description"]:
                        bars[key] = bar.add_task(d["description"], total=d["total"], info=info)
                    bar.update(bars[key], completed=d["completed"], total=d["total"], info=info)
                elif event == "step":
                    extra = f" ({d['seconds']:.1f} s)" if d.get("seconds") else ""
                    err = f": {d['error']}" if d.get("error") else ""
                    why = f": {d['reason']}" if d.get("state") == "queued" and d.get("reason") else ""
                    bar.console.print(f"step {d['step']}: {d['state']}{extra}{err}{why}")
                elif event == "unit" and d.get("state") in ("failed", "retrying", "cancelled"):
                    bar.console.print(f"  {d['step']}/{d['unit']}: {d['state']} "
                                      f"{(d.get('error') or '')[:300]}")
                elif event == "unit" and d.get("state") == "queued" and d.get("reason"):
                    bar.console.print(f"  {d['step']}/{d['unit']}: queued: {d['reason'][:300]}")
                elif event == "warning":
                    bar.console.print(f"[bold yellow]WARNING[/] {d['message']}")
                elif event == "state":
                    bar.console.print(f"search {search_id}: {d['state']}"
                                      + (f" ({d['error']})" if d.get("error") else ""))
                elif event == "end":
                    final = d["state"]
                    for name, w in (d.get("devices") or {}).items():
                        top1 = w.get("top1")
                        lat = w.get("measured_latency_ms") or w.get("predicted_latency_ms")
                        bar.console.print(
                            f"  {name}: {w.get('arch')}  top-1 "
                            f"{'n/a' if top1 is None else f'{top1:.2%}'}, "
                            f"{'n/a' if lat is None else f'{lat:.3f} ms'}")
        except ApiError as err:
            _fail(str(err), 1)
    typer.echo(f"{search_id} {final}")
    return 0 if final == "succeeded" else 1


def watch(search_id: Annotated[str, typer.Argument(metavar="ID")],
          server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Follow a search live (progress bars from the event stream) until it ends."""
    raise typer.Exit(_watch(client(server, token), search_id))


def cancel(search_id: Annotated[str, typer.Argument(metavar="ID")],
           purge: Annotated[bool, typer.Option(help="also delete every artifact")] = False,
           server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Cancel a search: queued work is dropped, running jobs stopped."""
    out = _call(client(server, token).cancel, search_id, purge=purge)
    typer.echo(f"{search_id} purged" if out is None else _line(out))


def resume(search_id: Annotated[str, typer.Argument(metavar="ID")],
           server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Resume a failed or cancelled search from its stored step results."""
    typer.echo(_line(_call(client(server, token).resume, search_id)))


def fetch(
    search_id: Annotated[str, typer.Argument(metavar="ID")],
    device: Annotated[str | None, typer.Option(help="target device (default: every one)")] = None,
    out: Annotated[Path, typer.Option(help="where to put the files")] = Path("."),
    server: ServerOpt = None, token: TokenOpt = None,
) -> None:
    """Download the retrained checkpoint, ONNX model, architecture and report of a search,
    checking each file's size and SHA-256."""
    c = client(server, token)
    view = _call(c.get, search_id)
    devices = [device] if device else list(view.get("devices") or {}) or []
    if not devices:
        _fail(f"search {search_id} has no results yet (it is {view['state']})", 1)
    for dev in devices:
        listing = _call(c.artifacts, search_id, device=dev)
        got = {a["key"].rsplit("/", 1)[-1]: a for a in listing["data"]}
        if "final.pt" not in got:
            _fail(f"{search_id}: no retrained checkpoint for {dev} yet (the search is "
                  f"{view['state']})", 1)
        dest = out / search_id / dev if len(devices) > 1 or device is None else out / search_id
        for name, a in got.items():
            path = _call(c.download, a["url"], dest / name, size=a["size"], sha256=a["sha256"])
            typer.echo(f"{path}  {a['size']} bytes  sha256 {a['sha256'][:12]}…")


# -- stack ------------------------------------------------------------------------------------

StackDir = Annotated[Path | None, typer.Option(
    "--dir", help="state directory (default: HURRICANE_STACK_DIR or ~/.local/state/hurricane/stack)")]


def _stack(d: Path | None):  # type: ignore[no-untyped-def]
    import os

    from hurricane.service.stack import DEFAULT_DIR, Stack

    return Stack(d or Path(os.environ.get("HURRICANE_STACK_DIR", str(DEFAULT_DIR))))


@stack_app.command("up")
def stack_up(
    state_dir: StackDir = None,
    api_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    redis_port: Annotated[int, typer.Option(min=1, max=65535)] = 6379,
    redis_url: Annotated[str | None, typer.Option(help="use this Redis instead of starting one")] = None,
    store: Annotated[str | None, typer.Option(
        help="artifact store (default: <dir>/store; s3://bucket/prefix with HURRICANE_S3_*)")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="jobs that may run at once")] = 1,
    api_workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
) -> None:
    """Start redis-server, the API and the workers here; print the URL and token."""
    from hurricane.service.stack import StackConfig, StackError

    st = _stack(state_dir)
    cfg = StackConfig(state_dir=st.dir, api_port=api_port, redis_port=redis_port,
                      redis_url=redis_url, store=store, jobs_concurrency=jobs,
                      api_workers=api_workers)
    try:
        info = st.up(cfg)
    except StackError as err:
        _fail(str(err), 1)
    if info.get("restarted"):
        pids = ", ".join(f"{n} (pid {info['processes'][n]['pid']})" for n in info["restarted"])
        typer.echo(f"hurricane stack up: restarted {pids}; kept running: "
                   f"{', '.join(info['kept']) or 'nothing'} ({info['url']}, the stack's own "
                   "settings)")
        return
    typer.echo(f"hurricane stack up: {info['url']} (store {info['store']})")
    typer.echo(f"  token for {info['user']} (admin): in {st.dir / 'token'}; the CLI uses it")
    typer.echo(f"  dashboard: {info['url']}/ui/ (log in with that token)")
    typer.echo(f"  logs: {st.dir / 'logs'}   stop: hurricane stack down")


@stack_app.command("down")
def stack_down(state_dir: StackDir = None) -> None:
    """Stop every process of the local stack."""
    stopped = _stack(state_dir).down()
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(state_dir: StackDir = None) -> None:
    """Pids, liveness and readiness of the local stack (exit 1 unless ready)."""
    s = _stack(state_dir).status()
    typer.echo(json.dumps(s, indent=2))
    if s["dead"]:
        typer.echo(f"not ready: {', '.join(s['dead'])} died; `hurricane stack up` restarts "
                   "them and leaves the others running", err=True)
    if not s["ready"]:
        raise typer.Exit(1)


TokensFile = Annotated[Path, typer.Option(
    "--file", help="token file the API reads (HURRICANE_TOKENS_FILE)")]


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="user name")],
    admin: Annotated[bool, typer.Option(help="sees every user's searches")] = False,
    expires: Annotated[str | None, typer.Option(
        help="the token stops working then: 30d, 12h, 90m from now, or an ISO 8601 time "
        "(2027-01-06T00:00:00Z)")] = None,
    metrics: Annotated[bool, typer.Option(
        help="a token for Prometheus to read /metrics with (HURRICANE_METRICS=token): prints "
        "the token and its SHA-256 for HURRICANE_METRICS_TOKEN_SHA256 (chart: "
        "security.metrics.tokenSha256); the token file is not touched")] = False,
    file: TokensFile = Path("tokens.yaml"),
) -> None:
    """Create a token: its SHA-256 goes into the token file, the token is printed once."""
    from hurricane.service.tokens import TokenError, add_token, hash_token, new_token

    if metrics:
        if admin or expires:
            _fail("--metrics takes neither --admin nor --expires (rotate it by making a new one)")
        tok = new_token()
        typer.echo(tok)
        typer.echo(f"sha256: {hash_token(tok)}  (HURRICANE_METRICS_TOKEN_SHA256, chart "
                   "security.metrics.tokenSha256; the token itself is stored nowhere)", err=True)
        return
    try:
        tok = add_token(file, user, "admin" if admin else "user", expires=expires)
    except TokenError as err:
        _fail(str(err))
    typer.echo(tok)
    typer.echo(f"(its SHA-256 was added to {file}; the token itself is stored nowhere)", err=True)


@token_app.command("revoke")
def token_revoke(
    user: Annotated[str, typer.Argument(help="user whose tokens stop working")],
    sha256: Annotated[str | None, typer.Option(
        help="only the token whose SHA-256 starts with these hex digits (`token list`)")] = None,
    file: TokensFile = Path("tokens.yaml"),
) -> None:
    """Revoke a user's tokens (all, or one by --sha256): their hashes leave the token file and
    the API refuses them within a second."""
    from hurricane.service.tokens import TokenError, revoke_tokens

    try:
        gone = revoke_tokens(file, user, sha256_prefix=sha256)
    except (TokenError, OSError) as err:
        _fail(str(err))
    for e in gone:
        typer.echo(f"revoked {e['user']} ({e.get('role', 'user')}) sha256 {str(e['sha256'])[:12]}…")
    typer.echo(f"({len(gone)} token(s) removed from {file}; with the chart, copy the file's "
               "entries into auth.tokens and upgrade)", err=True)


@token_app.command("list")
def token_list(file: TokensFile = Path("tokens.yaml")) -> None:
    """The token file's entries: user, role, hash prefix, expiry (expired ones say so)."""
    import datetime as dt

    from hurricane.service.tokens import TokenError, load_file

    try:
        grants = load_file(file)
    except (TokenError, OSError, ValueError) as err:
        _fail(str(err))
    for digest, g in grants.items():
        until = ("never" if g.expires is None else dt.datetime.fromtimestamp(
            g.expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        state = "" if g.valid() else "  EXPIRED"
        typer.echo(f"{g.user.name:<20} {g.user.role:<6} {digest[:12]}…  expires {until}{state}")


def register(app: typer.Typer) -> None:
    for fn in (submit, searches, watch, cancel, resume, fetch):
        app.command()(fn)
    app.add_typer(stack_app, name="stack")
    app.add_typer(token_app, name="token")
