"""The REST application: one router per resource (devices today; searches with the service)."""

from __future__ import annotations

from fastapi import FastAPI

from hurricane import __version__
from hurricane.api import devices


def create_app() -> FastAPI:
    app = FastAPI(title="hurricane-nas", version=__version__)
    app.include_router(devices.router)
    return app


app = create_app()
