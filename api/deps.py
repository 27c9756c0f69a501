"""Dependencies shared by the routes: settings, store, broker, Redis, the caller, and the
lookup-and-permission check of a search id (another user's search is 404)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Annotated, Any

import redis
from celery import Celery
from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hurricane.api.service import SearchService
from hurricane.runs.records import SearchNotFound
from hurricane.service.tokens import TokenTable, User
from hurricane.settings import Settings, get_settings
from hurricane.storage.store import ArtifactStore
from hurricane.storage.stores import open_store
from hurricane.workers.dispatch import redis_client

SEARCH_ID = r"^[a-z0-9][-a-z0-9]{0,62}$"


# Cheap dependencies are coroutines: FastAPI runs every plain `def` dependency in a worker
# thread, and a request crossing five thread hops spends more time there than in the route.
async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


_stores: dict[str, ArtifactStore] = {}


def _store(url: str) -> ArtifactStore:
    hit = _stores.get(url)
    if hit is None:  # opening an s3:// store checks its bucket: network, with retries
        hit = _stores.setdefault(url, open_store(url))
    return hit


async def store(s: SettingsDep) -> ArtifactStore:
    hit = _stores.get(s.store)
    return hit if hit is not None else await run_in_threadpool(_store, s.store)


StoreDep = Annotated[ArtifactStore, Depends(store)]


async def redis_dep(s: SettingsDep) -> redis.Redis:
    return redis_client(s.redis_dsn)


RedisDep = Annotated[redis.Redis, Depends(redis_dep)]


@functools.lru_cache(maxsize=4)
def _celery(url: str) -> Celery:
    from hurricane.workers.app import create_app

    return create_app(get_settings())


async def celery(s: SettingsDep) -> Celery:
    return _celery(s.redis_dsn)


_per_settings: dict[tuple[str, int], tuple[Settings, Any]] = {}


def _once(kind: str, s: Settings, make: Callable[[Settings], Any]) -> Any:
    """One object per settings object (settings hold dicts: they are not hashable)."""
    key = (kind, id(s))
    hit = _per_settings.get(key)
    if hit is None or hit[0] is not s:
        hit = _per_settings[key] = (s, make(s))  # the settings object is kept: ids stay unique
    return hit[1]


def _service(s: Settings) -> SearchService:
    return _once("service", s, lambda s: SearchService(
        s, _store(s.store), _celery(s.redis_dsn), redis_client(s.redis_dsn)))  # type: ignore[no-any-return]


async def service(s: SettingsDep) -> SearchService:
    hit = _per_settings.get(("service", id(s)))
    if hit is not None and hit[0] is s:
        return hit[1]  # type: ignore[no-any-return]
    return await run_in_threadpool(_service, s)  # the first one opens the store


ServiceDep = Annotated[SearchService, Depends(service)]


def _tokens(s: Settings) -> TokenTable:
    return _once("tokens", s, TokenTable)  # type: ignore[no-any-return]


bearer = HTTPBearer(auto_error=False, description="a token from `hurricane token create`")


async def current_user(s: SettingsDep, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                       Depends(bearer)]) -> User:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                            headers=unauthorized)
    user = _tokens(s).lookup(creds.credentials)
    if user is None:
        raise HTTPException(401, "invalid, expired or revoked token", headers=unauthorized)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def search_id_param(search_id: Annotated[str, Path(
        pattern=SEARCH_ID, description="a search id as POST /v1/searches returned it")]) -> str:
    return search_id


async def owned_search(search_id: Annotated[str, Depends(search_id_param)], user: CurrentUser,
                       svc: ServiceDep) -> str:
    """The search id, when it exists and the caller may see it (else 404, never 403: the
    existence of another user's search is not disclosed)."""
    try:
        meta = svc.cached_meta(search_id)
        if meta is None:
            meta = await run_in_threadpool(svc.meta, search_id)
    except SearchNotFound:
        raise HTTPException(404, f"no search {search_id!r}") from None
    if meta.get("owner") != user.name and not user.is_admin:
        raise HTTPException(404, f"no search {search_id!r}")
    return search_id


OwnedSearch = Annotated[str, Depends(owned_search)]


def base_url(request: Request, s: Settings) -> str:
    return (s.public_url or str(request.base_url)).rstrip("/")


def valid_search_id(v: str) -> bool:
    return re.match(SEARCH_ID, v) is not None
