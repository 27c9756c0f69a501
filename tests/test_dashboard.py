"""The web dashboard in a real browser: Debian's chromium driven by Playwright against a local
stack (`hurricane stack`: redis-server, the API under uvicorn serving /ui/, Celery workers,
searches as local processes). A user logs in, submits a spec in the editor, watches the
search finish live from the event stream, opens the Pareto front and the predictor scatter,
downloads the checkpoint and checks its SHA-256; another user sees none of it; refused specs
and tables are shown at their lines. Every page is watched for console errors and failed
requests. Screenshots of every view at 1280×800 and 390×844 are written to
``$HURRICANE_SCREENSHOTS`` (``make screenshots``: docs/dashboard/), else to a temporary
folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import tiny_spec_dict
from tests.servers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
SEARCH_TIMEOUT_MS = 1_200_000  # a cap: the tests wait for the page's own state, never a sleep



@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    """No skip: a missing build or browser is a failure with its remedy."""
    assert (ROOT / "api/ui/index.html").is_file(), \
        "the dashboard is not built: scripts/build_ui.sh (scripts/bootstrap.sh runs it)"
    assert Path(CHROMIUM).exists(), "no chromium: apt-get install -y chromium (bootstrap does)"


SHOOT = os.environ.get("HURRICANE_SCREENSHOTS")


def dash_spec(name: str, seed: int) -> dict[str, Any]:
    """The other searches: the tiny digits spec of the other tests (about a minute through
    the stack); for the committed screenshots (``make screenshots``), the demo spec too."""
    if SHOOT:
        doc = yaml.safe_load((ROOT / "examples/digits-service.yaml").read_text())
        return {**doc, "name": name, "seed": seed}
    return tiny_spec_dict(name=name, seed=seed)


class Stack:
    def __init__(self, root: Path) -> None:
        from hurricane.service.stack import Stack as _Stack

        self.root = root
        self.stack = _Stack(root / "stack")

    def __enter__(self) -> Stack:
        from hurricane.service.stack import StackConfig
        from hurricane.service.tokens import add_token

        self.stack.up(StackConfig(state_dir=self.stack.dir, api_port=free_port(),
                                  redis_port=free_port(), user="root",
                                  env={"HURRICANE_JOB_HEARTBEAT_S": "1",
                                       "HURRICANE_RECONCILE_INTERVAL_S": "2",
                                       "HURRICANE_EVENTS_POLL_S": "0.2"}), timeout=120)
        tokens = self.stack.dir / "tokens.yaml"
        self.tokens = {"root": str(self.stack.token()), "alice": add_token(tokens, "alice"),
                       "bob": add_token(tokens, "bob")}
        for user, tok in self.tokens.items():  # the API re-reads the token file once a second
            wait_for(lambda t=tok: self.me(t) is not None, 30, f"{user}'s token to be accepted")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.down(timeout=15)

    @property
    def url(self) -> str:
        return str(self.stack.url)

    def call(self, method: str, path: str, token: str, body: bytes | None = None,
             ctype: str = "application/json") -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def me(self, token: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", "/v1/me", token)  # type: ignore[no-any-return]
        except OSError:
            return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    with Stack(tmp_path_factory.mktemp("dashboard")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(SHOOT or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


class Watched:
    """A page whose console errors, uncaught exceptions and failed requests are recorded."""

    def __init__(self, browser: Any, base: str, size: str = "desktop",
                 expected: tuple[int, ...] = ()) -> None:
        w, h = SIZES[size]
        self.ctx = browser.new_context(viewport={"width": w, "height": h}, accept_downloads=True,
                                       device_scale_factor=1)
        self.page = self.ctx.new_page()
        self.base = base
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self._failed(r))
        self.page.on("response", lambda r: r.status >= 400 and r.status not in expected
                     and self.problems.append(f"HTTP {r.status} {r.request.method} {r.url}"))

    def _failed(self, r: Any) -> None:
        # a stream or poll cut by the page's own navigation is not a failure
        if r.failure and "ERR_ABORTED" in r.failure:
            return
        self.problems.append(f"request failed: {r.method} {r.url}: {r.failure}")

    def goto(self, hash_: str) -> Any:
        self.page.goto(f"{self.base}/ui/{hash_}")
        return self.page

    def login(self, token: str) -> Any:
        p = self.goto("#/login")
        p.fill("#token", token)
        p.click("button[type=submit]")
        p.wait_for_selector("nav[aria-label=Main]")
        return p

    def close(self) -> None:
        self.ctx.close()


def chart_ready(page: Any, label: str) -> None:
    page.wait_for_selector(f'[role=img][aria-label="{label}"] canvas', timeout=30_000)


def shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_load_state("networkidle")
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


@pytest.fixture(scope="module")
def finished(stack: Stack, browser: Any, shots: Path) -> Iterator[dict[str, Any]]:
    """Alice submits the demo spec (examples/digits-service.yaml, the starter) in the editor
    and watches it finish live; a second search, by the API, gives the comparison view
    something to compare."""
    w = Watched(browser, stack.url)
    p = w.login(stack.tokens["alice"])
    p.click("nav >> text=Submit")
    p.wait_for_selector("#spec")
    p.select_option("#starter", "digits-service")  # the service quick start's demo spec
    # the starters are examples/ as they are
    assert p.input_value("#spec") == (ROOT / "examples/digits-service.yaml").read_text()
    p.click("button[type=submit]")
    p.wait_for_url("**/#/search/*/run")
    sid = p.url.split("#/search/")[1].split("/")[0]
    second = stack.call("POST", "/v1/searches", stack.tokens["alice"],
                        json.dumps(dash_spec("dash-second", 5)).encode())["search_id"]
    # live: the page follows the event stream; nothing reloads it
    # (a page that broke shows an error box: stop there rather than at the cap)
    p.wait_for_selector("h1 .badge.s-succeeded, main .error", timeout=SEARCH_TIMEOUT_MS)
    assert p.locator("main .error").count() == 0, (p.inner_text("main"), w.problems)
    p.wait_for_selector("ol.feed li:has-text('search succeeded')")
    feed = p.locator("ol.feed li").all_inner_texts()
    assert any("stage1" in t for t in feed) and any("retrain" in t for t in feed)
    yield {"sid": sid, "second": second, "watched": w}
    w.close()


def test_a_user_submits_watches_and_inspects_a_search(finished: dict[str, Any], stack: Stack,
                                                      shots: Path) -> None:
    w, sid = finished["watched"], finished["sid"]
    p = w.goto(f"#/search/{sid}/run")
    p.wait_for_selector(".timeline [data-step=retrain] .badge.s-succeeded")
    steps = p.locator(".timeline .tl-step").count()
    assert steps == len(stack.call("GET", f"/v1/searches/{sid}", stack.tokens["alice"])["plan"])
    p.click("button[aria-label='Log of stage1 ALL']")
    p.wait_for_selector("pre.log")

    p.click("#tab-results")
    chart_ready(p, "Accuracy against latency on cpu")
    view = stack.call("GET", f"/v1/searches/{sid}", stack.tokens["alice"])
    winner = view["devices"]["cpu"]["arch"]
    # hover the winner: the tooltip names its architecture
    tip = p.evaluate("""() => {
        const c = document.querySelector('[aria-label="Accuracy against latency on cpu"]')._chart;
        const i = c.getOption().series.findIndex(s => s.name.endsWith('winner'));
        c.dispatchAction({type: 'showTip', seriesIndex: i, dataIndex: 0});
        return i;
    }""")
    assert tip >= 0
    p.wait_for_selector(f"[aria-label='Accuracy against latency on cpu'] >> text={winner}")
    assert p.locator("ol.layers li").count() == len(winner.split("-"))
    assert p.inner_text("[data-fact=top1]").startswith(f"{100 * view['devices']['cpu']['top1']:.2f}")

    # the checkpoint downloads and its SHA-256 is the one listed
    row = p.locator("tr[data-key='retrain/cpu/final.pt']")
    listed = row.locator(".sha").inner_text().strip()
    with p.expect_download() as dl:
        row.locator("a").click()
    got = hashlib.sha256(Path(dl.value.path()).read_bytes()).hexdigest()
    assert got == listed and len(listed) == 64

    p.click("#tab-method")
    chart_ready(p, "Predicted against measured latency on cpu")
    assert "SRCC" in p.inner_text(".metrics[data-device=cpu]")
    chart_ready(p, "Supernet training loss per stage")
    chart_ready(p, "Best supernet accuracy per generation")
    chart_ready(p, "Latency table of cpu")
    assert w.problems == [], w.problems


def test_another_user_sees_none_of_it(finished: dict[str, Any], stack: Stack, browser: Any) -> None:
    sid = finished["sid"]
    w = Watched(browser, stack.url, expected=(404,))
    try:
        p = w.login(stack.tokens["bob"])
        p.wait_for_selector("text=No searches match.")
        assert p.locator(f"tr[data-search='{sid}']").count() == 0
        p = w.goto(f"#/search/{sid}/results")
        p.wait_for_selector(f".error >> text=no search '{sid}'")
        assert p.locator("canvas").count() == 0
        assert [x for x in w.problems if "404" not in x] == []
    finally:
        w.close()
    # the admin sees alice's search, with its owner
    w = Watched(browser, stack.url)
    try:
        p = w.login(stack.tokens["root"])
        p.wait_for_selector(f"tr[data-search='{sid}'] >> text=alice")
        assert w.problems == []
    finally:
        w.close()


def test_refused_specs_and_tables_are_shown_at_their_lines(finished: dict[str, Any],
                                                            stack: Stack, browser: Any) -> None:
    w = Watched(browser, stack.url, expected=(422,))
    try:
        p = w.login(stack.tokens["alice"])
        p = w.goto("#/submit")
        p.wait_for_selector("#spec")
        bad = dash_spec("dash-bad", 1)
        bad["supernet"]["iterations"] = -4
        bad["devices"][0]["budget_fraction"] = 7
        text = yaml.safe_dump(bad, sort_keys=False)
        p.fill("#spec", text)
        p.click("button[type=submit]")
        p.wait_for_selector(".field-errors li[data-loc='supernet.iterations']")
        lines = text.splitlines()
        item = p.locator(".field-errors li[data-loc='supernet.iterations']")
        n = int(item.get_attribute("data-line"))
        assert lines[n - 1].strip().startswith("iterations:")
        assert p.locator(f".gutter div.bad >> text='{n}'").count() == 1
        n2 = int(p.locator(".field-errors li[data-loc='devices.0.budget_fraction']")
                 .get_attribute("data-line"))
        assert "budget_fraction" in lines[n2 - 1]
        # the help panel follows the cursor
        item.locator("button").click()
        p.wait_for_selector("#field-help h3 >> text=supernet.iterations")

        p = w.goto("#/devices")
        p.wait_for_selector("table.devices")
        p.fill("#u-name", "phone-npu")
        p.fill("#u-text", "layer,op,median_ms\n0,SEP_3,0.5\n0,NOPE_9,0.3\n1,SEP_3,-2\n")
        p.click("form.upload button[type=submit]")
        p.wait_for_selector(".field-errors li")
        where = p.locator(".field-errors li").all_inner_texts()
        assert any("line 3" in x for x in where) and any("line 4" in x for x in where), where
        assert [x for x in w.problems if "422" not in x] == []
    finally:
        w.close()


VIEWS = ["login", "searches", "run", "method", "results", "compare", "submit", "devices"]


@pytest.mark.parametrize("size", list(SIZES))
def test_screenshots_of_every_view(finished: dict[str, Any], stack: Stack, browser: Any,
                                   shots: Path, size: str) -> None:
    sid, second = finished["sid"], finished["second"]
    tok = stack.tokens["alice"]
    wait_for(lambda: stack.call("GET", f"/v1/searches/{second}", tok)["state"] == "succeeded",
             SEARCH_TIMEOUT_MS / 1000, "the second search to finish")
    w = Watched(browser, stack.url, size)
    try:
        p = w.goto("#/login")
        p.wait_for_selector("#token")
        shot(p, shots, f"login-{size}")
        p = w.login(tok)
        p.wait_for_selector(f"tr[data-search='{sid}']")
        shot(p, shots, f"searches-{size}")
        for tab, label in (("run", None), ("method", "Predicted against measured latency on cpu"),
                           ("results", "Accuracy against latency on cpu")):
            p = w.goto(f"#/search/{sid}/{tab}")
            p.wait_for_selector(f"#tab-{tab}[aria-selected=true]")
            if label:
                chart_ready(p, label)
            else:
                p.wait_for_selector(".timeline .tl-step")
            shot(p, shots, f"{tab}-{size}")
        p = w.goto(f"#/compare/{sid},{second}")
        chart_ready(p, "Fronts on cpu")
        shot(p, shots, f"compare-{size}")
        p = w.goto("#/submit")
        p.wait_for_selector("#field-help h3")
        shot(p, shots, f"submit-{size}")
        p = w.goto("#/devices")
        p.wait_for_selector("table.devices")
        shot(p, shots, f"devices-{size}")
        # usable on a phone: nothing wider than the screen but what scrolls inside its box
        overflow = p.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, overflow
        assert w.problems == [], w.problems
    finally:
        w.close()
    assert {f"{v}-{size}.png" for v in VIEWS} <= {f.name for f in shots.iterdir()}


def test_the_dashboard_is_keyboard_navigable(finished: dict[str, Any], stack: Stack,
                                             browser: Any) -> None:
    """Tab reaches the skip link, the main links and the searches; Enter follows them."""
    w = Watched(browser, stack.url)
    try:
        w.login(stack.tokens["alice"])
        p = w.goto("#/")  # a fresh page: the token stays in the tab, focus starts at the top
        p.reload()
        p.wait_for_selector(f"tr[data-search='{finished['sid']}']")
        seen = []
        for _ in range(40):
            p.keyboard.press("Tab")
            seen.append(p.evaluate("() => document.activeElement.textContent.trim()"))
            if seen[-1] == "digits-service":
                break
        assert "Skip to content" in seen and "Submit" in seen and "digits-service" in seen, seen
        p.focus(f"tr[data-search='{finished['sid']}'] a")
        p.keyboard.press("Enter")
        p.wait_for_selector("#tab-run[aria-selected=true]")
        assert w.problems == []
    finally:
        w.close()


def test_cancel_resume_and_purge_from_the_page(finished: dict[str, Any], stack: Stack,
                                               browser: Any) -> None:
    """Each action asks first (a dialog that Esc cancels), then does what the API does."""
    tok = stack.tokens["alice"]
    sid = stack.call("POST", "/v1/searches", tok,
                     json.dumps(dash_spec("dash-cancel", 9)).encode())["search_id"]
    w = Watched(browser, stack.url)
    try:
        w.login(tok)
        p = w.goto(f"#/search/{sid}/run")
        p.click("button:text-is('Cancel')")
        p.wait_for_selector("dialog[open]")
        p.keyboard.press("Escape")  # asked, refused: nothing happens
        p.wait_for_selector("dialog", state="detached")
        assert stack.call("GET", f"/v1/searches/{sid}", tok)["state"] in ("queued", "running")
        p.click("button:text-is('Cancel')")
        p.click("dialog button:text-is('Cancel')")
        p.wait_for_selector("h1 .badge.s-cancelled")
        assert stack.call("GET", f"/v1/searches/{sid}", tok)["state"] == "cancelled"
        p.click("button:text-is('Resume')")
        p.click("dialog button:text-is('Resume')")
        p.wait_for_selector("h1 .badge.s-queued, h1 .badge.s-running")
        p.click("button:text-is('Purge')")
        p.click("dialog button:text-is('Purge')")
        p.wait_for_url("**/ui/#/")
        p.wait_for_selector(f"tr[data-search='{finished['sid']}']")
        assert p.locator(f"tr[data-search='{sid}']").count() == 0
        try:
            stack.call("GET", f"/v1/searches/{sid}", tok)
            raise AssertionError("the purged search is still there")
        except urllib.error.HTTPError as err:
            assert err.code == 404
        assert w.problems == [], w.problems
    finally:
        w.close()
