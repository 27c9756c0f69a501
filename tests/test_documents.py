"""hurricane.documents: untrusted JSON and YAML parsed within bounds, each refusal naming the
path to the value (what the API turns into a 422's loc)."""

from __future__ import annotations

import tracemalloc

import pytest

from hurricane.documents import MAX_DEPTH, DocumentError, parse_json, parse_yaml


@pytest.mark.parametrize(("parse", "text", "loc", "needle"), [
    (parse_json, '{"a": {"b": ' + "[" * 50 + "]" * 50 + "}}", ("a", "b", *[0] * 30), "nested deeper"),
    (parse_json, "[" * 1_000_000, (0,) * MAX_DEPTH, "nested deeper"),
    (parse_json, '{"n": ' + "1" * 31 + "}", ("n",), "31 digits"),
    (parse_json, '{"x": [1, -Infinity]}', ("x", 1), "-Infinity is not a finite number"),
    (parse_json, '{"x": 1e400}', ("x",), "inf is not a finite number"),
    (parse_json, '{"k": "\\udc00"}', ("k",), "lone surrogate"),
    (parse_yaml, "a:\n  b: [" + "{c: " * 40 + "1" + "}" * 40 + "]", ("a", "b", 0, *["c"] * 29),
     "nested deeper"),
    (parse_yaml, "n: 0x" + "f" * 40, ("n",), "at most 30"),
    (parse_yaml, "x: [.nan]", ("x", 0), "nan is not a finite number"),
    (parse_yaml, "a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, [[[*b]]]]", None, None),
])
def test_refusals_name_the_path(parse, text, loc, needle) -> None:  # type: ignore[no-untyped-def]
    if loc is None:
        assert parse(text) == {"a": [1, 2], "b": [[1, 2], [1, 2]],
                               "c": [[[1, 2], [1, 2]], [[[[[1, 2], [1, 2]]]]]]}
        return
    with pytest.raises(DocumentError) as err:
        parse(text)
    assert err.value.loc[:len(loc)] == loc and needle in err.value.msg, (err.value.loc, err.value.msg)


def test_aliases_count_as_what_they_expand_to_before_anything_is_built() -> None:
    """A billion laughs of 1 KiB is refused by its expanded size, in milliseconds; a chain of
    aliases each one level deeper by its expanded depth. (Nothing is built: peak memory
    stays small, where 10^9 values would take tens of GB.)"""
    bomb = "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError, match="more than 200000 values"):
            parse_yaml(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    chain = "l0: &l0 [1]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 40))
    with pytest.raises(DocumentError, match="through alias") as err:
        parse_yaml(chain)
    assert err.value.loc[0] == f"l{MAX_DEPTH - 2}"  # root mapping + l30 + 31 levels below
