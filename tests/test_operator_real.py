"""The HurricaneSearch operator (hurricane.operator.controller) on the real control plane
(tests/realcluster.py) with the service running as real processes (tests/servers.py's
ServiceStack: redis-server, moto S3, the API, Celery workers): a resource applied with kubectl
is submitted through the REST API for its namespace, runs to the end with its status mirrored
(conditions, steps, winner, artifacts) and Events; the owner sees it in the REST API; deleting
it purges the search through the finalizer. Two replicas: one leads (the Lease), the other
takes over when it stops."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from hurricane.operator.chart import render_chart
from hurricane.operator.controller import FINALIZER, Controller
from hurricane.operator.crd import GROUP, PLURAL, VERSION
from hurricane.service.client import ApiError, Client
from tests.conftest import tiny_spec_dict
from tests.realcluster import RealCluster, real_cluster  # noqa: F401
from tests.servers import ServiceStack, in_thread, wait_for
from tests.test_chart import chart_values
from tests.test_chart_real import namespace
from tests.test_crd_real import installed  # noqa: F401

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
SEARCH_S = 1800  # a bound on the whole search (a hang guard, not a target)
EVENT_S = 120


POD_GATE = Path(__file__).parent / "pod_gate"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, gate: Path) -> Iterator[ServiceStack]:
    """The service's processes with the training gate armed on demand (tests/pod_gate: only
    the training that claims ``<gate>/armed`` holds at step 5, until its SIGTERM)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "HURRICANE_TEST_HOLD_AT",
                                            "HURRICANE_TEST_HOLD_DIR", "HURRICANE_TEST_HOLD_ARM")}
    os.environ.update({"PYTHONPATH": os.pathsep.join([str(POD_GATE),
                                                      os.environ.get("PYTHONPATH", "")]),
                       "HURRICANE_TEST_HOLD_AT": "5", "HURRICANE_TEST_HOLD_DIR": str(gate),
                       "HURRICANE_TEST_HOLD_ARM": "1"})
    try:
        with ServiceStack(tmp_path_factory.mktemp("operator-service")) as s:
            yield s
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def chart_operator_client(rc: RealCluster, release_ns: str) -> k8s.ApiClient:
    """The chart's operator ServiceAccount, ClusterRole and Lease Role applied for real
    (release ``hur`` in ``release_ns``), and a client with that ServiceAccount's token: the
    operator runs with exactly the chart's RBAC."""
    objs = render_chart(ROOT / "charts" / "hurricane", chart_values(
        {"operator": {"enabled": True, "installCRD": False}}), release="hur",
        namespace=release_ns)
    rbac = [o for o in objs if o["kind"] in ("ServiceAccount", "ClusterRole", "Role",
                                             "ClusterRoleBinding", "RoleBinding")
            and "operator" in o["metadata"]["name"]]
    assert {o["kind"] for o in rbac} == {"ServiceAccount", "ClusterRole", "Role",
                                         "ClusterRoleBinding", "RoleBinding"}
    rc.cp.apply(rbac, namespace=release_ns)
    sa = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    token = rc.core.create_namespaced_service_account_token(
        sa, release_ns, {"spec": {"expirationSeconds": 3600}}).status.token
    cfg = k8s.Configuration()
    cfg.host, cfg.ssl_ca_cert = rc.cp.server, str(rc.cp.pki.ca)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return k8s.ApiClient(cfg)


def test_apply_runs_the_search_mirrors_its_status_and_delete_purges_it(
        installed, service, tmp_path: Path) -> None:  # noqa: F811
    rc = installed
    ns = namespace(rc, "team-op")
    release = namespace(rc, "hurricane-op")
    admin = Client(service.url, service.token)
    # the operator with the chart's own ServiceAccount and RBAC, the Lease in its release's
    # namespace: every call it makes is allowed, and nothing else is needed
    ctl = Controller(chart_operator_client(rc, release), admin, namespace=ns,
                     lease_namespace=release, resync_s=1.0)
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
        # the supernet's ranking verdict, structured: the condition follows it
        sn = st["supernets"]["stage1"]
        assert isinstance(sn["reliable"], bool) and "learned" in sn["tests"]
        assert _cond(done, "SupernetUnreliable") == ("False" if all(
            v["reliable"] for v in st["supernets"].values()) else "True")
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


