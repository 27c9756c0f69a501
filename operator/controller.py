"""The HurricaneSearch operator: ``kubectl apply`` a search.

A plain watch-and-reconcile loop on the kubernetes client, not kopf: the loop is small, it
needs nothing kopf adds (kopf's peering is not a Lease, and its handler state lives in
annotations of the resource), and it keeps one Kubernetes client library in the images.

- **One path for every search.** A HurricaneSearch is submitted through the service's REST API,
  the path ``hurricane submit`` takes, by an admin token on behalf of the resource's namespace
  (``POST /v1/searches?owner=<namespace>``), with the resource's uid as Idempotency-Key: a
  restarted operator, or one that lost the answer, gets the same search back, never a second.
  The namespace decides the owner; Kubernetes RBAC on ``hurricanesearches`` decides who may
  submit. The search shows in the REST API and the dashboard for that owner.
- **Status.** The search's view (state, steps, per-device winners, warnings) is mirrored into
  ``.status`` with conditions (Accepted, Queued, Running, Succeeded, Failed,
  SupernetUnreliable), ``observedGeneration``, per-step states and per-device winners, and an
  Event on each step transition and warning.
- **Changes.** ``spec.cancel: true`` cancels the search; ``spec.suspend: true`` cancels its
  queued and running work and ``false`` resumes it from the stored step results. The rest of the
  spec is frozen by the CRD's CEL rule.
- **Deletion.** A finalizer cancels the search and purges its artifacts, unless the
  annotation ``hurricane.io/keep-artifacts: "true"`` keeps them; its Jobs go with the search's
  owner ConfigMap (garbage collection).
- **Leader election.** A Lease (``coordination.k8s.io``): of several replicas one reconciles;
  another takes over once the holder stops renewing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from hurricane.operator.crd import GROUP, MUTABLE, PLURAL, VERSION
from hurricane.service.client import ApiError, Client

log = logging.getLogger("hurricane.operator.controller")

FINALIZER = "hurricane.io/purge"
KEEP = "hurricane.io/keep-artifacts"
LEASE = "hurricane-operator"
TERMINAL = ("succeeded", "failed", "cancelled")
# the service's answers that name a problem of the spec (429: the owner's limit, retried)
REFUSED = (400, 403, 409, 413, 422, 429)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool | str, reason: str, message: str, generation: int,
               old: list[dict[str, Any]]) -> dict[str, Any]:
    """A status condition; ``ok`` True/False, or "Unknown"."""
    status = ok if isinstance(ok, str) else "True" if ok else "False"
    prev = next((c for c in old if c.get("type") == kind), None)
    changed = prev is None or prev.get("status") != status
    return {"type": kind, "status": status, "reason": reason, "message": message[:1000],
            "observedGeneration": generation,
            "lastTransitionTime": _now() if changed or prev is None
            else prev.get("lastTransitionTime") or _now()}


_VERDICT_FIELDS = (("reliable", "reliable"), ("tests", "tests"),
                   ("accuracy_mean", "accuracyMean"), ("split_half_rho", "splitHalfRho"),
                   ("consistency_needed", "consistencyNeeded"), ("stability_rho", "stabilityRho"),
                   ("stability_needed", "stabilityNeeded"), ("iterations", "iterations"),
                   ("warning", "warning"))


def _verdict(v: dict[str, Any]) -> dict[str, Any]:
    """A supernet's verdict as the status spells it (camelCase, nulls left out)."""
    return {dst: v[src] for src, dst in _VERDICT_FIELDS if v.get(src) is not None}


