"""The operator's status mirror without a cluster: what a search's view becomes in a
HurricaneSearch's status (conditions, the supernets' verdicts, winners) and which Events fire."""

from __future__ import annotations

from typing import Any

import pytest

k8s = pytest.importorskip("kubernetes.client")

from hurricane.operator.controller import Controller  # noqa: E402


class _Service:
    pass


def _controller(events: list[tuple[str, str, str]]) -> Controller:
    c = Controller(k8s.ApiClient(), _Service())  # type: ignore[arg-type]
    c.event = lambda obj, t, reason, msg: events.append((t, reason, msg))  # type: ignore[method-assign]
    return c


OBJ = {"metadata": {"name": "s", "namespace": "team-a", "uid": "u1", "generation": 1}}


def _view(**kw: Any) -> dict[str, Any]:
    return {"search_id": "abc", "owner": "team-a", "state": "running", "strategy": "hurricane",
            "targets": ["cpu"], "steps": {"stage1": {"state": "succeeded", "units": {}}},
            "devices": {}, **kw}


def _cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_supernet_unreliable_comes_from_the_structured_verdict_not_the_warning_text() -> None:
    events: list[tuple[str, str, str]] = []
    c = _controller(events)
    bad = {"reliable": False, "tests": {"learned": True, "consistent": False},
           "split_half_rho": 0.31, "consistency_needed": 0.6, "iterations": 750,
           "warning": "its scores on two halves disagree; train longer"}
    good = {"reliable": True, "tests": {"learned": True, "consistent": True},
            "split_half_rho": 0.91, "stability_rho": None}
    st = c._mirror(OBJ, {}, _view(supernets={"stage1": good, "stage2 (A)": bad},
                                  warnings=["stage2 (A): some text"]), 1)
    cond = _cond(st, "SupernetUnreliable")
    assert cond["status"] == "True" and cond["reason"] == "Unreliable"
    assert cond["message"] == "stage2 (A): its scores on two halves disagree; train longer"
    assert st["supernets"]["stage2 (A)"] == {
        "reliable": False, "tests": {"learned": True, "consistent": False},
        "splitHalfRho": 0.31, "consistencyNeeded": 0.6, "iterations": 750,
        "warning": "its scores on two halves disagree; train longer"}
    assert st["supernets"]["stage1"] == {"reliable": True, "splitHalfRho": 0.91,
                                         "tests": {"learned": True, "consistent": True}}
    assert ("Warning", "SearchWarning", "stage2 (A): some text") in events

    # every verdict reliable: False, whatever a warning's wording says
    st2 = c._mirror(OBJ, st, _view(supernets={"stage1": good},
                                   warnings=["evolution: the word unreliable in a warning"]), 1)
    cond2 = _cond(st2, "SupernetUnreliable")
    assert cond2["status"] == "False" and cond2["reason"] == "Reliable"
    assert cond2["lastTransitionTime"]  # a transition: True -> False


def test_before_any_supernet_is_measured_the_condition_is_unknown() -> None:
    st = _controller([])._mirror(OBJ, {}, _view(steps={"profile": {"state": "running"}}), 1)
    cond = _cond(st, "SupernetUnreliable")
    assert (cond["status"], cond["reason"]) == ("Unknown", "NotMeasured")
    assert st["supernets"] == {}
