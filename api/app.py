"""The REST application: one router per resource, body limits and metrics middleware, error
mapping (every error JSON that always encodes), and an OpenAPI document that carries the
search spec's schema (served at /docs)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hurricane import __version__
from hurricane.api import devices, health, insights, searches, ui
from hurricane.api.body import SafeJSONResponse, clean_errors
from hurricane.api.limits import BodyLimit
from hurricane.runs.records import SearchNotFound
from hurricane.spec import SearchSpec
from hurricane.storage.store import StoreUnavailable

log = logging.getLogger("hurricane.api")


def create_app() -> FastAPI:
    app = FastAPI(title="hurricane-nas", version=__version__,
                  description="Hardware-aware neural architecture search as a batch service: "
                  "submit a search spec, follow its steps, fetch the retrained model.")
    app.state.metrics = health.Metrics()
    app.include_router(searches.router)
    app.include_router(insights.router)
    app.include_router(devices.router)
    app.include_router(health.router)
    app.include_router(health.files)
    ui.mount(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(health.MetricsMiddleware, metrics=app.state.metrics)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, err: StoreUnavailable) -> JSONResponse:
        return SafeJSONResponse({"detail": f"the object store is unreachable: {err}"},
                                status_code=503, headers={"Retry-After": "10"})

    @app.exception_handler(SearchNotFound)
    async def _gone(request: Request, err: SearchNotFound) -> JSONResponse:
        return SafeJSONResponse({"detail": str(err)}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        # loc, msg and type only: FastAPI's default echoes the input, which may not encode
        return SafeJSONResponse({"detail": clean_errors(err.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code in (204, 304):
            return JSONResponse(None, status_code=err.status_code, headers=err.headers)
        return SafeJSONResponse({"detail": err.detail}, status_code=err.status_code,
                                headers=err.headers)

    @app.exception_handler(ResponseValidationError)
    async def _bad_response(request: Request, err: ResponseValidationError) -> JSONResponse:
        log.error("%s %s: the response does not match its schema: %s", request.method,
                  request.url.path, clean_errors(err.errors())[:5])
        return SafeJSONResponse({"detail": "internal error: the response did not match its "
                                 "schema"}, status_code=500)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            schema = SearchSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = doc.setdefault("components", {}).setdefault("schemas", {})
            comps.update(schema.pop("$defs", {}))
            comps["SearchSpec"] = schema
            add_links(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def add_links(doc: dict[str, Any]) -> None:
    """OpenAPI links: a created search's id feeds every route of that search, an imported
    table's name the table's routes (clients and stateful testers follow them)."""
    paths = doc.get("paths", {})

    def link(source: tuple[str, str, str], param: str, expr: str, prefix: str) -> None:
        links = paths[source[0]][source[1]]["responses"][source[2]].setdefault("links", {})
        for path, ops in paths.items():
            if not path.startswith(prefix) or "{" + param + "}" not in path:
                continue
            for op in ops.values():
                name = op["operationId"]
                links[name] = {"operationId": name, "parameters": {param: expr}}

    link(("/v1/searches", "post", "201"), "search_id", "$response.body#/search_id",
         "/v1/searches/")
    link(("/v1/devices/{name}/table", "put", "201"), "name", "$response.body#/name",
         "/v1/devices/")


app = create_app()
