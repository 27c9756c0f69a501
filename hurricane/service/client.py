"""The service's HTTP client (what `hurricane submit/watch/fetch/...` use): errors that name
the field, the event stream, and downloads verified by size and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from hurricane.service.stack import DEFAULT_DIR, Stack


class ApiError(RuntimeError):
    """The server refused a request; the message carries its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NoServer(RuntimeError):
    """No server was given and no local stack runs."""


def resolve(server: str | None, token: str | None) -> tuple[str, str | None]:
    """``--server``/``HURRICANE_SERVER`` (else the local stack's), and ``--token``/
    ``HURRICANE_TOKEN`` (else the local stack's admin token when talking to it)."""
    server = server or os.environ.get("HURRICANE_SERVER")
    token = token or os.environ.get("HURRICANE_TOKEN")
    stack = Stack(Path(os.environ.get("HURRICANE_STACK_DIR", str(DEFAULT_DIR))))
    if server is None:
        server = stack.url if stack.state().get("processes") else None
        if server is None:
            raise NoServer("no server: give --server URL (or HURRICANE_SERVER), or start one "
                           "here with `hurricane stack up`")
    if token is None and stack.url and server.rstrip("/") == stack.url.rstrip("/"):
        token = stack.token()
    return server.rstrip("/"), token


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500] or r.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        lines = []
        for d in detail:
            loc = ".".join(str(p) for p in d.get("loc", []) if p != "body") or "body"
            lines.append(f"  {loc}: {d.get('msg')}")
        return f"{len(detail)} error(s):\n" + "\n".join(lines)
    return str(detail)


class Client:
    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server
        self.http = httpx.Client(base_url=server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as err:
            raise ApiError(0, f"cannot reach {self.server}: {type(err).__name__}: {err}") from None
        if r.status_code >= 400:
            raise ApiError(r.status_code, f"HTTP {r.status_code}: {_detail(r)}")
        return r

    def submit(self, spec: Path, *, idempotency_key: str | None = None) -> dict[str, Any]:
        ctype = "application/json" if spec.suffix == ".json" else "application/yaml"
        headers = {"Content-Type": ctype}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._call("POST", "/v1/searches", content=spec.read_bytes(),  # type: ignore[no-any-return]
                          headers=headers).json()

    def submit_spec(self, spec: dict[str, Any], *, owner: str | None = None,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """Submits a spec given as a mapping; ``owner`` (admins) submits on that user's behalf."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/searches", json=spec,  # type: ignore[no-any-return]
                          params={"owner": owner} if owner else None, headers=headers).json()

    def searches(self, *, state: str | None = None, limit: int = 50,
                 cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"state": state, "limit": limit, "cursor": cursor}.items() if v}
        return self._call("GET", "/v1/searches", params=params).json()  # type: ignore[no-any-return]

    def get(self, search_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/searches/{search_id}").json()  # type: ignore[no-any-return]

    def cancel(self, search_id: str, *, purge: bool = False) -> dict[str, Any] | None:
        r = self._call("DELETE", f"/v1/searches/{search_id}", params={"purge": str(purge).lower()})
        return None if r.status_code == 204 else r.json()

    def resume(self, search_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/searches/{search_id}/resume").json()  # type: ignore[no-any-return]

    def artifacts(self, search_id: str, *, device: str | None = None) -> dict[str, Any]:
        params = {"device": device} if device else {"checksums": "true"}
        return self._call("GET", f"/v1/searches/{search_id}/artifacts",  # type: ignore[no-any-return]
                          params=params).json()

    def events(self, search_id: str, *, reconnects: int = 20) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) from the server's event stream until ``end``; a dropped connection is
        reopened (the server starts each stream with the current state)."""
        for attempt in range(reconnects + 1):
            try:
                with self.http.stream("GET", f"/v1/searches/{search_id}/events",
                                      timeout=httpx.Timeout(30.0, read=60.0)) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise ApiError(r.status_code, f"HTTP {r.status_code}: {_detail(r)}")
                    event, data = "message", []
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif not line and data:
                            payload = json.loads("\n".join(data))
                            yield event, payload
                            if event == "end":
                                return
                            event, data = "message", []
            except (httpx.TransportError, httpx.StreamError):
                if attempt == reconnects:
                    raise ApiError(0, f"lost the event stream of {search_id} "
                                      f"{reconnects + 1} times") from None
                time.sleep(min(10.0, 0.5 * 2 ** attempt))

    def download(self, url: str, dest: Path, *, size: int | None, sha256: str | None) -> Path:
        """Streams ``url`` to ``dest`` (atomically) and checks size and SHA-256."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        h, n = hashlib.sha256(), 0
        absolute = url if url.startswith(("http://", "https://")) else self.server + url
        # presigned URLs carry their own authority: send no bearer token to the object store
        with httpx.stream("GET", absolute, timeout=httpx.Timeout(30.0, read=300.0),
                          follow_redirects=True) as r:
            if r.status_code >= 400:
                r.read()
                raise ApiError(r.status_code, f"download of {dest.name} failed: HTTP "
                               f"{r.status_code}: {_detail(r)}")
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
        if size is not None and n != size:
            tmp.unlink(missing_ok=True)
            raise ApiError(0, f"{dest.name}: downloaded {n} bytes, expected {size}")
        if sha256 is not None and h.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise ApiError(0, f"{dest.name}: SHA-256 {h.hexdigest()} does not match {sha256}")
        tmp.replace(dest)
        return dest
