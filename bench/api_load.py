"""API load on loopback against the local stack (`hurricane stack`, local-directory store):
status GET latency (p50/p99) and requests/s at 50 and 200 concurrent clients, and
submissions/s. Prints JSON (and writes it with --out).

Clients are keep-alive HTTP/1.1 connections driven by one asyncio process (a lean client:
the load generator shares the machine's cores with the server). Two client models:

- ``closed``: every client sends its next request as soon as the last one answered (the
  server's saturation throughput; latency then grows with the number of clients).
- ``paced``: every client polls its search's status every ``--interval`` seconds, as a
  dashboard or a `watch` would (offered load = clients / interval).

The stack's workers are stopped before the load: only the API (and Redis, for progress and
enqueues) is measured; the searches stay queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import emit

from hurricane.service.stack import Stack, StackConfig, free_port
from tests.conftest import tiny_spec_dict


class Conn:
    """One keep-alive HTTP/1.1 connection with just enough parsing for our responses."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      ctype: str = "application/json") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Length: {len(body)}\r\n"
                + (f"Content-Type: {ctype}\r\n" if body else "") + "\r\n")
        self.writer.write(head.encode() + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


async def status_load(host: str, port: int, token: str, ids: list[str], clients: int,
                      seconds: float, interval: float | None) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        c = Conn(host, port, token)
        sid = ids[i % len(ids)]
        nxt = time.monotonic() + (interval or 0) * (i / clients)  # spread the first polls
        try:
            while True:
                if interval:
                    await asyncio.sleep(max(0.0, nxt - time.monotonic()))
                    nxt += interval
                if time.monotonic() >= stop:
                    return
                t0 = time.perf_counter()
                code, _ = await c.request("GET", f"/v1/searches/{sid}")
                lat.append(time.perf_counter() - t0)
                errors += code != 200
        finally:
            c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.monotonic() - t0
    return {"clients": clients, "model": "paced" if interval else "closed",
            "interval_s": interval, "seconds": round(wall, 2), "requests": len(lat),
            "errors": errors, "requests_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(pct(lat, 50) * 1e3, 2), "p90_ms": round(pct(lat, 90) * 1e3, 2),
            "p99_ms": round(pct(lat, 99) * 1e3, 2), "max_ms": round(max(lat) * 1e3, 2),
            "mean_ms": round(statistics.fmean(lat) * 1e3, 2)}


async def submit_load(host: str, port: int, token: str, clients: int, total: int) -> dict[str, Any]:
    body = json.dumps(tiny_spec_dict()).encode()
    lat: list[float] = []
    ids: list[str] = []
    samples: list[str] = []
    errors = 0
    left = [total]

    async def client() -> None:
        nonlocal errors
        c = Conn(host, port, token)
        try:
            while left[0] > 0:
                left[0] -= 1
                t0 = time.perf_counter()
                code, data = await c.request("POST", "/v1/searches", body)
                lat.append(time.perf_counter() - t0)
                if code == 201:
                    ids.append(json.loads(data)["search_id"])
                else:
                    errors += 1
                    samples.append(f"{code} {data[:300]!r}")
        finally:
            c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.monotonic() - t0
    return {"clients": clients, "submissions": len(ids), "errors": errors,
            "submissions_per_s": round(len(ids) / wall, 1), "p50_ms": round(pct(lat, 50) * 1e3, 2),
            "p99_ms": round(pct(lat, 99) * 1e3, 2), "error_samples": samples[:5], "ids": ids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="per load level (bounded)")
    ap.add_argument("--intervals", default="1.0,0.1",
                    help="paced clients' poll periods (s), comma-separated")
    ap.add_argument("--searches", type=int, default=100, help="searches submitted (and then "
                    "polled)")
    ap.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from hurricane.machine import machine_info

    with tempfile.TemporaryDirectory(prefix="hurricane-bench-") as d:
        stack = Stack(Path(d) / "stack")
        cfg = StackConfig(state_dir=stack.dir, api_port=free_port(), redis_port=free_port(),
                          api_workers=args.api_workers)
        stack.up(cfg)
        try:
            stack.stop("control")  # measure the API alone: submissions stay queued
            stack.stop("jobs")
            host, port, token = "127.0.0.1", cfg.api_port, str(stack.token())
            sub = asyncio.run(submit_load(host, port, token, 10, args.searches))
            ids = sub.pop("ids")
            levels = []
            intervals = [float(x) for x in args.intervals.split(",")]
            for clients in (50, 200):
                for interval in (None, *intervals):
                    levels.append(asyncio.run(status_load(host, port, token, ids, clients,
                                                          args.seconds, interval)))
        finally:
            stack.down()
    out = {"bench": "api_load", "machine": machine_info(),
           "command": "python bench/api_load.py " + " ".join(sys.argv[1:]),
           "setup": {"api_workers": args.api_workers, "store": "local directory",
                     "status_cache_s": 0.5, "searches": len(ids),
                     "server": "uvicorn (uvloop, httptools)"},
           "submissions": sub, "status": levels,
           "goal": "p99 status < 50 ms at 200 concurrent clients",
           "notes": "closed = no think time (saturation; the asyncio load generator shares the "
                    "2 cores and its own scheduling delay is part of the latency); paced = each "
                    "client polls every interval_s",
           "goal_met_paced": {str(lv["interval_s"]): lv["p99_ms"] < 50 for lv in levels
                              if lv["clients"] == 200 and lv["model"] == "paced"},
           "goal_met_closed": all(lv["p99_ms"] < 50 for lv in levels
                                  if lv["clients"] == 200 and lv["model"] == "closed")}
    emit(out, args.out)


if __name__ == "__main__":
    main()
