"""Where a search's training data may come from: the directories and S3 buckets an operator
allows (``data_roots``, ``data_buckets``, '{user}' for the submitting user), checked when a
search is submitted and again where a job reads the data."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hurricane.spec import DatasetSpec

BUNDLED = ("digits", "cluttered-digits")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SourceNotAllowed(ValueError):
    """dataset.path names a source outside what the operator allows; the message lists what
    is allowed."""


@dataclass(frozen=True)
class SourcePolicy:
    """Allowed directory roots and buckets ('{user}': one path segment, the user's name)."""

    roots: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: object) -> SourcePolicy:
        return cls(tuple(getattr(settings, "data_roots", ())),
                   tuple(getattr(settings, "data_buckets", ())))

    @property
    def configured(self) -> bool:
        return bool(self.roots or self.buckets)

    def shown(self, user: str | None) -> str:
        """What is allowed, as a user reads it ('{user}' filled in with their name)."""
        def fill(x: str) -> str:
            return x.replace("{user}", user) if user else x

        dirs = (f"directories under {', '.join(fill(r) for r in self.roots)}" if self.roots
                else "no directory (no data_roots are set)")
        buckets = (f"packed sets in {', '.join(f's3://{fill(b)}' for b in self.buckets)}"
                   if self.buckets else "no s3:// source (no data_buckets are set)")
        return f"{dirs}; {buckets}; bundled digits and cluttered-digits"

    # -- checks ------------------------------------------------------------------------------

    def check(self, ds: DatasetSpec, *, user: str | None) -> None:
        """Refuses ``ds.path`` unless it lies under an allowed root or bucket. ``user`` None
        (an admin, or a job that does not know the owner) lets '{user}' match any name."""
        if ds.name in BUNDLED or ds.path is None:
            return
        path = ds.path
        problem = _malformed(path)
        if problem is None:
            if path.startswith("s3://"):
                bucket, _, key = path.removeprefix("s3://").partition("/")
                if any(_under(f"{bucket}/{key}".rstrip("/"), b, user) for b in self.buckets):
                    return
            elif any(_under(path.rstrip("/") or "/", r, user) for r in self.roots):
                return
            problem = "is outside what this service may read"
        raise SourceNotAllowed(f"dataset.path {path!r} {problem}; allowed: {self.shown(user)}")

    def check_local_read(self, path: str, *, what: str = "dataset.path") -> None:
        """Where a job opens a directory: the real path (symlinks resolved) must lie under
        a real root; nothing is checked while no roots are configured (a local run)."""
        if not self.configured:
            return
        real = os.path.realpath(path)
        for root in self.roots:
            fixed, user, rest = root.partition("/{user}")
            if _under(real, os.path.realpath(fixed) + user + rest, None):
                return
        raise SourceNotAllowed(f"{what} {path!r} resolves to {real!r}, outside the data roots "
                               f"{', '.join(self.roots) or 'none'}: refused")

    def check_bucket(self, source: str) -> None:
        """Where a job opens an s3:// source: its bucket (and prefix) must be allowed once
        buckets are configured."""
        if not self.configured:
            return
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if not any(_under(f"{bucket}/{key}".rstrip("/"), b, None) for b in self.buckets):
            raise SourceNotAllowed(f"dataset.path {source!r} is outside the allowed buckets "
                                   f"{', '.join(self.buckets) or 'none'}: refused")


def _malformed(path: str) -> str | None:
    if _CONTROL.search(path):
        return "holds a control character"
    body = path.removeprefix("s3://")
    if not path.startswith("s3://") and not path.startswith("/"):
        return "is not an absolute directory"
    parts = body.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) and body.strip("/"):
        return "has an empty, '.' or '..' part"
    return None


def _under(path: str, allowed: str, user: str | None) -> bool:
    """``path`` is ``allowed`` or below it; '{user}' is ``user`` (any one segment if None)."""
    want = allowed.split("/")
    have = path.split("/")
    if len(have) < len(want):
        return False
    for a, h in zip(want, have, strict=False):
        if a == "{user}":
            if user is not None and h != user:
                return False
        elif a != h:
            return False
    return True
