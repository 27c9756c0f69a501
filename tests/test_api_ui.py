"""The dashboard's routes without a browser: /ui/ serves the built assets under a strict
Content-Security-Policy (hashed assets cached, index.html not), / redirects there, and
GET /v1/me says who a token belongs to (401 without one)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]


def test_the_dashboard_is_served_under_a_strict_policy(service_env) -> None:  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    assert (ROOT / "api/ui/index.html").is_file(), "scripts/build_ui.sh (bootstrap runs it)"
    c = TestClient(create_app(), follow_redirects=False)
    r = c.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    # no inline script: everything the page runs comes from /ui/assets/
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts and all('src="/ui/assets/' in s for s in scripts)
    for src in re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', page.text):
        asset = c.get(src)
        assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert c.get("/ui/nope.js").status_code == 404
    assert c.get("/ui/../pyproject.toml").status_code == 404


def test_me_names_the_tokens_user(service_env) -> None:  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    c = TestClient(create_app())
    assert c.get("/v1/me").status_code == 401
    assert c.get("/v1/me", headers={"Authorization": "Bearer hur_nope"}).status_code == 401
    for user, admin in (("alice", False), ("root", True)):
        r = c.get("/v1/me", headers={"Authorization": f"Bearer {service_env['tokens'][user]}"})
        assert r.status_code == 200 and r.json() == {
            "name": user, "role": "admin" if admin else "user", "is_admin": admin}
