"""API users: bearer tokens mapped to users, stored only as SHA-256 hashes (a token file or the
environment), tokens are never logged; no, a bad, an expired or a revoked token is 401. A token
file that turns malformed keeps the last good set (and the error is logged)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hurricane.settings import Settings

log = logging.getLogger("hurricane")
USER = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,62}[a-z0-9])?$")
ROLES = ("user", "admin")


@dataclass(frozen=True)
class User:
    name: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hur_" + secrets.token_urlsafe(32)


class TokenError(ValueError):
    """A token file or setting is malformed; the message names the entry."""


@dataclass(frozen=True)
class Grant:
    """What one token hash grants: a user, until ``expires`` (epoch seconds; None: no end)."""

    user: User
    expires: float | None = None

    def valid(self, now: float | None = None) -> bool:
        return self.expires is None or (time.time() if now is None else now) < self.expires


def parse_expiry(value: object, where: str) -> float | None:
    """Epoch seconds from an ISO 8601 time (``2027-01-06T00:00:00Z``; no zone: UTC) or date, as
    a token file holds it (YAML may already have made it a datetime or a date)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise TokenError(f"{where}: {value!r} is not an ISO 8601 time (e.g. "
                             "2027-01-06T00:00:00Z or 2027-01-06)") from None
    else:
        raise TokenError(f"{where}: expected an ISO 8601 time, got {type(value).__name__}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def parse_entries(entries: object, source: str) -> dict[str, Grant]:
    if not isinstance(entries, list):
        raise TokenError(f"{source}: expected a list of {{user, role, sha256[, expires]}} entries")
    out: dict[str, Grant] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise TokenError(f"{source}[{i}]: expected a mapping with user, role, sha256")
        unknown = sorted(set(map(str, e)) - {"user", "role", "sha256", "expires"})
        if unknown:
            raise TokenError(f"{source}[{i}]: unknown key {unknown[0]!r}; allowed: user, role, "
                             "sha256, expires")
        user, role, digest = str(e.get("user", "")), str(e.get("role", "user")), str(e.get("sha256", ""))
        if not USER.match(user):
            raise TokenError(f"{source}[{i}].user: {user!r} is not a valid user name "
                             "(lowercase letters, digits, '-', '_', '.')")
        if role not in ROLES:
            raise TokenError(f"{source}[{i}].role: {role!r}; allowed: {', '.join(ROLES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TokenError(f"{source}[{i}].sha256: expected the 64 hex digits of a token's "
                             "SHA-256 (`hurricane token create` prints it), never the token")
        out[digest] = Grant(User(user, role), parse_expiry(e.get("expires"), f"{source}[{i}].expires"))
    return out


class TokenTable:
    """Token hashes from ``settings.tokens`` and ``settings.tokens_file`` (re-read when the
    file changes, so tokens rotate and are revoked without a restart). A file that no longer
    parses keeps the set it last parsed: one bad edit must not lock every user out (or turn
    every request into an error); the error is logged once per change of the file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e9
        self._grants: dict[str, Grant] = {}
        self.error: str | None = None  # why the file's current contents were not taken
        self._fixed = self._from_setting(settings.tokens)

    @staticmethod
    def _from_setting(text: str | None) -> dict[str, Grant]:
        if not text:
            return {}
        entries = []
        for item in text.split(","):
            parts = item.strip().split(":")
            if len(parts) != 3:
                raise TokenError("HURRICANE_TOKENS: expected user:role:sha256[,...]")
            entries.append({"user": parts[0], "role": parts[1], "sha256": parts[2]})
        return parse_entries(entries, "HURRICANE_TOKENS")

    def _file_grants(self) -> dict[str, Grant]:
        path = self.settings.tokens_file
        if not path:
            return {}
        if time.monotonic() - self._checked < 1.0:  # the file is looked at once a second
            return self._grants
        with self._lock:
            if time.monotonic() - self._checked < 1.0:
                return self._grants
            try:
                st = os.stat(path)
            except OSError:
                if self._stamp is not None or self._grants:
                    log.warning("tokens file %s is gone: no token of it is accepted", path)
                self._grants, self._stamp, self.error = {}, None, None
            else:
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._grants = load_file(Path(path))
                        self.error = None
                    except (TokenError, OSError, UnicodeDecodeError, ValueError,
                            yaml.YAMLError) as err:
                        self.error = f"{type(err).__name__}: {err}"
                        log.error("tokens file %s is malformed; keeping the %d tokens it held "
                                  "before: %s", path, len(self._grants), self.error)
            self._checked = time.monotonic()  # only once the users are loaded
            return self._grants

    def lookup(self, token: str) -> User | None:
        """The token's user; None for an unknown, expired or revoked token."""
        digest = hash_token(token)
        grant = self._fixed.get(digest) or self._file_grants().get(digest)
        return grant.user if grant is not None and grant.valid() else None


def _read_entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return data or []  # type: ignore[no-any-return]


def load_file(path: Path) -> dict[str, Grant]:
    """The grants of a token file (TokenError, ValueError or yaml.YAMLError if malformed)."""
    return parse_entries(_read_entries(path), str(path))


def _write_entries(path: Path, entries: list[dict[str, Any]]) -> None:
    parse_entries(entries, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=2) if path.suffix == ".json"
                   else yaml.safe_dump(entries, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def expiry_from(text: str, *, now: float | None = None) -> str:
    """An ISO 8601 UTC time from ``30d``, ``12h``, ``90m`` (from now) or an ISO time or date."""
    m = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if m:
        seconds = int(m[1]) * {"d": 86400, "h": 3600, "m": 60}[m[2]]
        if seconds <= 0:
            raise TokenError(f"--expires {text!r}: give a positive duration")
        t = (time.time() if now is None else now) + seconds
    else:
        got = parse_expiry(text, "--expires")
        if got is None:
            raise TokenError("--expires is empty: give 30d, 12h, 90m or an ISO 8601 time")
        t = got
    if t <= (time.time() if now is None else now):
        raise TokenError(f"--expires {text!r} is in the past")
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_token(path: Path, user: str, role: str = "user", *, expires: str | None = None) -> str:
    """Creates a token for ``user``, appends its hash (and expiry: ``30d``, an ISO time) to
    the token file, returns the token."""
    token = new_token()
    entries = _read_entries(path)
    entry: dict[str, Any] = {"user": user, "role": role, "sha256": hash_token(token)}
    if expires:
        entry["expires"] = expiry_from(expires)
    entries.append(entry)
    _write_entries(path, entries)
    return token


def revoke_tokens(path: Path, user: str, *, sha256_prefix: str | None = None) -> list[dict[str, Any]]:
    """Removes ``user``'s tokens (only the one whose hash starts with ``sha256_prefix``, when
    given) from the token file; returns the entries removed. The API stops accepting them
    within a second."""
    if sha256_prefix is not None and not re.fullmatch(r"[0-9a-f]{6,64}", sha256_prefix):
        raise TokenError(f"--sha256 {sha256_prefix!r}: give at least 6 hex digits of the hash "
                         "(`hurricane token list` shows them)")
    entries = _read_entries(path)
    parse_entries(entries, str(path))
    gone = [e for e in entries if e.get("user") == user
            and (sha256_prefix is None or str(e.get("sha256", "")).startswith(sha256_prefix))]
    if not gone:
        which = f" with a hash starting {sha256_prefix}" if sha256_prefix else ""
        raise TokenError(f"{path} has no token of {user!r}{which}; `hurricane token list "
                         f"--file {path}` shows the tokens")
    if sha256_prefix is not None and len(gone) > 1:
        raise TokenError(f"--sha256 {sha256_prefix} matches {len(gone)} tokens of {user!r}: "
                         "give more digits")
    _write_entries(path, [e for e in entries if not any(e is g for g in gone)])
    return gone
