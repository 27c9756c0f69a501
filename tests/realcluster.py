"""A real control plane for the tests marked ``cluster`` (``make test-cluster``): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler built from their pinned Go modules
(``scripts/build_controlplane.sh``), started once per session on free loopback ports, with the
node agent registering the pools' nodes and running the pods the scheduler binds to them.

Each test gets a namespace of its own with the executor's ServiceAccount bound to exactly the
rules the executor declares (``required_rules``, which tests/test_chart.py holds equal to the
chart's Role) and a client authenticated with that ServiceAccount's token."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from hurricane.operator.controlplane import ControlPlane
from hurricane.operator.executor import required_rules
from hurricane.operator.manifests import Cluster
from hurricane.operator.nodeagent import NodeAgent, NodeSpec, agent_for
from hurricane.settings import Settings
from tests.servers import wait_for

DSP_TAINT = {"key": "hurricane.io/device", "value": "dsp", "effect": "NoSchedule"}
NODES = [
    NodeSpec("cpu-0", {"hurricane.io/device": "cpu"}, (), {"cpu": "4"}),
    NodeSpec("dsp-0", {"hurricane.io/device": "dsp"}, (DSP_TAINT,),
             {"cpu": "2", "qualcomm.com/hexagon": "1"}),
    NodeSpec("train-0", {"hurricane.io/pool": "train"}, (), {"cpu": "8"}),
    NodeSpec("train-1", {"hurricane.io/pool": "train"}, (), {"cpu": "8"}),
]
POOLS = ({"name": "cpu", "label": "cpu"},
         {"name": "dsp", "label": "dsp",
          "tolerations": [{"key": "hurricane.io/device", "operator": "Equal", "value": "dsp",
                           "effect": "NoSchedule"}],
          "resources": {"requests": {"cpu": "1"}, "limits": {"qualcomm.com/hexagon": "1"}}})
TRAINING = {"node_selector": {"hurricane.io/pool": "train"}}
# what a pod's process must see of this test process: the code under test (and the pod gate)
PASS_ENV = ("PYTHONPATH", "HURRICANE_TEST_HOLD_AT", "HURRICANE_TEST_HOLD_DIR")


@dataclass
class RealCluster:
    cp: ControlPlane
    agent: NodeAgent
    admin: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.admin)

    @property
    def batch(self) -> k8s.BatchV1Api:
        return k8s.BatchV1Api(self.admin)

    def log(self, component: str, lines: int = 40) -> str:
        return self.cp.log_tail(component, lines)


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    d = tmp_path_factory.mktemp("controlplane")
    cp = ControlPlane(d, die_with_parent=True)
    cp.up()
    cp.kueue_up()
    agent = agent_for(cp, NODES, pass_env=PASS_ENV)
    try:
        agent.start()
        admin = k8s_config.new_client_from_config(str(cp.kubeconfig("admin")))
        core = k8s.CoreV1Api(admin)

        def ready() -> bool:
            nodes = core.list_node().items
            return len(nodes) == len(NODES) and all(
                any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                for n in nodes)

        wait_for(ready, 60, "the nodes Ready")
        yield RealCluster(cp, agent, admin)
    finally:
        agent.close()
        cp.down()


_names = itertools.count()


@dataclass
class Namespace:
    """A test's namespace: the executor's settings, its ServiceAccount's client, the ConfigMap
    its pods read their settings from."""

    name: str
    settings: Settings
    client: k8s.ApiClient  # authenticated as the executor's ServiceAccount
    cluster: RealCluster


def executor_settings(ns: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"k8s_namespace": ns, "k8s_release": "rel", "k8s_poll_s": 0.2,
                            "k8s_trainer_image": "reg/trainer:1",
                            "k8s_profiler_image": "reg/profiler:1",
                            "k8s_pools": POOLS, "k8s_training": TRAINING}
    return Settings(**{**base, **kw})


def make_namespace(rc: RealCluster, settings_env: dict[str, str], **settings_kw: Any) -> Namespace:
    """A fresh namespace with the executor's Role (exactly ``required_rules``), its
    ServiceAccount and token, the jobs' ServiceAccount and the settings ConfigMap."""
    name = f"t{os.getpid() % 10000}-{next(_names)}"
    st = executor_settings(name, **settings_kw)
    core, rbac = rc.core, k8s.RbacAuthorizationV1Api(rc.admin)
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: _has_default_sa(core, name), 60, "the namespace's default ServiceAccount")
    rules: dict[tuple[str, str], list[str]] = {}
    for group, resource, verb in sorted(required_rules(Cluster.from_settings(st))):
        rules.setdefault((group, resource), []).append(verb)
    rbac.create_namespaced_role(name, {
        "metadata": {"name": "hurricane-executor"},
        "rules": [{"apiGroups": [g], "resources": [r], "verbs": v} for (g, r), v in rules.items()]})
    for sa in ("hurricane-worker", st.k8s_job_service_account):
        core.create_namespaced_service_account(name, {"metadata": {"name": sa}})
    rbac.create_namespaced_role_binding(name, {
        "metadata": {"name": "hurricane-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "hurricane-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "hurricane-worker", "namespace": name}]})
    core.create_namespaced_config_map(name, {"metadata": {"name": st.k8s_settings_configmap},
                                             "data": settings_env})
    core.create_namespaced_secret(name, {"metadata": {"name": st.k8s_s3_secret}, "stringData": {
        "HURRICANE_S3_ACCESS_KEY": "unused", "HURRICANE_S3_SECRET_KEY": "unused"}})
    token = core.create_namespaced_service_account_token(
        "hurricane-worker", name, {"spec": {"expirationSeconds": 3600}}).status.token
    cfg = k8s.Configuration()
    cfg.host = rc.cp.server
    cfg.ssl_ca_cert = str(rc.cp.pki.ca)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return Namespace(name, st, k8s.ApiClient(cfg), rc)


