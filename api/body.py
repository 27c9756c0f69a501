"""Request bodies: size limits (413), JSON or YAML documents, and 422 errors that name the
field, in FastAPI's own error shape."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import yaml
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

MAX_NODES = 200_000  # bounds the work a document of aliases (a "YAML bomb") can cause
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> NoReturn:
    raise RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def pydantic_errors(err: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> NoReturn:
    """Re-raises a model's validation errors as a 422 naming each field."""
    detail = []
    for e in err.errors():
        detail.append({"loc": [*prefix, *e["loc"]],
                       "msg": str(e["msg"]).removeprefix("Value error, "), "type": e["type"]})
    raise RequestValidationError(detail)


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise HTTPException(400, f"Content-Length {declared!r} is not a number") from None
        if n > limit:
            raise HTTPException(413, f"{what} is {n} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{what} exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_nan(_: str) -> NoReturn:
    invalid(["body"], "NaN and Infinity are not valid JSON numbers")


def _check_finite(obj: Any, loc: list[str | int], budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        invalid(["body"], f"the document has more than {MAX_NODES} values")
    if isinstance(obj, float) and not math.isfinite(obj):
        invalid(loc, f"{obj} is not a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, [*loc, str(k)], budget)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, [*loc, i], budget)


def parse_document(raw: bytes, content_type: str | None, what: str) -> Any:
    """A JSON or YAML document (by Content-Type; YAML also parses JSON); 422 names the line."""
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        invalid(["body"], f"{what} is not UTF-8 text (byte {err.start})")
    if not text.strip():
        invalid(["body"], f"{what} is empty")
    if ctype in YAML_TYPES:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            invalid(["body"], f"{what} is not valid YAML{where}: "
                    f"{getattr(err, 'problem', None) or err}", "yaml_invalid")
    elif ctype in ("application/json", "text/json") or ctype.endswith("+json"):
        try:
            data = json.loads(text, parse_constant=_reject_nan)
        except json.JSONDecodeError as err:
            invalid(["body"], f"{what} is not valid JSON (line {err.lineno}, column {err.colno}): "
                    f"{err.msg}", "json_invalid")
    else:
        raise HTTPException(415, f"Content-Type {ctype!r} is not accepted; send "
                                 "application/json or application/yaml")
    _check_finite(data, ["body"], [MAX_NODES])
    return data
