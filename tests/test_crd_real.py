"""The HurricaneSearch CRD on the real API server (tests/realcluster.py): accepted and
Established, its fields explained by kubectl, the example applied (dry run and for real), an
invalid spec refused by the server's schema with the field named, an unknown field refused,
the spec frozen by its CEL rule while ``suspend`` and ``cancel`` change, and a cancelled
search kept cancelled."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from hurricane.operator.crd import GROUP, PLURAL, VERSION, crd
from tests.realcluster import RealCluster, real_cluster  # noqa: F401
from tests.servers import wait_for
from tests.test_chart_real import namespace

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "search-cr.yaml"


@pytest.fixture(scope="module")
def installed(real_cluster: RealCluster) -> RealCluster:  # noqa: F811
    rc = real_cluster
    rc.cp.apply([crd()])
    ext = k8s.ApiextensionsV1Api(rc.admin)

    def established() -> bool:
        obj = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        return any(c.type == "Established" and c.status == "True"
                   for c in obj.status.conditions or [])

    wait_for(established, 60, "the CRD Established")
    return rc


def _kubectl(rc: RealCluster, *args: str, input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    return rc.cp.kubectl(*args, input=input, check=False)


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_kubectl_explains_the_spec_and_the_example_applies(installed) -> None:
    rc = installed
    # the API server publishes a new CRD's OpenAPI a moment after it is Established
    out = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
        _kubectl(rc, "explain", "hurricanesearches.spec.supernet.iterations")), 120,
        "kubectl explain finding the CRD's fields")
    assert "integer" in out.stdout and "FIELD: iterations" in out.stdout
    out = _kubectl(rc, "explain", "hurricanesearches.status.winners")
    assert out.returncode == 0 and "winners" in out.stdout, out.stderr
    ns = namespace(rc, "crd-example")
    dry = _kubectl(rc, "apply", "-n", ns, "--dry-run=server", "-f", str(EXAMPLE))
    assert dry.returncode == 0 and "(server dry run)" in dry.stdout, dry.stderr
    real = _kubectl(rc, "apply", "-n", ns, "-f", str(EXAMPLE))
    assert real.returncode == 0, real.stderr
    got = k8s.CustomObjectsApi(rc.admin).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "digits-cpu")
    assert got["spec"]["supernet"]["iterations"] == 200
    listing = _kubectl(rc, "get", "hsearch", "-n", ns)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split("\n")[0].split() == ["NAME", "STATE", "STRATEGY", "DEVICES",
                                                      "TOP-1", "AGE"]


@pytest.mark.parametrize(("path", "value", "named"), [
    (("supernet", "iterations"), 0, "spec.supernet.iterations"),
    (("devices", 0, "name"), "Not_A_Name", "spec.devices[0].name"),
    (("strategy",), "random-walk", "spec.strategy"),
    (("devices", 0, "budget_fraction"), 1.5, "spec.devices[0].budget_fraction"),
])
def test_an_invalid_spec_is_refused_by_the_api_server_naming_the_field(
        installed, path: tuple[Any, ...], value: Any, named: str) -> None:
    rc = installed
    doc = _example()
    node = doc["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    doc["metadata"]["name"] = "invalid"
    out = _kubectl(rc, "apply", "-n", "default", "--dry-run=server", "-f", "-",
                   input=yaml.safe_dump(doc))
    assert out.returncode != 0
    assert named in out.stderr and "Invalid value" in out.stderr, out.stderr


def test_an_unknown_field_is_refused(installed) -> None:
    doc = _example()
    doc["spec"]["supernet"]["iteratoins"] = 100
    out = _kubectl(installed, "apply", "-n", "default", "--dry-run=server", "-f", "-",
                   input=yaml.safe_dump(doc))
    assert out.returncode != 0 and 'unknown field "spec.supernet.iteratoins"' in out.stderr, (
        out.stderr)


def test_the_spec_is_frozen_but_suspend_and_cancel_change(installed) -> None:
    rc = installed
    ns = namespace(rc, "crd-frozen")
    api = k8s.CustomObjectsApi(rc.admin)
    doc = _example()
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)

    def edit(**spec: Any) -> subprocess.CompletedProcess[str]:
        new = copy.deepcopy(doc)
        new["spec"].update(spec)
        return _kubectl(rc, "apply", "--server-side", "--field-manager=test",
                        "--force-conflicts", "-n", ns, "-f", "-", input=yaml.safe_dump(new))

    out = edit(seed=7)
    assert out.returncode != 0 and "the search spec is immutable" in out.stderr, out.stderr
    out = edit(supernet={**doc["spec"]["supernet"], "iterations": 300})
    assert out.returncode != 0 and "immutable" in out.stderr, out.stderr
    assert edit(suspend=True).returncode == 0
    assert edit(suspend=False).returncode == 0
    assert edit(cancel=True).returncode == 0
    out = edit(cancel=False)
    assert out.returncode != 0 and "a cancelled search stays cancelled" in out.stderr, out.stderr
    got = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "digits-cpu")
    assert got["spec"]["seed"] == 0 and got["spec"]["cancel"] is True
