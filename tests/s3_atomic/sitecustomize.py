"""Loaded by the tests' S3-protocol server (``tests/servers.py`` puts this folder first on
``moto_server``'s PYTHONPATH): makes conditional writes atomic, as S3 and MinIO make them.

moto answers ``PUT`` with ``If-None-Match: *`` (or ``If-Match``) by looking the key up and then
writing it, two steps on a threaded server: two racing conditional PUTs can both pass the look
up and both "win" (seen on a loaded 2-core machine:
``test_if_absent_race_has_one_winner[s3]`` got two winners). The library relies on the
server's atomicity for leases and exactly-once results, as it may on S3 and MinIO; one lock
around moto's object PUT handler and its POST handler (multipart completion checks the same
header) closes the gap in the stand-in. Only tests use it."""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()


def _serialised(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return fn(*args, **kwargs)

    return wrapper


def _patch() -> None:
    from moto.s3.responses import S3Response

    for name in ("put_object", "_key_response_post"):
        setattr(S3Response, name, _serialised(getattr(S3Response, name)))


_patch()