def test_an_operator_restarted_mid_run_keeps_the_one_search_and_a_delete_mid_run_purges_it(
        installed, service, gate) -> None:  # noqa: F811
    """The search's training held mid-way (the gate): the operator stops and a new one
    starts; the resource keeps its one search (no second submission: the REST API lists one
    for the owner), and the new operator handles its deletion: cancelled (the held training
    gets its SIGTERM) and purged."""
    rc = installed
    ns = namespace(rc, "team-restart")
    admin = Client(service.url, service.token)
    (gate / "armed").write_text("")
    first = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, identity="op-0",
                       resync_s=1.0)
    stop, t = _running(first)
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HurricaneSearch",
           "metadata": {"name": "held"}, "spec": tiny_spec_dict(name="held")}
    rc.cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    wait_for(lambda: list(gate.glob("reached-*")), SEARCH_S, "the search's training held")
    held = wait_for(lambda: (lambda o: o if (o.get("status") or {}).get("state") == "running"
                             else None)(_get(rc, ns, "held")), EVENT_S, "status: running")
    sid = held["status"]["searchId"]
    stop.set()
    t.join(30)
    second = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, identity="op-0",
                        resync_s=1.0)  # the restarted replica (the same pod name)
    stop, t = _running(second)
    try:
        wait_for(second.leading.is_set, EVENT_S, "the restarted operator leads")
        mine = admin.http.get("/v1/searches", params={"owner": ns}).json()["data"]
        assert [s["search_id"] for s in mine] == [sid]
        rc.cp.kubectl("delete", "hsearch", "held", "-n", ns, "--wait=false")
        wait_for(lambda: not k8s.CustomObjectsApi(rc.admin).list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL)["items"], EVENT_S, "the resource gone")
        with pytest.raises(ApiError) as info:
            admin.get(sid)
        assert info.value.status == 404
        assert admin.http.get("/v1/searches", params={"owner": ns}).json()["data"] == []
    finally:
        stop.set()
        t.join(30)


def test_a_spec_the_service_refuses_is_reported_once_and_not_resubmitted(
        installed, service) -> None:  # noqa: F811
    """Within the CRD's schema but over the service's admission limit (supernet iterations):
    Accepted=False with the service's 422 naming the field, one Warning event, no search for
    the owner, and no second submission on the following resyncs."""
    rc = installed
    ns = namespace(rc, "team-refused")
    admin = Client(service.url, service.token)
    ctl = Controller(rc.admin, admin, namespace=ns, lease_namespace=ns, resync_s=1.0)
    stop, t = _running(ctl)
    try:
        spec = tiny_spec_dict(name="too-long")
        spec["supernet"] = {**spec["supernet"], "iterations": 5_000_000}
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HurricaneSearch",
               "metadata": {"name": "too-long"}, "spec": spec}
        rc.cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
        got = wait_for(lambda: (lambda o: o if (o.get("status") or {}).get("state") == "refused"
                                else None)(_get(rc, ns, "too-long")), EVENT_S, "refused")
        cond = next(c for c in got["status"]["conditions"] if c["type"] == "Accepted")
        assert cond["status"] == "False" and cond["reason"] == "Refused"
        assert "supernet" in cond["message"] and "iterations" in cond["message"], cond
        # later resyncs (the operator reconciles every second) leave it as it is
        version = got["metadata"]["resourceVersion"]
        wait_for(lambda: ctl.leading.is_set(), EVENT_S, "the operator leads")
        for _ in range(3):
            ctl.reconcile(_get(rc, ns, "too-long"))
        assert _get(rc, ns, "too-long")["metadata"]["resourceVersion"] == version
        events = [e for e in rc.core.list_namespaced_event(
            ns, field_selector="involvedObject.name=too-long").items if e.reason == "Refused"]
        assert len(events) == 1
        assert admin.http.get("/v1/searches", params={"owner": ns}).json()["data"] == []
    finally:
        stop.set()
        t.join(30)
