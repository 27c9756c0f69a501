"""API users: bearer tokens mapped to users, stored only as SHA-256 hashes (a token file or the
environment), tokens are never logged; no or bad token is 401."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hurricane.settings import Settings

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


def parse_entries(entries: object, source: str) -> dict[str, User]:
    if not isinstance(entries, list):
        raise TokenError(f"{source}: expected a list of {{user, role, sha256}} entries")
    out: dict[str, User] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise TokenError(f"{source}[{i}]: expected a mapping with user, role, sha256")
        user, role, digest = str(e.get("user", "")), str(e.get("role", "user")), str(e.get("sha256", ""))
        if not USER.match(user):
            raise TokenError(f"{source}[{i}].user: {user!r} is not a valid user name "
                             "(lowercase letters, digits, '-', '_', '.')")
        if role not in ROLES:
            raise TokenError(f"{source}[{i}].role: {role!r}; allowed: {', '.join(ROLES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TokenError(f"{source}[{i}].sha256: expected the 64 hex digits of a token's "
                             "SHA-256 (`hurricane token create` prints it), never the token")
        out[digest] = User(user, role)
    return out


class TokenTable:
    """Token hashes from ``settings.tokens`` and ``settings.tokens_file`` (re-read when the
    file changes, so tokens rotate without a restart)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e9
        self._users: dict[str, User] = {}
        self._fixed = self._from_setting(settings.tokens)

    @staticmethod
    def _from_setting(text: str | None) -> dict[str, User]:
        if not text:
            return {}
        entries = []
        for item in text.split(","):
            parts = item.strip().split(":")
            if len(parts) != 3:
                raise TokenError("HURRICANE_TOKENS: expected user:role:sha256[,...]")
            entries.append({"user": parts[0], "role": parts[1], "sha256": parts[2]})
        return parse_entries(entries, "HURRICANE_TOKENS")

    def _file_users(self) -> dict[str, User]:
        path = self.settings.tokens_file
        if not path:
            return {}
        if time.monotonic() - self._checked < 1.0:  # the file is looked at once a second
            return self._users
        with self._lock:
            if time.monotonic() - self._checked < 1.0:
                return self._users
            try:
                st = os.stat(path)
            except OSError:
                self._users, self._stamp = {}, None
            else:
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    text = Path(path).read_text()
                    data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
                    self._users = parse_entries(data or [], path)
                    self._stamp = stamp
            self._checked = time.monotonic()  # only once the users are loaded
            return self._users

    def lookup(self, token: str) -> User | None:
        digest = hash_token(token)
        return self._fixed.get(digest) or self._file_users().get(digest)


def add_token(path: Path, user: str, role: str = "user") -> str:
    """Creates a token for ``user``, appends its hash to the token file, returns the token."""
    token = new_token()
    entries: list[dict[str, str]] = []
    if path.is_file():
        text = path.read_text()
        entries = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or []
    entries.append({"user": user, "role": role, "sha256": hash_token(token)})
    parse_entries(entries, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=2) if path.suffix == ".json"
                   else yaml.safe_dump(entries, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token
