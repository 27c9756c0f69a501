"""The service outside api/ and workers/: its client and commands, the local stack, tokens, limits.

client       the service's HTTP client
cli_service  the service commands of `hurricane` (submit, watch, fetch, stack, token ...)
stack        the service on this machine as processes (`hurricane stack`)
tokens       API users: bearer tokens stored as hashes
admission    the limits an operator sets on one search

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.service import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "admission": ("Limits",),
    "cli_service": ("register", "remote_status"),
    "client": ("ApiError", "Client", "NoServer", "resolve"),
    "tokens": ("TokenTable", "USER", "User"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)
