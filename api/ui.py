"""The web dashboard, served by the API itself at ``/ui/``: the built assets of ``dashboard/``
(package data in ``hurricane/api/ui``, so neither a user nor the image needs Node at run
time), with a strict Content-Security-Policy; and ``GET /v1/me``, who a token belongs to
(the dashboard's login and its admin-only columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from hurricane.api.deps import CurrentUser

UI_DIR = Path(__file__).resolve().parent / "ui"
# the dashboard loads nothing from elsewhere; ECharts sets inline styles on its elements
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

router = APIRouter(tags=["dashboard"])


class MePublic(BaseModel):
    name: str
    role: str = Field(description="user or admin")
    is_admin: bool


@router.get("/v1/me", response_model=MePublic)
async def me(user: CurrentUser) -> dict[str, Any]:
    """Who the bearer token belongs to."""
    return {"name": user.name, "role": user.role, "is_admin": user.is_admin}


class _Assets(StaticFiles):
    """The built dashboard: hashed assets cached for a year, index.html never, every
    response with the CSP (the app routes itself with #/ paths)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                path = scope.get("path", "")
                cache = ("public, max-age=31536000, immutable" if "/assets/" in path
                         else "no-cache")
                message.setdefault("headers", [])
                message["headers"] += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", cache.encode())]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)  # type: ignore[arg-type]


def mount(app: FastAPI) -> None:
    """Adds ``/v1/me`` and the dashboard at ``/ui/`` (``/`` redirects there)."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    if (UI_DIR / "index.html").is_file():
        app.mount("/ui", _Assets(directory=UI_DIR, html=True), name="ui")
        return

    @app.get("/ui/{rest:path}", include_in_schema=False)
    async def _missing(rest: str) -> Response:
        return Response("The dashboard is not built into this installation: run "
                        "scripts/build_ui.sh (needs Node.js and npm) and reinstall.\n",
                        status_code=404, media_type="text/plain")
