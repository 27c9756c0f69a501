"""The HurricaneSearch operator (hurricane.operator.controller) on the real control plane
(tests/realcluster.py) with the service running as real processes (tests/servers.py's
ServiceStack: redis-server, moto S3, the API, Celery workers): a resource applied with kubectl
is submitted through the REST API for its namespace, runs to the end with its status mirrored
(conditions, steps, winner, artifacts) and Events; the owner sees it in the REST API; deleting
it purges the search through the finalizer. Two replicas: one leads (the Lease), the other
takes over when it stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from hurricane.operator.controller import FINALIZER, Controller
from hurricane.operator.crd import GROUP, PLURAL, VERSION
from hurricane.service.client import ApiError, Client
from tests.conftest import tiny_spec_dict
from tests.realcluster import RealCluster, real_cluster  # noqa: F401
from tests.servers import ServiceStack, in_thread, wait_for
from tests.test_chart_real import namespace
from tests.test_crd_real import installed  # noqa: F401

pytestmark = pytest.mark.cluster
SEARCH_S = 1800  # a bound on the whole search (a hang guard, not a target)
EVENT_S = 120


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    with ServiceStack(tmp_path_factory.mktemp("operator-service")) as s:
        yield s


def _get(rc: RealCluster, ns: str, name: str) -> dict[str, Any]:
    return k8s.CustomObjectsApi(rc.admin).get_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, ns, PLURAL, name)


def _cond(obj: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), None)


def _running(ctl: Controller) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t, _ = in_thread(ctl.run, stop)
    return stop, t


def test_apply_runs_the_search_mirrors_its_status_and_delete_purges_it(
        installed, service, tmp_path: Path) -> None:  # noqa: F811
    rc = installed
    ns = namespace(rc, "team-op")
    admin = Client(service.url, service.token)
    ctl = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, resync_s=1.0)
    stop, t = _running(ctl)
    try:
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HurricaneSearch",
               "metadata": {"name": "tiny"}, "spec": tiny_spec_dict()}
        out = rc.cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc), check=False)
        assert out.returncode == 0, out.stderr
        done = wait_for(lambda: (lambda o: o if _cond(o, "Succeeded") == "True" or _cond(
            o, "Failed") == "True" else None)(_get(rc, ns, "tiny")), SEARCH_S,
            "the search finished")
        st = done["status"]
        assert _cond(done, "Succeeded") == "True", st
        assert _cond(done, "Accepted") == "True" and _cond(done, "Running") == "False"
        assert st["owner"] == ns and st["state"] == "succeeded"
        assert st["observedGeneration"] == done["metadata"]["generation"]
        assert set(st["steps"]) >= {"profile", "stage1", "retrain"}
        assert all(s["state"] == "succeeded" for s in st["steps"].values())
        win = st["winners"]["cpu"]
        assert win["arch"] and 0 < win["top1"] <= 1 and win["budgetMs"] > 0
        assert win["artifacts"]["onnx"].endswith("/model.onnx")
        assert st["bestTop1"].endswith("%")
        assert FINALIZER in done["metadata"]["finalizers"]
        sid = st["searchId"]
        view = admin.get(sid)
        assert view["owner"] == ns and view["state"] == "succeeded"
        assert view["devices"]["cpu"]["arch"] == win["arch"]
        reasons = {e.reason for e in rc.core.list_namespaced_event(
            ns, field_selector="involvedObject.name=tiny").items}
        assert {"Accepted", "StepSucceeded"} <= reasons, reasons
        listing = rc.cp.kubectl("get", "hsearch", "-n", ns, check=False).stdout
        assert "succeeded" in listing and st["bestTop1"] in listing  # the printer columns
        assert st["strategy"] in listing.split("\n")[1].split()

        rc.cp.kubectl("delete", "hsearch", "tiny", "-n", ns, "--wait=false")
        wait_for(lambda: not k8s.CustomObjectsApi(rc.admin).list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL)["items"], EVENT_S, "the resource gone (finalizer done)")
        with pytest.raises(ApiError) as info:
            admin.get(sid)
        assert info.value.status == 404  # purged
    finally:
        stop.set()
        t.join(30)


def test_two_replicas_one_leads_and_the_other_takes_over(installed, service) -> None:  # noqa: F811
    rc = installed
    ns = namespace(rc, "op-lease")
    admin = Client(service.url, service.token)
    a = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, identity="a", resync_s=1.0)
    b = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, identity="b", resync_s=1.0)
    stop_a, ta = _running(a)
    wait_for(a.leading.is_set, EVENT_S, "a leads")
    stop_b, tb = _running(b)
    try:
        # b keeps trying and never leads while a renews (a few of b's attempts, not a sleep)
        for _ in range(5):
            assert not b.elector.try_acquire()
        assert not b.leading.is_set() and a.elector.holder() == "a"
        stop_a.set()
        ta.join(30)
        wait_for(b.leading.is_set, EVENT_S, "b takes over after a's lease expires")
        assert b.elector.holder() == "b"
    finally:
        stop_a.set()
        stop_b.set()
        tb.join(30)
