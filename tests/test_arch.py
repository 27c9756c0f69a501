"""Architectures as values and search spaces."""

from __future__ import annotations

import random

import pytest

from hurricane.nets.arch import Arch, SearchSpace


def test_string_form_round_trips_and_hashes() -> None:
    a = Arch(("SEP_3", "MB_3_6_SE", "Choice_5", "ChoiceX"))
    assert str(a) == "SEP_3-MB_3_6_SE-Choice_5-ChoiceX"
    assert Arch.parse(str(a)) == a and hash(Arch.parse(str(a))) == hash(a)
    assert len(a.digest) == 12 and a.digest == Arch.parse(str(a)).digest
    with pytest.raises(AttributeError):
        a.ops = ()  # type: ignore[misc]


def test_unknown_ops_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        Arch.parse("SEP_3-nope")


def test_space_sampling_and_fixing() -> None:
    space = SearchSpace.uniform(["SEP_3", "Choice_3", "MB_3_1"], 6)
    assert space.size == 3**6 and space.active_layers == tuple(range(6))
    rng = random.Random(0)
    archs = {space.sample(rng) for _ in range(200)}
    assert all(space.contains(a) for a in archs) and len(archs) > 100
    a = space.sample(random.Random(1))
    fixed = space.fix(a, [0, 1, 2])
    assert fixed.active_layers == (3, 4, 5) and fixed.size == 27
    assert all(fixed.sample(rng).ops[:3] == a.ops[:3] for _ in range(50))
    assert SearchSpace.from_json(fixed.to_json()) == fixed
    with pytest.raises(ValueError, match="layer 0"):
        fixed.check(Arch(("MB_3_1" if a[0] != "MB_3_1" else "SEP_3", *a.ops[1:])))
