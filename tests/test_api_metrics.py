"""/metrics behind HURRICANE_METRICS (disabled by default, a token of its own, or open) and
its label values bounded: made-up HTTP methods count as "other"."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from hurricane.settings import get_settings


def _app(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    from hurricane.api.app import create_app

    return TestClient(create_app())


def test_metrics_are_disabled_by_default(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c = _app(monkeypatch)
    r = c.get("/metrics")
    assert r.status_code == 404 and "HURRICANE_METRICS" in r.json()["detail"]
    admin = {"Authorization": f"Bearer {service_env['tokens']['root']}"}
    assert c.get("/metrics", headers=admin).status_code == 404  # not even for an admin


def test_metrics_token_mode_takes_only_the_metrics_token(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token = "prom-0123456789abcdef"
    c = _app(monkeypatch, HURRICANE_METRICS="token",
             HURRICANE_METRICS_TOKEN_SHA256=hashlib.sha256(token.encode()).hexdigest())
    assert c.get("/metrics").status_code == 401
    for bad in ("Bearer wrong", f"Basic {token}", "Bearer ", f"Bearer {service_env['tokens']['root']}"):
        r = c.get("/metrics", headers={"Authorization": bad})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", bad
    r = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "hurricane_searches" in r.text


def test_token_mode_without_a_hash_is_refused_at_start(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HURRICANE_METRICS", "token")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="HURRICANE_METRICS=token needs HURRICANE_METRICS_TOKEN_SHA256"):
        get_settings()


def test_made_up_methods_do_not_grow_the_label_set(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c = _app(monkeypatch, HURRICANE_METRICS="open")
    for i in range(40):
        c.request(f"X{i}METHOD", "/healthz")
    c.request("PROPFIND", "/v1/searches")
    c.get("/healthz")
    c.request("DELETE", "/healthz")
    text = c.get("/metrics").text
    methods = set(re.findall(r'hurricane_http_requests_total\{method="([^"]*)"', text))
    assert methods == {"GET", "DELETE", "other"}
    assert 'hurricane_http_requests_total{method="other",route="/healthz",status="405"} 40.0' in text
    assert "X0METHOD" not in text and "PROPFIND" not in text