class LeaseElector:
    """Leader election on a Lease: acquired when absent or expired, renewed by its holder;
    a conflicting write (another replica) loses."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, identity: str,
                 duration_s: int = 15) -> None:
        self.api = k8s.CoordinationV1Api(api_client)
        self.namespace, self.identity, self.duration_s = namespace, identity, duration_s

    def _spec(self, transitions: int) -> dict[str, Any]:
        t = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration_s,
                "acquireTime": t, "renewTime": t, "leaseTransitions": transitions}

    def try_acquire(self) -> bool:
        try:
            lease = self.api.read_namespaced_lease(LEASE, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            try:
                self.api.create_namespaced_lease(self.namespace, {
                    "metadata": {"name": LEASE}, "spec": self._spec(0)})
                return True
            except ApiException as err2:
                if err2.status == 409:
                    return False
                raise
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        renewed = spec.renew_time
        expired = renewed is None or (dt.datetime.now(dt.UTC) - renewed).total_seconds() > (
            spec.lease_duration_seconds or self.duration_s)
        if not (mine or expired):
            return False
        body = {"metadata": {"name": LEASE, "resourceVersion": lease.metadata.resource_version},
                "spec": self._spec((spec.lease_transitions or 0) + (0 if mine else 1))}
        if mine and spec.acquire_time is not None:
            body["spec"]["acquireTime"] = spec.acquire_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            self.api.replace_namespaced_lease(LEASE, self.namespace, body)
            return True
        except ApiException as err:
            if err.status == 409:  # another replica wrote first
                return False
            raise

    def holder(self) -> str | None:
        try:
            return self.api.read_namespaced_lease(LEASE, self.namespace).spec.holder_identity
        except ApiException:
            return None


class Controller:
    """Reconciles HurricaneSearches (all namespaces, or ``namespace``) against the service at
    ``service`` (an admin token's client)."""

    def __init__(self, api_client: k8s.ApiClient, service: Client, *,
                 namespace: str | None = None, identity: str | None = None,
                 lease_namespace: str = "default", resync_s: float = 5.0) -> None:
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.service, self.namespace, self.resync_s = service, namespace, resync_s
        # a pod's name (HOSTNAME in a pod) and the process: unique per replica and restart
        self.identity = identity or (f"{os.environ.get('HOSTNAME') or socket.gethostname()}"
                                     f"-{os.getpid()}")
        self.elector = LeaseElector(api_client, lease_namespace, self.identity)
        self.leading = threading.Event()

    # -- the loop -------------------------------------------------------------------------------

    def _list(self) -> dict[str, Any]:
        if self.namespace:
            return self.custom.list_namespaced_custom_object(  # type: ignore[no-any-return]
                GROUP, VERSION, self.namespace, PLURAL)
        return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)  # type: ignore[no-any-return]

    def reconcile_all(self) -> str:
        """Every resource once; returns the list's resourceVersion (to watch from)."""
        doc = self._list()
        for obj in doc.get("items", []):
            self._safely(obj)
        return str(doc["metadata"]["resourceVersion"])

    def _safely(self, obj: dict[str, Any]) -> None:
        try:
            self.reconcile(obj)
        except ApiException as err:
            if err.status not in (404, 409):  # gone, or changed meanwhile: the next event
                log.warning("%s/%s: %s %s", obj["metadata"].get("namespace"),
                            obj["metadata"]["name"], err.status, err.reason)
        except ApiError as err:
            log.warning("%s/%s: the service: %s", obj["metadata"].get("namespace"),
                        obj["metadata"]["name"], err)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: holds the Lease (or waits for it), then lists and watches,
        reconciling on every event and every ``resync_s`` (progress of running searches)."""
        while not stop.is_set():
            try:
                if not self.elector.try_acquire():
                    self.leading.clear()
                    stop.wait(self.resync_s)
                    continue
                if not self.leading.is_set():
                    log.info("%s leads", self.identity)
                    self.leading.set()
                rv = self.reconcile_all()
                w = watch.Watch()
                args = ((GROUP, VERSION, self.namespace, PLURAL) if self.namespace
                        else (GROUP, VERSION, PLURAL))
                fn = (self.custom.list_namespaced_custom_object if self.namespace
                      else self.custom.list_cluster_custom_object)
                for ev in w.stream(fn, *args, resource_version=rv,
                                   timeout_seconds=max(1, int(self.resync_s))):
                    if stop.is_set():
                        w.stop()
                        break
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._safely(ev["object"])
            except Exception as err:  # a dropped watch, a 410, the API server restarting
                if not stop.is_set():
                    log.info("operator loop: %s: %s; again", type(err).__name__, err)
                    stop.wait(1.0)
        self.leading.clear()

    # -- one resource ---------------------------------------------------------------------------

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        md = obj["metadata"]
        t = _now()
        body = {"metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HurricaneSearch",
                                   "name": md["name"], "namespace": md["namespace"],
                                   "uid": md["uid"]},
                "type": type_, "reason": reason, "message": message[:1000],
                "source": {"component": "hurricane-operator"}, "firstTimestamp": t,
                "lastTimestamp": t, "count": 1, "reportingComponent": "hurricane-operator",
                "reportingInstance": self.identity}
        try:
            self.core.create_namespaced_event(md["namespace"], body)
        except ApiException as err:
            log.info("event %s on %s: %s", reason, md["name"], err.status)

    def _patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        md = obj["metadata"]
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, md["namespace"], PLURAL, md["name"], {"status": status})

    def _finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        md = obj["metadata"]
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, md["namespace"], PLURAL, md["name"],
            {"metadata": {"finalizers": finalizers,
                          "resourceVersion": md["resourceVersion"]}})

    def reconcile(self, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        ns, uid = md["namespace"], md["uid"]
        finalizers = list(md.get("finalizers") or [])
        status = dict(obj.get("status") or {})
        sid = status.get("searchId")
        if md.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                if sid:
                    self._delete_search(obj, sid)
                self._finalizers(obj, [f for f in finalizers if f != FINALIZER])
            return
        if FINALIZER not in finalizers:
            self._finalizers(obj, [*finalizers, FINALIZER])
            return  # the update comes back as an event
        spec = obj.get("spec") or {}
        generation = int(md.get("generation", 1))
        conditions = list(status.get("conditions") or [])
        if not sid:
            if status.get("state") == "refused" and status.get("observedGeneration") == generation:
                return  # refused for good (the spec is frozen): not submitted again
            search = {k: v for k, v in spec.items() if k not in MUTABLE}
            try:
                created = self.service.submit_spec(search, owner=ns, idempotency_key=uid)
            except ApiError as err:
                if err.status not in REFUSED:
                    raise
                busy = err.status == 429  # the owner's limit of active searches: retried
                reason = "TooManyActive" if busy else "Refused"
                cond = _condition("Accepted", False, reason, str(err), generation, conditions)
                if not any(c.get("type") == "Accepted" and c.get("message") == cond["message"]
                           for c in conditions):
                    self.event(obj, "Warning", reason, str(err))
                self._patch_status(obj, {"state": "pending" if busy else "refused",
                                         "message": str(err)[:1000],
                                         "observedGeneration": generation,
                                         "conditions": [cond]})
                return
            sid = created["search_id"]
            self.event(obj, "Normal", "Accepted", f"search {sid} submitted for owner {ns}")
            conditions = [_condition("Accepted", True, "Submitted", f"search {sid}",
                                     generation, conditions)]
            status = {"searchId": sid, "owner": ns, "conditions": conditions}
        view = self.service.get(sid)
        view = self._apply_changes(obj, spec, status, view)
        self._patch_status(obj, self._mirror(obj, status, view, generation))

    def _apply_changes(self, obj: dict[str, Any], spec: dict[str, Any],
                       status: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        sid, state = status["searchId"], view["state"]
        if spec.get("cancel") and state not in TERMINAL:
            self.service.cancel(sid)
            self.event(obj, "Normal", "Cancelled", "spec.cancel is true: the search was cancelled")
            return self.service.get(sid)
        if spec.get("suspend") and state in ("queued", "running"):
            self.service.cancel(sid)
            status["suspended"] = True
            self.event(obj, "Normal", "Suspended", "spec.suspend is true: the search's work "
                       "was stopped; suspend: false resumes it from its stored steps")
            return self.service.get(sid)
        if not spec.get("suspend") and status.get("suspended") and not spec.get("cancel"):
            status["suspended"] = False
            if state in ("cancelled", "failed"):
                self.service.resume(sid)
                self.event(obj, "Normal", "Resumed", "spec.suspend is false: resumed")
                return self.service.get(sid)
        return view

    def _mirror(self, obj: dict[str, Any], status: dict[str, Any], view: dict[str, Any],
                generation: int) -> dict[str, Any]:
        old_steps = (obj.get("status") or {}).get("steps") or {}
        steps: dict[str, Any] = {}
        for name, st in (view.get("steps") or {}).items():
            progress = [u.get("progress") or {} for u in (st.get("units") or {}).values()]
            done = [p.get("completed", 0) / p["total"] for p in progress if p.get("total")]
            steps[name] = {"state": st["state"], **({"reason": st["reason"]} if st.get("reason")
                                                   else {}),
                           **({"progress": round(sum(done) / len(done), 4)} if done else {})}
            before = (old_steps.get(name) or {}).get("state")
            if before != st["state"] and st["state"] != "pending":
                warn = st["state"] == "failed"
                self.event(obj, "Warning" if warn else "Normal",
                           f"Step{st['state'].title()}",
                           f"step {name}: {st['state']}" + (f": {st['error']}" if st.get("error")
                                                           else ""))
        winners: dict[str, Any] = {}
        for device, d in (view.get("devices") or {}).items():
            if not d.get("arch"):
                continue
            w: dict[str, Any] = {"arch": d["arch"]}
            for src, dst in (("top1", "top1"), ("predicted_latency_ms", "predictedLatencyMs"),
                             ("measured_latency_ms", "measuredLatencyMs"),
                             ("budget_ms", "budgetMs")):
                if d.get(src) is not None:
                    w[dst] = float(d[src])
            check = d.get("latency_check") or {}
            if check.get("verdict"):  # the final check's: within, over or inconclusive
                w["latencyVerdict"] = check["verdict"]
                w["meetsBudget"] = check["verdict"] == "within"
            elif d.get("budget_ms") is not None:
                lat = d.get("measured_latency_ms") or d.get("predicted_latency_ms")
                if lat is not None:
                    w["meetsBudget"] = float(lat) <= float(d["budget_ms"])
            if view["state"] == "succeeded":
                w["artifacts"] = {
                    "checkpoint": f"searches/{view['search_id']}/retrain/{device}/final.pt",
                    "onnx": f"searches/{view['search_id']}/export/{device}/model.onnx"}
            winners[device] = w
        state = view["state"]
        old = list(status.get("conditions") or [])
        warnings = list(view.get("warnings") or [])
        verdicts = view.get("supernets") or {}
        unreliable = [f"{label}: {v.get('warning') or 'unreliable'}"
                      for label, v in sorted(verdicts.items()) if not v.get("reliable")]
        old_warnings = set((obj.get("status") or {}).get("warnings") or [])
        for m in warnings:
            if m not in old_warnings:
                self.event(obj, "Warning", "SearchWarning", m)
        conditions = [
            next((c for c in old if c["type"] == "Accepted"), _condition(
                "Accepted", True, "Submitted", f"search {view['search_id']}", generation, old)),
            _condition("Queued", state == "queued", state.title(), "waiting for admission"
                       if state == "queued" else state, generation, old),
            _condition("Running", state == "running", state.title(), state, generation, old),
            _condition("Succeeded", state == "succeeded", state.title(), state, generation, old),
            _condition("Failed", state == "failed", state.title(), view.get("error") or state,
                       generation, old),
            _condition("SupernetUnreliable", bool(unreliable) if verdicts else "Unknown",
                       ("Unreliable" if unreliable else "Reliable") if verdicts else "NotMeasured",
                       "; ".join(unreliable) or ("every supernet's ranking passed its checks"
                                                 if verdicts else "no supernet measured yet"),
                       generation, old),
        ]
        top = [w["top1"] for w in winners.values() if "top1" in w]
        out: dict[str, Any] = {
            "searchId": view["search_id"], "owner": view.get("owner") or status.get("owner"),
            "state": state, "observedGeneration": generation,
            "strategy": view.get("strategy", ""), "devices": ",".join(view.get("targets") or []),
            "conditions": conditions, "steps": steps, "winners": winners,
            "warnings": warnings, "suspended": bool(status.get("suspended")),
            "supernets": {label: _verdict(v) for label, v in verdicts.items()},
            "message": view.get("error") or "",
            **({"bestTop1": f"{100 * max(top):.1f}%"} if top else {}),
            **({"artifacts": {"prefix": f"searches/{view['search_id']}/"}}
               if state == "succeeded" else {})}
        return out

    def _delete_search(self, obj: dict[str, Any], sid: str) -> None:
        keep = (obj["metadata"].get("annotations") or {}).get(KEEP) == "true"
        try:
            if keep:
                view = self.service.get(sid)
                if view["state"] not in TERMINAL:
                    self.service.cancel(sid)
            else:
                self.service.cancel(sid, purge=True)
        except ApiError as err:
            if err.status != 404:
                raise
        self.event(obj, "Normal", "Deleted", f"search {sid} cancelled" +
                   ("; its artifacts are kept" if keep else " and purged"))


def main(argv: list[str] | None = None) -> None:
    """``python -m hurricane.operator.controller``: the operator (in-cluster, or with
    KUBECONFIG), talking to the service at HURRICANE_SERVER with HURRICANE_TOKEN (an admin)."""
    import argparse

    from kubernetes import config

    ap = argparse.ArgumentParser(prog="python -m hurricane.operator.controller")
    ap.add_argument("--namespace", help="watch only this namespace (default: all)")
    ap.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    ap.add_argument("--resync", type=float, default=5.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    service = Client(os.environ["HURRICANE_SERVER"], os.environ.get("HURRICANE_TOKEN"))
    ctl = Controller(k8s.ApiClient(), service, namespace=args.namespace,
                     lease_namespace=args.lease_namespace, resync_s=args.resync)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ctl.run(stop)


if __name__ == "__main__":
    main()
