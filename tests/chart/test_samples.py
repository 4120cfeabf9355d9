"""config/samples/ validate offline: through the typed API models and against the CRD schemas.

The CRDs' openAPIV3Schema is checked with a JSON Schema (draft 4, OpenAPI 3.0's dialect)
validator made strict the way the API server is (unknown fields are errors here, where the
server would prune them silently). CEL rules need an API server: tests/chart/test_install.py
applies the samples with a server-side dry run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from chart.chartkit import REPO
from pydantic import BaseModel

from certmodel.operator.api import API_VERSION
from certmodel.operator.api.certifiedmodel import CertifiedModelSpec
from certmodel.operator.api.modeltraining import ModelTrainingSpec

SAMPLES = REPO / "config" / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))
SPECS: dict[str, type[BaseModel]] = {
    "ModelTraining": ModelTrainingSpec,
    "CertifiedModel": CertifiedModelSpec,
}
Obj = dict[str, Any]


def load(path: Path) -> Obj:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert isinstance(doc, dict)
    return doc


def samples() -> dict[str, Obj]:
    return {load(p)["metadata"]["name"]: load(p) for p in SAMPLE_FILES}


def crd_schema(kind: str) -> Obj:
    for path in (REPO / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = crd["spec"]["versions"]
            schema: Obj = strict(version["schema"]["openAPIV3Schema"])
            return schema
    raise AssertionError(f"no CRD for {kind}")


def strict(node: Any) -> Any:
    """Copy of a structural schema where objects with listed properties refuse others."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and set(out["properties"]) != {"apiVersion", "kind", "metadata", "spec", "status"}
    ):
        out["additionalProperties"] = False
    return out


def test_the_demo_samples_are_there() -> None:
    assert sorted(samples()) == ["demo", "demo-v1", "demo-v2"]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_is_a_namespace_free_certmodel_object(path: Path) -> None:
    obj = load(path)
    assert obj["apiVersion"] == API_VERSION
    assert obj["kind"] in SPECS
    assert set(obj["metadata"]) == {"name"}, "samples are applied with -n; no namespace here"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_spec_validates_through_the_api_models(path: Path) -> None:
    obj = load(path)
    SPECS[obj["kind"]].model_validate(obj["spec"])


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_validates_against_the_crd_schema(path: Path) -> None:
    obj = load(path)
    jsonschema.Draft4Validator(crd_schema(obj["kind"])).validate(obj)


def test_strict_schema_catches_a_typo() -> None:
    obj = samples()["demo-v1"]
    obj["spec"]["hyperparameters"]["maxStep"] = 30
    with pytest.raises(jsonschema.ValidationError, match="maxStep"):
        jsonschema.Draft4Validator(crd_schema("ModelTraining")).validate(obj)


def test_trainings_build_on_the_demo_line() -> None:
    s = samples()
    line = CertifiedModelSpec.model_validate(s["demo"]["spec"])
    assert line.base_model == "smollm2-135m" and line.promotion.policy == "Manual"
    v1, v2 = (ModelTrainingSpec.model_validate(s[n]["spec"]) for n in ("demo-v1", "demo-v2"))
    for run in (v1, v2):
        assert run.certified_model == "demo" and run.base_model == line.base_model
        assert run.dataset.path == "datasets/demo.jsonl"
        steps = run.hyperparameters.max_steps  # short: `make demo` trains both on 2 CPU cores
        assert steps is not None and steps <= 20 and run.promote
    assert v1.hyperparameters != v2.hyperparameters, "v2 must be another recipe (another DNA)"
    assert v1.model_copy(update={"hyperparameters": v2.hyperparameters}) == v2
