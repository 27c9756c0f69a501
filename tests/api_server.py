"""The API alone as a real uvicorn process over a real redis-server and an S3-protocol server
(moto, the artifact store): what the hostile-input, schemathesis and tenancy tests send HTTP
requests to. No workers run, so every accepted search stays queued."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import MotoServer, free_port, stop_process

USERS = {"alice": "user", "bob": "user", "carol": "user", "quota": "user", "root": "admin"}
MAX_ACTIVE = 3  # the live server's per-user limit of active searches


class ApiServer:
    """uvicorn serving ``hurricane.api.app:app`` on a free port, storing to
    ``s3://hurricane-live/runs`` on its own moto_server; ``tokens`` maps each of ``USERS`` to
    its bearer token. ``data`` is the data root (``<data>/shared``, ``<data>/users/{user}``);
    the bucket ``datasets`` is allowed for packed sets (and does not exist)."""

    BUCKET = "hurricane-live"
    ACCESS, SECRET = "live-key", "live-secret-0123456789"

    def __init__(self, root: Path, redis_url: str, **env: str) -> None:
        self.root, self.redis_url, self.extra = root, redis_url, env
        self.port = free_port()
        self.moto = MotoServer(log=root / "moto.log")
        self.tokens: dict[str, str] = {}
        self.data = root / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "HURRICANE_STORE": f"s3://{self.BUCKET}/runs",
            "HURRICANE_S3_ENDPOINT": self.moto.endpoint, "HURRICANE_S3_ACCESS_KEY": self.ACCESS,
            "HURRICANE_S3_SECRET_KEY": self.SECRET, "HURRICANE_S3_TIMEOUT_S": "5",
            "HURRICANE_STORE_RETRY_S": "5", "HURRICANE_REDIS_URL": self.redis_url,
            "HURRICANE_TOKENS_FILE": str(self.root / "tokens.yaml"),
            "HURRICANE_SIGNING_KEY": "live-signing-key-0123456789abcdef",
            "HURRICANE_STATUS_CACHE_S": "0",
            "HURRICANE_DATA_ROOTS": f"{self.data}/shared,{self.data}/users/{{user}}",
            "HURRICANE_DATA_BUCKETS": "datasets",
            "HURRICANE_MAX_ACTIVE_SEARCHES": str(MAX_ACTIVE), **self.extra}

    def start(self) -> ApiServer:
        from minio import Minio

        from hurricane.service.tokens import add_token

        self.root.mkdir(parents=True, exist_ok=True)
        for user, role in USERS.items():
            self.tokens[user] = add_token(self.root / "tokens.yaml", user, role)
        for d in ("shared", "users/alice", "users/bob"):
            (self.data / d).mkdir(parents=True, exist_ok=True)
        self.moto.start()
        Minio(self.moto.endpoint.removeprefix("http://"), access_key=self.ACCESS,
              secret_key=self.SECRET, secure=False, region="us-east-1").make_bucket(self.BUCKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HURRICANE_")}
        env.update(self.env, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        log = open(self.root / "api.log", "ab")  # noqa: SIM115 (the process keeps it)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hurricane.api.app:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 60
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API did not start: {self.log_tail()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, n: int = 4000) -> str:
        p = self.root / "api.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def headers(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}

    def store(self) -> Any:
        from hurricane.storage.s3store import S3Store

        return S3Store(endpoint=self.moto.endpoint, access_key=self.ACCESS,
                       secret_key=self.SECRET, bucket=self.BUCKET, prefix="runs",
                       timeout_s=5, retry_s=5)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            stop_process(proc)
        finally:
            self.moto.stop()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
