"""The HurricaneSearch custom resource (``hurricane.io/v1alpha1``), its definition generated from
the pydantic ``SearchSpec``: one source for what a search spec is, over REST, the CLI and
``kubectl apply``.

``spec_schema()`` turns the model's JSON Schema (draft 2020-12) into a structural OpenAPI v3
schema as the API server requires it: references inlined, ``anyOf [X, null]`` as ``X`` with
``nullable``, numeric ``exclusiveMinimum``/``exclusiveMaximum`` as the OpenAPI 3.0 booleans,
titles and defaults dropped (the operator validates with the model itself, which applies the
defaults, so the stored resource says what its author wrote). Unknown fields are pruned by
the API server, and refused with ``kubectl apply`` (server-side field validation, strict).

``crd()`` is the whole CustomResourceDefinition: the spec (immutable once created, apart from
``suspend`` and ``cancel``), a status subresource with conditions, per-step states and
per-device winners, and printer columns."""

from __future__ import annotations

import copy
from typing import Any

GROUP, VERSION, KIND = "hurricane.io", "v1alpha1", "HurricaneSearch"
PLURAL, SINGULAR, SHORT = "hurricanesearches", "hurricanesearch", ("hsearch",)
CONDITIONS = ("Accepted", "Queued", "Running", "Succeeded", "Failed", "SupernetUnreliable")
# what may change after creation (everything else under spec is immutable)
MUTABLE = ("suspend", "cancel")
DROP = ("title", "default", "$defs", "examples")


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _openapi(node: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node (references resolved) as a structural OpenAPI v3 node."""
    node = {k: v for k, v in node.items() if k not in DROP}
    if "anyOf" in node:
        union = node.pop("anyOf")
        options = [o for o in union if o.get("type") != "null"]
        nullable = len(options) < len(union)
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally: "
                             f"{options}")
        inner = _openapi(options[0])
        node = {**inner, **node}
        if nullable:
            node["nullable"] = True
    for bound, word in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            node[word], node[bound] = value, True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]  # structural schemas prune unknown fields
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _openapi(node["additionalProperties"])
    if "properties" in node:
        node["properties"] = {k: _openapi(v) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if "items" in node:
        node["items"] = _openapi(node["items"])
    if "type" not in node and "enum" in node:
        node["type"] = "string"
    return node


def spec_schema() -> dict[str, Any]:
    """The OpenAPI v3 schema of a HurricaneSearch's ``spec``: SearchSpec's fields plus
    ``suspend`` and ``cancel``."""
    from hurricane.runs.strategies import STRATEGIES
    from hurricane.spec import SearchSpec

    raw = SearchSpec.model_json_schema()
    schema = _openapi(_resolve({k: v for k, v in raw.items() if k != "$defs"},
                               raw.get("$defs", {})))
    schema["properties"]["strategy"]["enum"] = sorted(STRATEGIES.names())
    schema["properties"]["suspend"] = {
        "type": "boolean", "description": "true: queued work is held; false resumes it"}
    schema["properties"]["cancel"] = {
        "type": "boolean", "description": "true cancels the search (it cannot be undone; "
        "delete the resource to purge it)"}
    frozen = " && ".join(
        f"has(self.{k}) == has(oldSelf.{k}) && (!has(self.{k}) || self.{k} == oldSelf.{k})"
        for k in sorted(schema["properties"]) if k not in MUTABLE)
    schema["x-kubernetes-validations"] = [
        {"rule": frozen, "message": "the search spec is immutable once accepted (only suspend "
         "and cancel change); create a new HurricaneSearch for another spec",
         "reason": "FieldValueForbidden"},
        {"rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
         "message": "a cancelled search stays cancelled", "fieldPath": ".cancel"},
    ]
    return schema


STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "observedGeneration": {"type": "integer", "format": "int64"},
        "searchId": {"type": "string"},
        "owner": {"type": "string"},
        "state": {"type": "string"},
        "message": {"type": "string"},
        "strategy": {"type": "string"},
        "devices": {"type": "string", "description": "comma-separated device targets"},
        "bestTop1": {"type": "string", "description": "the best winner's test top-1 (%)"},
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "what makes the result doubtful though the search ran"},
        "suspended": {"type": "boolean"},
        "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["type"], "items": {
                           "type": "object", "required": ["type", "status"],
                           "properties": {
                               "type": {"type": "string"},
                               "status": {"type": "string", "enum": ["True", "False",
                                                                     "Unknown"]},
                               "reason": {"type": "string"},
                               "message": {"type": "string"},
                               "observedGeneration": {"type": "integer", "format": "int64"},
                               "lastTransitionTime": {"type": "string",
                                                      "format": "date-time"}}}},
        "steps": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {
                "state": {"type": "string"}, "progress": {"type": "number"},
                "reason": {"type": "string"}}}},
        "winners": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {
                "arch": {"type": "string"}, "top1": {"type": "number"},
                "predictedLatencyMs": {"type": "number"},
                "measuredLatencyMs": {"type": "number"}, "budgetMs": {"type": "number"},
                "meetsBudget": {"type": "boolean"},
                "latencyVerdict": {"type": "string", "enum": ["within", "over", "inconclusive"],
                                   "description": "the final check's verdict on the budget"},
                "artifacts": {"type": "object",
                              "additionalProperties": {"type": "string"}}}}},
        "artifacts": {"type": "object", "additionalProperties": {"type": "string"}},
        "supernets": {"type": "object", "description": "each supernet training's ranking "
                      "verdict, by label (stage1, stage2 (<arch>), proxyless (<device>))",
                      "additionalProperties": {
                          "type": "object", "properties": {
                              "reliable": {"type": "boolean"},
                              "tests": {"type": "object",
                                        "additionalProperties": {"type": "boolean"}},
                              "accuracyMean": {"type": "number"},
                              "splitHalfRho": {"type": "number"},
                              "consistencyNeeded": {"type": "number"},
                              "stabilityRho": {"type": "number"},
                              "stabilityNeeded": {"type": "number"},
                              "iterations": {"type": "integer"},
                              "warning": {"type": "string"}}}},
    },
}


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}",
                     "labels": {"app.kubernetes.io/part-of": "hurricane-nas"}},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": list(SHORT), "listKind": f"{KIND}List",
                      "categories": ["hurricane"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "State", "type": "string", "jsonPath": ".status.state"},
                    {"name": "Strategy", "type": "string", "jsonPath": ".status.strategy"},
                    {"name": "Devices", "type": "string", "jsonPath": ".status.devices"},
                    {"name": "Top-1", "type": "string", "jsonPath": ".status.bestTop1"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A hardware-aware neural architecture search (hurricane-nas).",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": copy.deepcopy(STATUS_SCHEMA)}}},
            }],
        },
    }


def main() -> None:
    """``python -m hurricane.operator.crd``: the CustomResourceDefinition as YAML."""
    import sys

    import yaml

    sys.stdout.write(yaml.safe_dump(crd(), sort_keys=False, width=100))


if __name__ == "__main__":
    main()
