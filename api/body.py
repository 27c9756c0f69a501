"""Request bodies: size limits (413), JSON or YAML documents parsed within bounds, and 422
errors that name the field, in FastAPI's own error shape and always JSON-encodable."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, NoReturn

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import JSONResponse

from hurricane.documents import DocumentError, parse_json, parse_yaml

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def invalid(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> NoReturn:
    raise RequestValidationError([{"loc": list(loc), "msg": msg, "type": kind}])


def pydantic_errors(err: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> NoReturn:
    """Re-raises a model's validation errors as a 422 naming each field (never echoing the
    input: it may be anything the client sent)."""
    detail = []
    for e in err.errors(include_url=False, include_input=False, include_context=False):
        detail.append({"loc": [*prefix, *e["loc"]],
                       "msg": str(e["msg"]).removeprefix("Value error, "), "type": e["type"]})
    raise RequestValidationError(detail)


def document_error(err: DocumentError) -> NoReturn:
    invalid(list(err.loc), err.msg, err.kind)


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit() or len(declared) > 18:
            raise HTTPException(400, "Content-Length is not a number of bytes")
        n = int(declared)
        if n > limit:
            raise HTTPException(413, f"{what} is {n} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{what} exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(content_type: str | None, default: str = "application/json") -> str:
    return (content_type or default).split(";")[0].strip().lower()


def decode_text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        invalid(["body"], f"{what} is not UTF-8 text (byte {err.start})", "unicode")
    if "\x00" in text:
        invalid(["body"], f"{what} holds a NUL character", "unicode")
    return text


def parse_document(raw: bytes, content_type: str | None, what: str, *,
                   yaml_ok: bool = True) -> Any:
    """A JSON or YAML document (by Content-Type); 422 names the field or the line. Runs the
    parser: call it from a worker thread, never on the event loop."""
    ctype = media_type(content_type)
    is_json = ctype in ("application/json", "text/json") or ctype.endswith("+json")
    if not is_json and not (yaml_ok and ctype in YAML_TYPES):
        accepted = "application/json or application/yaml" if yaml_ok else "application/json"
        raise HTTPException(415, f"Content-Type {ctype!r} is not accepted; send {accepted}")
    text = decode_text(raw, what)
    if not text.strip():
        invalid(["body"], f"{what} is empty")
    try:
        if is_json:
            return parse_json(text, root=("body",))
        return parse_yaml(text, root=("body",))
    except DocumentError as err:
        document_error(err)


# ----- responses that always encode ---------------------------------------------------------

def _loc_part(p: object) -> str | int:
    if isinstance(p, int) and not isinstance(p, bool):
        return p
    return _text(str(p))


def _text(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def jsonable(obj: Any, depth: int = 0) -> Any:
    """``obj`` made JSON-encodable: non-finite numbers and other values become text, lone
    surrogates are escaped (an error payload must never fail to encode)."""
    if depth > 40:
        return "…"
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, str):
        return _text(obj)
    if isinstance(obj, dict):
        return {_text(str(k)): jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v, depth + 1) for v in obj]
    return _text(repr(obj))[:200]


def clean_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as loc, msg and type only: FastAPI's own errors carry the input,
    which may be a NaN or bytes that JSON cannot hold."""
    out = []
    for e in errors:
        e = e if isinstance(e, dict) else {"msg": str(e)}
        out.append({"loc": [_loc_part(p) for p in e.get("loc", ())],
                    "msg": _text(str(e.get("msg", ""))).removeprefix("Value error, "),
                    "type": _text(str(e.get("type", "value_error")))})
    return out


class SafeJSONResponse(JSONResponse):
    """A JSONResponse that cannot fail to encode (error handlers use it)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(jsonable(content), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
