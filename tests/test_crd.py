"""The HurricaneSearch CRD (hurricane.operator.crd) against the pydantic SearchSpec it is
generated from: every field of the model, nested ones included, is in the CRD's spec with the
model's bounds, patterns and choices; the schema is structural (what the API server demands);
the object is a valid CustomResourceDefinition. The real API server's view of it is in
tests/test_crd_real.py."""

from __future__ import annotations

import typing
from typing import Any

import annotated_types
import kubernetes_validate
import pytest
from pydantic import BaseModel

from hurricane.operator.crd import MUTABLE, crd, spec_schema
from hurricane.runs.strategies import STRATEGIES
from hurricane.spec import SearchSpec


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (X, X | None, list[X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _literals(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _literals(arg)
        if found is not None:
            return found
    return None


def _node(schema: dict[str, Any], name: str) -> dict[str, Any]:
    node = schema["properties"][name]
    return node["items"] if node.get("type") == "array" and "properties" in node.get(
        "items", {}) else node


def _check(model: type[BaseModel], schema: dict[str, Any], path: str, seen: list[str]) -> None:
    assert set(model.model_fields) <= set(schema["properties"]), (
        f"{path}: fields missing from the CRD: {set(model.model_fields) - set(schema['properties'])}")
    for name, field in model.model_fields.items():
        node = _node(schema, name)
        where = f"{path}.{name}"
        seen.append(where)
        for m in field.metadata:
            for attr, key, exclusive in (("ge", "minimum", False), ("gt", "minimum", True),
                                         ("le", "maximum", False), ("lt", "maximum", True)):
                bound = getattr(m, attr, None) if isinstance(
                    m, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le,
                        annotated_types.Lt, annotated_types.Interval)) else None
                if bound is not None:
                    assert node.get(key) == bound, (where, key, node)
                    assert bool(node.get("exclusive" + key.title())) == exclusive, (where, node)
            pattern = getattr(m, "pattern", None)
            if pattern is not None:
                assert node.get("pattern") == pattern, (where, node)
        choices = _literals(field.annotation)
        if choices is not None:
            assert sorted(node["enum"]) == sorted(choices), where
        if not field.is_required() and field.default is None:
            assert node.get("nullable") is True, (where, node)
        inner = _model_of(field.annotation)
        if inner is not None:
            _check(inner, node, where, seen)


def test_every_field_of_the_spec_is_in_the_crd_with_its_constraints() -> None:
    schema = spec_schema()
    seen: list[str] = []
    _check(SearchSpec, schema, "spec", seen)
    assert len(seen) > 100  # nested sections were walked, not just the top level
    assert schema["properties"]["strategy"]["enum"] == sorted(STRATEGIES.names())
    assert set(schema["properties"]) == set(SearchSpec.model_fields) | set(MUTABLE)


def _structural(node: dict[str, Any], path: str) -> None:
    assert not {"anyOf", "oneOf", "allOf", "$ref", "$defs", "const", "title"} & set(node), (
        path, sorted(node))
    assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
    for name, child in (node.get("properties") or {}).items():
        _structural(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        _structural(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        _structural(node["additionalProperties"], f"{path}{{}}")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        assert key not in node or isinstance(node[key], bool), (path, key)


def test_the_schema_is_structural_and_the_crd_a_valid_definition() -> None:
    obj = crd()
    kubernetes_validate.validate(obj, "1.32", strict=True)
    version = obj["spec"]["versions"][0]
    _structural(version["schema"]["openAPIV3Schema"], "")
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "State", "Strategy", "Devices", "Top-1", "Age"]
    rules = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    frozen = rules[0]["rule"]
    for name in SearchSpec.model_fields:  # every field is frozen, suspend and cancel are not
        assert f"self.{name} == oldSelf.{name}" in frozen
    for name in MUTABLE:
        assert f"self.{name} ==" not in frozen


@pytest.mark.parametrize("name", ["supernet", "devices", "backbone"])
def test_descriptions_reach_the_crd(name: str) -> None:
    """kubectl explain shows the model's field documentation."""
    model = SearchSpec.model_fields[name]
    node = spec_schema()["properties"][name]
    assert node.get("description") or model.description is None


def test_the_chart_ships_the_generated_crd() -> None:
    """charts/hurricane/files/hurricanesearch-crd.yaml is `python -m hurricane.operator.crd`
    (regenerate it when the spec changes), and the chart installs it only when asked."""
    from pathlib import Path

    import yaml

    from tests.test_chart import render

    shipped = Path(__file__).resolve().parents[1] / "charts" / "hurricane" / "files" / \
        "hurricanesearch-crd.yaml"
    assert yaml.safe_load(shipped.read_text()) == crd(), (
        "the chart's CRD is stale: python -m hurricane.operator.crd > " + str(shipped))
    kinds = [o["kind"] for o in render({"operator": {"enabled": True}})]
    assert kinds.count("CustomResourceDefinition") == 1
    assert "CustomResourceDefinition" not in [o["kind"] for o in render(
        {"operator": {"enabled": True, "installCRD": False}})]
    assert "CustomResourceDefinition" not in [o["kind"] for o in render()]