def _has_default_sa(core: k8s.CoreV1Api, ns: str) -> bool:
    return any(sa.metadata.name == "default"
               for sa in core.list_namespaced_service_account(ns).items)


def pods_of(rc: RealCluster, ns: str, job: str) -> list[Any]:
    return list(rc.core.list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job}").items)


def describe(rc: RealCluster, ns: str) -> str:
    """The namespace's Jobs, pods (with container states) and Kueue Workloads, and the tails
    of the controller logs: what a failed wait prints to say where things stood."""
    import json

    out = []
    for j in rc.batch.list_namespaced_job(ns).items:
        out.append(f"job {j.metadata.name}: suspend={j.spec.suspend} active={j.status.active} "
                   f"conditions={[(c.type, c.reason) for c in j.status.conditions or []]}")
    for p in rc.core.list_namespaced_pod(ns).items:
        cs = [(c.name, c.state.to_dict()) for c in p.status.container_statuses or []]
        out.append(f"pod {p.metadata.name} on {p.spec.node_name}: {p.status.phase} "
                   f"deleting={bool(p.metadata.deletion_timestamp)} {json.dumps(cs, default=str)}")
    with contextlib.suppress(Exception):
        wls = k8s.CustomObjectsApi(rc.admin).list_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta2", ns, "workloads")["items"]
        for w in wls:
            out.append(f"workload {w['metadata']['name']}: " + json.dumps(
                [(c["type"], c["status"], c.get("reason"), c.get("message"))
                 for c in (w.get("status") or {}).get("conditions", [])]))
    for e in rc.core.list_namespaced_event(ns).items[-15:]:
        out.append(f"event {e.involved_object.name}: {e.type} {e.reason}: {e.message}")
    return "\n".join(out)


@contextlib.contextmanager
def explained(rc: RealCluster, ns: str) -> Iterator[None]:
    """A wait that times out inside says where the namespace stood."""
    try:
        yield
    except TimeoutError as err:
        raise TimeoutError(f"{err}\n{describe(rc, ns)}") from err


def node_of(pod: Any) -> str:
    return str(pod.spec.node_name or "")


def here() -> Path:
    return Path(__file__).parent
