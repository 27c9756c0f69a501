"""Chaos soak of the service on this machine: many small searches from several users against a
real local stack (moto_server as the S3 store, redis-server, the API under uvicorn, Celery
workers as processes) while workers and job processes are SIGKILLed, Redis is restarted and
S3 is frozen (SIGSTOP) for a while; some searches are cancelled and one is purged on purpose.
Prints JSON (and writes it with --out).

What it checks, from what the system left behind rather than from what it said:

- every search ends ``succeeded``, or ``cancelled`` where the soak cancelled it; the purged one
  answers 404 and nothing was written under its prefix after the purge returned (the object
  versions of the bucket, snapshotted when the purge returned and again at the end);
- each step result and report was written exactly once: the bucket is versioned, so every
  write of ``result.json`` / ``report.json`` is a version;
- no job ran twice at once: a sampler reads /proc every 0.25 s for ``hurricane job`` processes
  of the soak's searches; two live processes of one job in a sample are a duplicate;
- no HTTP 5xx from any request the soak made;
- status-route latency (client side, keep-alive, the poller threads in this process): p50/p99
  overall, during the faults, during the S3 freeze.

Every loop is bounded in count and time, and every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from _results import emit

from hurricane.service.stack import Stack, StackConfig, free_port
from hurricane.service.tokens import add_token
from tests.conftest import tiny_spec_dict
from tests.servers import MotoServer

BUCKET, ACCESS, SECRET = "hurricane-soak", "soak-access-key", "soak-secret-key-x"
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Plan:
    """How big the soak is; ``tiny`` is the test's few-minute version."""

    searches: int = 20
    users: int = 4
    min_s: float = 600.0  # the soak lasts at least this long
    max_s: float = 5400.0  # and gives up after this long
    submit_until: float = 0.55  # submissions spread over this part of min_s
    cancels: int = 3
    purges: int = 1
    worker_kills: int = 3
    job_kills: int = 4
    redis_restarts: int = 1
    s3_freeze_s: float = 20.0
    supernet_iterations: int = 200
    retrain_iterations: int = 40
    jobs_concurrency: int = 2
    poll_hz: float = 1.0  # status GETs per second per user (a dashboard's rate)


TINY = Plan(searches=3, users=2, min_s=0.0, max_s=900.0, cancels=1, purges=1, worker_kills=0,
            job_kills=0, redis_restarts=0, s3_freeze_s=6.0, supernet_iterations=100,
            retrain_iterations=8)


@dataclass
class Search:
    index: int
    user: str
    at: float  # seconds after the start when it is submitted
    action: str = "run"  # run | cancel | purge
    sid: str | None = None
    submitted: float | None = None
    state: str = "unsubmitted"
    expect: str = "succeeded"
    acted: float | None = None  # when it was cancelled or purged
    cancel_at: str = "stage1"  # cancelled once this step runs (or has run)
    view: dict[str, Any] = field(default_factory=dict)  # the last status a poller read
    versions_at_purge: set[str] = field(default_factory=set)
    note: str = ""


@dataclass
class Sample:
    t: float
    ms: float
    code: int


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))], 2)


