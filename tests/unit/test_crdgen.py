"""CRD generation from the typed API models: structural, complete, and committed without drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from certmodel.operator import crdgen
from certmodel.operator.api.base import ApiModel

ROOT = Path(__file__).resolve().parents[2]


class Inner(ApiModel):
    rate: float = Field(gt=0, le=1)


class Sample(ApiModel):
    mode: Literal["a", "b"] = "a"
    fixed: Literal["only"] = "only"
    inner: Inner | None = None
    labels: dict[str, str] | None = None
    items: list[Inner] = Field(default_factory=list, max_length=3)
    snake_case_name: int = 1


def walk(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(walk(value))
    return found


def test_schema_is_structural() -> None:
    schema = crdgen.structural_schema(Sample)
    nodes = walk(schema)
    assert not any({"$ref", "anyOf", "title", "$defs"} & node.keys() for node in nodes)
    assert not any(isinstance(node.get("additionalProperties"), bool) for node in nodes)
    props = schema["properties"]
    assert props["mode"] == {"default": "a", "enum": ["a", "b"], "type": "string"}
    assert props["fixed"]["enum"] == ["only"]
    assert props["inner"]["properties"]["rate"] == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
    }
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["items"]["maxItems"] == 3
    assert "snakeCaseName" in props


def test_an_ambiguous_union_is_refused() -> None:
    class Bad(BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="anyOf"):
        crdgen.structural_schema(Bad)


def test_the_crds_carry_names_columns_status_and_cel() -> None:
    mt, cmod = (crdgen.build_crd(kind) for kind in crdgen.KINDS)
    assert mt["spec"]["names"]["shortNames"] == ["mt"]
    assert cmod["spec"]["names"]["shortNames"] == ["cmod"]
    version = mt["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == [
        "Model",
        "Phase",
        "Progress",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for node in walk(spec) for r in node.get("x-kubernetes-validations", [])]
    assert "self == oldSelf" in rules
    assert any("'..'" in rule for rule in rules)


def test_committed_crds_match_the_models() -> None:
    """The drift check `make test` relies on (also run as `make check-generated`)."""
    assert crdgen.main(["--check", str(ROOT / "crds")]) == 0
