"""API tokens: only hashes are stored, bad entries are named, and a token file is re-read
safely while requests race on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from hurricane.settings import Settings
from hurricane.tokens import TokenError, TokenTable, add_token, hash_token, parse_entries


def test_tokens_are_stored_as_hashes_only(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    tok = add_token(f, "alice")
    assert tok.startswith("hur_") and tok not in f.read_text()
    entries = yaml.safe_load(f.read_text())
    assert entries == [{"user": "alice", "role": "user", "sha256": hash_token(tok)}]
    assert f.stat().st_mode & 0o777 == 0o600
    table = TokenTable(Settings(tokens_file=str(f)))
    user = table.lookup(tok)
    assert user is not None and user.name == "alice" and not user.is_admin
    assert table.lookup(tok + "x") is None


def test_environment_tokens_and_bad_entries() -> None:
    digest = hash_token("t0k")
    table = TokenTable(Settings(tokens=f"ops:admin:{digest}"))
    user = table.lookup("t0k")
    assert user is not None and user.is_admin
    with pytest.raises(TokenError, match=r"\[0\].sha256: expected the 64 hex digits"):
        parse_entries([{"user": "a", "sha256": "t0k"}], "tokens.yaml")
    with pytest.raises(TokenError, match=r"\[0\].role: 'root'; allowed: user, admin"):
        parse_entries([{"user": "a", "role": "root", "sha256": digest}], "tokens.yaml")
    with pytest.raises(TokenError, match="HURRICANE_TOKENS: expected user:role:sha256"):
        TokenTable(Settings(tokens="just-a-token"))


def test_concurrent_lookups_while_the_file_loads_and_changes(tmp_path: Path) -> None:
    """Found by bench/api_load.py: requests racing the first load of the file got 401."""
    f = tmp_path / "tokens.yaml"
    tokens = [add_token(f, f"user{i}") for i in range(20)]
    table = TokenTable(Settings(tokens_file=str(f)))
    misses: list[str] = []

    def look(tok: str) -> None:
        for _ in range(50):
            if table.lookup(tok) is None:
                misses.append(tok)

    threads = [threading.Thread(target=look, args=(t,)) for t in tokens * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert misses == []
    newer = add_token(f, "late")  # rotation without a restart (seen within a second)
    import time

    deadline = time.monotonic() + 3
    while table.lookup(newer) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert table.lookup(newer) is not None