def stats(samples: list[Sample]) -> dict[str, Any]:
    ok = [s.ms for s in samples if 0 < s.code < 500]
    return {"requests": len(samples), "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99),
            "max_ms": round(max(ok), 2) if ok else None,
            "5xx": sum(s.code >= 500 for s in samples),
            "no_answer": sum(s.code == 0 for s in samples)}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def job_processes(ids: set[str]) -> dict[str, list[int]]:
    """Live ``hurricane job`` processes of these searches: job name -> pids (a process whose
    parent is a process of the same job, e.g. a data-loading child, is not counted)."""
    found: dict[str, dict[int, int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[0] == "Z" or b"job" not in args or b"--search" not in args:
            continue
        a = [x.decode(errors="replace") for x in args]
        try:
            i = a.index("job")
            sid = a[a.index("--search") + 1]
        except (ValueError, IndexError):
            continue
        if sid not in ids or "hurricane" not in a[:i]:
            continue
        device = a[a.index("--device") + 1] if "--device" in a else ""
        name = "-".join(p for p in (sid, a[i + 1], device) if p)
        found.setdefault(name, {})[int(d.name)] = int(stat[1])
    return {job: [pid for pid, ppid in procs.items() if ppid not in procs]
            for job, procs in found.items()}


class Soak:
    def __init__(self, plan: Plan, root: Path, seed: int) -> None:
        self.plan, self.root, self.rng = plan, root, random.Random(seed)
        self.moto = MotoServer(log=root / "moto.log")
        self.stack = Stack(root / "stack")
        self.t0 = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[Sample] = []
        self.other: list[tuple[str, int]] = []  # (request, status) of everything but status GETs
        self.faults: list[dict[str, Any]] = []
        self.tokens: dict[str, str] = {}
        self.searches: list[Search] = []
        self.duplicates: dict[str, int] = {}  # job -> samples with two live processes
        self.job_samples = 0
        self.jobs_seen: set[str] = set()
        self.frozen = False
        self.fault_lock = threading.Lock()  # a fault's own kills and restarts are not crashes
        self.crashes: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- the stack ----------------------------------------------------------------------------

    def start(self) -> None:
        from minio import Minio
        from minio.versioningconfig import ENABLED, VersioningConfig

        self.root.mkdir(parents=True, exist_ok=True)
        self.moto.start()
        self.minio = Minio(self.moto.endpoint.removeprefix("http://"), access_key=ACCESS,
                           secret_key=SECRET, secure=False, region="us-east-1")
        self.minio.make_bucket(BUCKET)
        self.minio.set_bucket_versioning(BUCKET, VersioningConfig(ENABLED))
        env = {"HURRICANE_S3_ENDPOINT": self.moto.endpoint, "HURRICANE_S3_ACCESS_KEY": ACCESS,
               "HURRICANE_S3_SECRET_KEY": SECRET, "HURRICANE_S3_TIMEOUT_S": "5",
               "HURRICANE_STORE_RETRY_S": "120", "HURRICANE_JOB_HEARTBEAT_S": "1",
               "HURRICANE_RECONCILE_INTERVAL_S": "2", "HURRICANE_CANCEL_POLL_S": "0.5",
               "HURRICANE_CANCEL_GRACE_S": "3"}
        self.stack.up(StackConfig(state_dir=self.stack.dir, api_port=free_port(),
                                  redis_port=free_port(), store=f"s3://{BUCKET}/runs",
                                  jobs_concurrency=self.plan.jobs_concurrency, env=env),
                      timeout=180)
        tokens = self.stack.dir / "tokens.yaml"
        for i in range(self.plan.users):
            self.tokens[f"user{i + 1}"] = add_token(tokens, f"user{i + 1}")
        url = str(self.stack.url)
        deadline = time.monotonic() + 30  # the API re-reads its tokens file within a second
        for tok in self.tokens.values():
            while httpx.get(f"{url}/v1/searches", headers=self.auth(tok)).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not take the new tokens within 30 s")
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            self.moto.resume()
        try:
            self.stack.down(timeout=10)
        finally:
            self.moto.stop()

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # -- the plan -----------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str]]:
        p, users = self.plan, sorted(self.tokens)
        span = max(p.min_s * p.submit_until, 1.0 * p.searches)
        for i in range(p.searches):
            self.searches.append(Search(i, users[i % len(users)], at=span * i / p.searches))
        middle = [s for s in self.searches[1:]]
        self.rng.shuffle(middle)
        for s in middle[:p.purges]:
            s.action, s.expect = "purge", "purged"
        for s in middle[p.purges:p.purges + p.cancels]:
            s.action, s.expect = "cancel", "cancelled"
            s.cancel_at = self.rng.choice(("profile", "stage1", "retrain")) if p.min_s else "stage1"
        lo, hi = 0.08 * max(p.min_s, 60), 0.8 * max(p.min_s, 60)
        kinds = (["kill_worker:jobs", "kill_worker:control"] * p.worker_kills)[:p.worker_kills]
        kinds += ["kill_job"] * p.job_kills + ["restart_redis"] * p.redis_restarts
        faults = [(self.rng.uniform(lo, hi), k) for k in kinds]
        if p.s3_freeze_s > 0:  # while searches train: in the middle of the submissions
            faults.append(((lo + hi) / 2 if p.min_s else 25.0, "freeze_s3"))
        return sorted(faults)

    # -- the threads --------------------------------------------------------------------------

    def poller(self, user: str) -> None:
        url, tok = str(self.stack.url), self.tokens[user]
        gap = 1.0 / self.plan.poll_hz
        with httpx.Client(base_url=url, headers=self.auth(tok), timeout=60) as c:
            while not self.stop.is_set():
                mine = [s for s in self.searches if s.user == user and s.sid
                        and s.state not in (*TERMINAL, "purged")]
                if not mine:
                    self.stop.wait(gap)
                    continue
                for s in mine:
                    if self.stop.is_set():
                        return
                    t = time.perf_counter()
                    try:
                        r = c.get(f"/v1/searches/{s.sid}")
                        code = r.status_code
                    except httpx.HTTPError:
                        code = 0
                    ms = (time.perf_counter() - t) * 1000
                    with self.lock:
                        self.samples.append(Sample(self.now() - ms / 1000, ms, code))
                    if code == 200:
                        s.view = r.json()
                        s.state = s.view["state"]
                    elif code == 404 and s.action == "purge" and s.acted is not None:
                        s.state = "purged"
                    self.stop.wait(max(0.0, gap / len(mine) - ms / 1000))

    def sampler(self) -> None:
        while not self.stop.wait(0.25):
            ids = {s.sid for s in self.searches if s.sid}
            procs = job_processes(ids)  # type: ignore[arg-type]
            self.job_samples += 1
            self.jobs_seen |= set(procs)
            for job, pids in procs.items():
                if len(pids) > 1:
                    self.duplicates[job] = self.duplicates.get(job, 0) + 1

    def fault_runner(self, faults: list[tuple[float, str]]) -> None:
        for at, kind in faults:
            if self.stop.wait(max(0.0, at - self.now())):
                return
            rec: dict[str, Any] = {"kind": kind, "start_s": round(self.now(), 2)}
            with self.fault_lock:
                try:
                    self._fault(kind, rec)
                except Exception as err:  # recorded; the soak's checks decide what it cost
                    rec["error"] = f"{type(err).__name__}: {err}"
            rec["end_s"] = round(self.now(), 2)
            self.faults.append(rec)

    def supervisor(self) -> None:
        """Restarts a member of the stack that died on its own (as Kubernetes restarts a
        crashed container, or `hurricane stack up` a dead member), recording the crash and the
        last error of its log: a crash is one of the soak's findings."""
        while not self.stop.wait(2.0):
            with self.fault_lock:
                procs = self.stack.state().get("processes", {})
                for name, p in procs.items():
                    if self.stop.is_set() or self.stack.alive(name):
                        continue
                    lines = Path(p["log"]).read_text(errors="replace")[int(p.get(
                        "log_offset", 0)):].splitlines() if Path(p["log"]).is_file() else []
                    errors = [x for x in lines if "CRITICAL" in x or "Unrecoverable" in x
                              or "Error" in x[:200]]
                    crash = {"member": name, "at_s": round(self.now(), 2),
                             "last_error": (errors or lines or [""])[-1][:400]}
                    try:
                        self.stack.revive([name], timeout=180)
                    except Exception as err:
                        crash["revive_error"] = f"{type(err).__name__}: {err}"
                    self.crashes.append(crash)

    def _fault(self, kind: str, rec: dict[str, Any]) -> None:
        if kind.startswith("kill_worker:"):
            name = kind.split(":", 1)[1]
            pid = self.stack.pid(name)
            self.stack.signal(name, signal.SIGKILL)  # the worker's group: it and its pool
            rec["pid"] = pid
            self.stack.revive([name], timeout=180)
        elif kind == "kill_job":
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not self.stop.is_set():
                procs = job_processes({s.sid for s in self.searches if s.sid})  # type: ignore[misc]
                if procs:
                    job = self.rng.choice(sorted(procs))
                    pid = procs[job][0]
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    rec.update(job=job, pid=pid)
                    rec["start_s"] = round(self.now(), 2)
                    return
                time.sleep(0.5)
            rec["skipped"] = "no job process ran within 120 s"
        elif kind == "restart_redis":
            self.stack.stop("redis", timeout=10)
            self.stack.start("redis")
            port = int(self.stack.state()["redis_url"].rsplit(":", 1)[1].split("/")[0])
            from tests.servers import wait_for_port

            wait_for_port("127.0.0.1", port, 30)
        elif kind == "freeze_s3":
            self.moto.pause()
            self.frozen = True
            try:
                self.stop.wait(self.plan.s3_freeze_s)
            finally:
                self.moto.resume()
                self.frozen = False
            rec["seconds"] = self.plan.s3_freeze_s

    # -- the driver ---------------------------------------------------------------------------

    def spec(self, s: Search) -> dict[str, Any]:
        p = self.plan
        return tiny_spec_dict(name=f"soak-{s.index:02d}", seed=100 + s.index,
                              supernet={"iterations": p.supernet_iterations,
                                        "checkpoint_every": 25},
                              evolution={"finalists": 0},  # the library's default
                              retrain={"iterations": p.retrain_iterations,
                                       "checkpoint_every": 8})

    def call(self, c: httpx.Client, what: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            r = c.request(method, path, **kw)
        except httpx.HTTPError:
            with self.lock:
                self.other.append((what, 0))
            return None
        with self.lock:
            self.other.append((what, r.status_code))
        return r

    def drive(self, clients: dict[str, httpx.Client]) -> None:
        """Submits on schedule, cancels and purges when due, until every search has ended
        the way it should (and the soak's minimum time has passed), or max_s."""
        p = self.plan
        while self.now() < p.max_s:
            for s in self.searches:
                c = clients[s.user]
                if s.sid is None and self.now() >= s.at:
                    r = self.call(c, "submit", "POST", "/v1/searches", json=self.spec(s),
                                  headers={"Idempotency-Key": f"soak-{s.index}"})
                    if r is not None and r.status_code in (200, 201):
                        s.sid, s.submitted, s.state = r.json()["search_id"], self.now(), "queued"
                elif s.sid and s.acted is None and s.action == "cancel" \
                        and self._reached(s, s.cancel_at):
                    r = self.call(c, "cancel", "DELETE", f"/v1/searches/{s.sid}")
                    if r is not None and r.status_code == 202:
                        s.acted, s.state = self.now(), r.json()["state"]
                    elif r is not None and r.status_code == 409:  # it had succeeded already
                        s.acted, s.expect, s.note = self.now(), "succeeded", "cancel came late"
                elif s.sid and s.acted is None and s.action == "purge" \
                        and self._reached(s, "stage1", training=True):
                    t = self.now()
                    r = self.call(c, "purge", "DELETE", f"/v1/searches/{s.sid}",
                                  params={"purge": "true"}, timeout=120)
                    if r is not None and r.status_code == 204:
                        s.versions_at_purge = self.versions(s.sid)
                        s.acted, s.state = self.now(), "purged"
                        s.note = f"purge answered in {self.now() - t:.2f} s"
            for s in self.searches:
                if s.action == "cancel" and s.acted is None and s.state == "succeeded":
                    s.expect, s.note = "succeeded", "it finished before the cancel was due"
            ended = all(s.state == "purged" if s.expect == "purged" else s.state in TERMINAL
                        for s in self.searches)
            if ended and self.now() >= p.min_s:
                return
            self.stop.wait(0.2)

    def _reached(self, s: Search, step: str, *, training: bool = False) -> bool:
        """The search's ``step`` runs (with ``training``: its job reports progress) or has
        run, as its poller last read: what a cancel or purge waits for, so that it lands on
        running work."""
        if s.state in TERMINAL:
            return True  # it ended first: act on what is there
        st = s.view.get("steps", {}).get(step, {})
        if st.get("state") == "succeeded":
            return True
        unit: dict[str, Any] = next(iter(st.get("units", {}).values()), {})
        return unit.get("state") == "running" and (bool(unit.get("progress")) or not training)

    # -- what the system left ----------------------------------------------------------------

    def versions(self, sid: str, *, deleted: bool = False) -> set[str]:
        out = set()
        for obj in self.minio.list_objects(BUCKET, prefix=f"runs/searches/{sid}/",
                                           recursive=True, include_version=True):
            if deleted or not obj.is_delete_marker:
                out.add(f"{obj.object_name}@{obj.version_id}")
        return out

    def writes(self, sid: str) -> dict[str, int]:
        """How many times each step result and report of the search was written."""
        counts: dict[str, int] = {}
        for v in self.versions(sid):
            key = v.rsplit("@", 1)[0]
            if key.endswith(("/result.json", "/report.json")):
                counts[key] = counts.get(key, 0) + 1
        return counts

    def verdict(self, clients: dict[str, httpx.Client]) -> dict[str, Any]:
        out, problems = [], []
        dup_writes = 0
        for s in self.searches:
            entry: dict[str, Any] = {"index": s.index, "user": s.user, "search_id": s.sid,
                                     "action": s.action, "expect": s.expect}
            if s.sid is None:
                problems.append(f"search {s.index} was never submitted")
                out.append(entry)
                continue
            r = self.call(clients[s.user], "final", "GET", f"/v1/searches/{s.sid}")
            view = r.json() if r is not None and r.status_code == 200 else {}
            state = ("purged" if r is not None and r.status_code == 404 and s.acted is not None
                     else view.get("state", f"HTTP {r.status_code if r is not None else 0}"))
            counts = self.writes(s.sid)
            dup = {k: n for k, n in counts.items() if n > 1}
            dup_writes += len(dup)
            entry.update(state=state, submitted_s=round(s.submitted or 0, 1),
                         results_written=len(counts), duplicate_writes=dup)
            if s.note:
                entry["note"] = s.note
            if view.get("finished") and view.get("created"):
                from hurricane.runs.records import parse_time

                entry["seconds"] = round(parse_time(view["finished"])
                                         - parse_time(view["created"]), 1)
            if state == "succeeded":
                entry["attempts"] = {f"{st}/{u}": rec.get("attempt")
                                     for st, step in view.get("steps", {}).items()
                                     for u, rec in step.get("units", {}).items()
                                     if (rec.get("attempt") or 1) > 1}
                if len(counts) != len(view.get("plan", [])) + 1:
                    problems.append(f"{s.sid}: {len(counts)} results and reports for a plan of "
                                    f"{len(view.get('plan', []))} steps")
            if s.action == "purge":
                late = sorted(self.versions(s.sid) - s.versions_at_purge)
                left = [o.object_name for o in self.minio.list_objects(
                    BUCKET, prefix=f"runs/searches/{s.sid}/", recursive=True)]
                entry.update(written_after_purge=late, left_after_purge=left)
                if late or left:
                    problems.append(f"{s.sid}: {len(late)} writes after the purge, {len(left)} "
                                    "objects left")
            if state != s.expect:
                problems.append(f"{s.sid} ({s.action}): {state}, expected {s.expect}: "
                                f"{view.get('error', '')}"[:600])
            if dup:
                problems.append(f"{s.sid}: written more than once: {dup}")
            out.append(entry)
        return {"searches": out, "problems": problems, "duplicate_writes": dup_writes}

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.time()
        load_before = machine()
        self.start()
        faults = self.schedule()
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.poller, args=(u,), daemon=True, name=f"poll-{u}")
                   for u in self.tokens]
        threads += [threading.Thread(target=self.sampler, daemon=True, name="sampler"),
                    threading.Thread(target=self.supervisor, daemon=True, name="supervisor"),
                    threading.Thread(target=self.fault_runner, args=(faults,), daemon=True,
                                     name="faults")]
        for t in threads:
            t.start()
        clients = {u: httpx.Client(base_url=str(self.stack.url), headers=self.auth(tok),
                                   timeout=60) for u, tok in self.tokens.items()}
        try:
            self.drive(clients)
            duration = self.now()
            self.stop.set()
            for t in threads:
                t.join(max(30.0, self.plan.s3_freeze_s + 10))
            verdict = self.verdict(clients)
        finally:
            self.stop.set()
            for c in clients.values():
                c.close()
        windows: dict[str, list[tuple[float, float]]] = {f["kind"]: [] for f in self.faults}
        for f in self.faults:
            if "skipped" in f:
                continue
            end = f["end_s"] + (5.0 if f["kind"] == "kill_job" else 0.0)
            windows[f["kind"]].append((f["start_s"], end))

        def inside(kinds: tuple[str, ...] | None) -> list[Sample]:
            spans = [w for k, ws in windows.items() if kinds is None or k.startswith(kinds)
                     for w in ws]
            return [s for s in self.samples if any(a <= s.t <= b for a, b in spans)]

        during = inside(None)
        during_ids = {id(x) for x in during}
        other_5xx = sum(code >= 500 for _, code in self.other)
        status_5xx = sum(s.code >= 500 for s in self.samples)
        problems = verdict.pop("problems")
        dup_jobs = sum(self.duplicates.values())
        if other_5xx or status_5xx:
            problems.append(f"{other_5xx + status_5xx} answers were 5xx")
        if dup_jobs:
            problems.append(f"jobs ran twice at once: {self.duplicates}")
        for crash in self.crashes:
            problems.append(f"{crash['member']} died on its own at {crash['at_s']} s "
                            f"(restarted): {crash['last_error']}")
        freeze = stats(inside(("freeze_s3",)))
        doc = {
            "benchmark": "soak",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "machine": {**load_before, "loadavg_end": machine()["loadavg"]},
            "plan": self.plan.__dict__,
            "duration_s": round(duration, 1),
            "searches_submitted": sum(s.sid is not None for s in self.searches),
            "users": len(self.tokens),
            "outcomes": {k: sum(e.get("state") == k for e in verdict["searches"])
                         for k in ("succeeded", "cancelled", "purged", "failed")},
            "faults": self.faults,
            "crashes": self.crashes,
            "fault_counts": {k: sum(f["kind"] == k and "skipped" not in f for f in self.faults)
                             for k in sorted({f["kind"] for f in self.faults})},
            "status_latency": {"overall": stats(self.samples), "during_faults": stats(during),
                               "s3_freeze": freeze,
                               "redis_restart": stats(inside(("restart_redis",))),
                               "worker_restart": stats(inside(("kill_worker",))),
                               "outside_faults": stats([x for x in self.samples
                                                        if id(x) not in during_ids])},
            "goal_p99_ms_during_s3_freeze": {"goal": 50.0, "measured": freeze["p99_ms"],
                                             "met": freeze["p99_ms"] is not None
                                             and freeze["p99_ms"] < 50.0},
            "http_5xx": other_5xx + status_5xx,
            "other_requests": {what: sum(w == what for w, _ in self.other)
                               for what in sorted({w for w, _ in self.other})},
            "duplicate_writes": verdict.pop("duplicate_writes"),
            "duplicate_jobs": dup_jobs,
            "job_process_samples": self.job_samples,
            "jobs_seen": len(self.jobs_seen),
            **verdict,
            "problems": problems,
            "ok": not problems,
        }
        return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="the test's version: 3 searches from 2 "
                    "users (one cancelled, one purged), one 6 s S3 freeze")
    ap.add_argument("--searches", type=int)
    ap.add_argument("--minutes", type=float, help="the least time the soak lasts")
    ap.add_argument("--supernet-iterations", type=int, help="per supernet stage "
                    f"(default {Plan.supernet_iterations})")
    ap.add_argument("--retrain-iterations", type=int, help="the winner's retrain "
                    f"(default {Plan.retrain_iterations})")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--dir", type=Path, help="where the stack's state and logs go (kept)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    plan = TINY if args.tiny else Plan()
    given = {"searches": args.searches, "supernet_iterations": args.supernet_iterations,
             "retrain_iterations": args.retrain_iterations,
             "min_s": None if args.minutes is None else args.minutes * 60}
    plan = dataclasses.replace(plan, **{k: v for k, v in given.items() if v is not None})
    root = args.dir or Path(tempfile.mkdtemp(prefix="hurricane-soak-"))

    def interrupted(signum: int, frame: Any) -> None:  # `timeout`, kill: stop every process
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    soak = Soak(plan, root, args.seed)
    try:
        doc = soak.run()
    finally:
        soak.close()
    doc["logs"] = str(root)
    emit(doc, args.out)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
