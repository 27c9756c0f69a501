"""The REST application: one router per resource, metrics middleware, error mapping, and an
OpenAPI document that carries the search spec's schema (served at /docs)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from hurricane import __version__
from hurricane.api import devices, health, searches
from hurricane.records import SearchNotFound
from hurricane.spec import SearchSpec
from hurricane.store import StoreUnavailable


def create_app() -> FastAPI:
    app = FastAPI(title="hurricane-nas", version=__version__,
                  description="Hardware-aware neural architecture search as a batch service: "
                  "submit a search spec, follow its steps, fetch the retrained model.")
    app.state.metrics = health.Metrics()
    app.include_router(searches.router)
    app.include_router(devices.router)
    app.include_router(health.router)
    app.include_router(health.files)
    app.add_middleware(health.MetricsMiddleware, metrics=app.state.metrics)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, err: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"the object store is unreachable: {err}"}, status_code=503,
                            headers={"Retry-After": "10"})

    @app.exception_handler(SearchNotFound)
    async def _gone(request: Request, err: SearchNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=404)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            schema = SearchSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = doc.setdefault("components", {}).setdefault("schemas", {})
            comps.update(schema.pop("$defs", {}))
            comps["SearchSpec"] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
