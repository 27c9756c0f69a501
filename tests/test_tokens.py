"""API tokens: only hashes are stored, bad entries are named, and a token file is re-read
safely while requests race on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from hurricane.service.tokens import TokenError, TokenTable, add_token, hash_token, parse_entries
from hurricane.settings import Settings


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


# -- issue 24: expiry, revocation, a malformed file ------------------------------------------

def test_a_token_stops_working_when_it_expires(tmp_path: Path) -> None:
    import time

    from hurricane.service.tokens import expiry_from, load_file

    f = tmp_path / "tokens.yaml"
    lasting = add_token(f, "alice", expires="30d")
    now = time.time()
    (entry,) = yaml.safe_load(f.read_text())
    assert entry["expires"].endswith("Z")
    assert abs(load_file(f)[hash_token(lasting)].expires - (now + 30 * 86400)) < 5  # type: ignore[operator]
    # entries a person wrote: past and future times, dates, no zone (UTC), YAML timestamps
    f.write_text(f.read_text() + yaml.safe_dump([
        {"user": "old", "sha256": hash_token("t-old"), "expires": "2020-01-01T00:00:00Z"},
        {"user": "day", "sha256": hash_token("t-day"), "expires": "2020-01-01"},
        {"user": "far", "sha256": hash_token("t-far"), "expires": "2999-01-01T00:00:00+02:00"},
        {"user": "open", "sha256": hash_token("t-open")}]) + "- {user: ts, sha256: "
        + hash_token("t-ts") + ", expires: 2999-01-01 10:00:00}\n")
    table = TokenTable(Settings(tokens_file=str(f)))
    assert [table.lookup(t) is not None for t in (lasting, "t-old", "t-day", "t-far", "t-open", "t-ts")] \
        == [True, False, False, True, True, True]
    # a token whose time comes while the API runs is refused from then on
    grant = load_file(f)[hash_token(lasting)]
    assert grant.valid(now) and not grant.valid(grant.expires)  # type: ignore[arg-type]
    with pytest.raises(TokenError, match="in the past"):
        expiry_from("2020-01-01")
    with pytest.raises(TokenError, match=r"\[0\]\.expires: 'soon' is not an ISO 8601 time"):
        parse_entries([{"user": "a", "sha256": hash_token("x"), "expires": "soon"}], "tokens.yaml")
    assert expiry_from("12h", now=0) == "1970-01-01T12:00:00Z"


def test_revoked_tokens_are_refused_within_a_second(tmp_path: Path) -> None:
    import time

    from hurricane.service.tokens import revoke_tokens

    f = tmp_path / "tokens.yaml"
    a1, a2, b = add_token(f, "alice"), add_token(f, "alice"), add_token(f, "bob")
    table = TokenTable(Settings(tokens_file=str(f)))
    assert all(table.lookup(t) for t in (a1, a2, b))
    gone = revoke_tokens(f, "alice", sha256_prefix=hash_token(a1)[:10])
    assert [e["sha256"] for e in gone] == [hash_token(a1)]
    deadline = time.monotonic() + 5
    while table.lookup(a1) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert table.lookup(a1) is None and table.lookup(a2) is not None and table.lookup(b) is not None
    assert len(revoke_tokens(f, "alice")) == 1  # every token left of the user
    with pytest.raises(TokenError, match="has no token of 'alice'"):
        revoke_tokens(f, "alice")
    with pytest.raises(TokenError, match="at least 6 hex digits"):
        revoke_tokens(f, "bob", sha256_prefix="ab")
    assert [e["user"] for e in yaml.safe_load(f.read_text())] == ["bob"]


def test_a_malformed_file_keeps_the_last_good_set_and_logs(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import os
    import time

    f = tmp_path / "tokens.yaml"
    tok = add_token(f, "alice")
    table = TokenTable(Settings(tokens_file=str(f)))
    assert table.lookup(tok) is not None
    good = f.read_text()
    bad_contents = ["- {user: alice, sha256: [unclosed\n",          # not YAML
                    "- {user: Alice!, sha256: " + "0" * 64 + "}\n",  # an invalid entry
                    "just a string\n",                               # not a list
                    "\xff\xfe binary".encode("latin-1").decode("latin-1")]
    for i, text in enumerate(bad_contents):
        caplog.clear()
        f.write_bytes(text.encode("latin-1") if i == 3 else text.encode())
        os.utime(f, ns=(time.time_ns(), time.time_ns() + i + 1))  # a change the table notices
        deadline = time.monotonic() + 5
        with caplog.at_level(logging.ERROR, logger="hurricane"):
            while table.error is None and time.monotonic() < deadline:
                assert table.lookup(tok) is not None  # the last good set, meanwhile too
                time.sleep(0.05)
        assert table.error is not None, text
        assert table.lookup(tok) is not None, text
        assert any("malformed; keeping the 1 tokens" in r.getMessage() for r in caplog.records)
        assert tok not in caplog.text
        f.write_text(good)  # back to good: the error clears
        os.utime(f, ns=(time.time_ns(), time.time_ns() + 100 + i))
        deadline = time.monotonic() + 5
        while table.error is not None and time.monotonic() < deadline:
            table.lookup(tok)
            time.sleep(0.05)
        assert table.error is None
    # a fresh table on a malformed file has nothing to keep: no token works, nothing raises
    f.write_text("- {user: x\n")
    assert TokenTable(Settings(tokens_file=str(f))).lookup(tok) is None


def test_token_cli_create_expires_list_revoke_and_metrics(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hurricane.cli import app

    f = str(tmp_path / "tokens.yaml")
    run = CliRunner().invoke
    made = run(app, ["token", "create", "ci", "--expires", "7d", "--file", f])
    assert made.exit_code == 0, made.output
    tok = made.stdout.strip().splitlines()[0]
    listed = run(app, ["token", "list", "--file", f])
    assert listed.exit_code == 0 and "ci" in listed.stdout and hash_token(tok)[:12] in listed.stdout
    assert "expires 20" in listed.stdout and tok not in listed.stdout
    bad = run(app, ["token", "create", "ci", "--expires", "yesterday", "--file", f])
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr
    revoked = run(app, ["token", "revoke", "ci", "--file", f])
    assert revoked.exit_code == 0 and "revoked ci" in revoked.stdout
    assert yaml.safe_load(Path(f).read_text()) in ([], None)
    again = run(app, ["token", "revoke", "ci", "--file", f])
    assert again.exit_code == 2 and "no token of 'ci'" in again.stderr
    prom = run(app, ["token", "create", "prometheus", "--metrics", "--file", f])
    assert prom.exit_code == 0
    ptok = prom.stdout.strip()
    assert f"sha256: {hash_token(ptok)}" in prom.stderr
    assert hash_token(ptok) not in Path(f).read_text()  # not an API user
