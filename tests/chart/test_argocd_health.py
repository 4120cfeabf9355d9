"""The Argo CD health checks (Lua) of both kinds, run in a Lua 5.1 runtime like Argo CD's.

Argo CD runs a health script with the live object as the global ``obj`` and reads the table it
returns: ``{status = Healthy | Progressing | Degraded | ..., message = ...}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from chart.chartkit import CHART, REPO
from lupa import lua51  # type: ignore[import-untyped]

HEALTH = CHART / "argocd"
Obj = dict[str, Any]


def run_health(script: Path, obj: Obj) -> tuple[str, str]:
    """(status, message) the script returns for ``obj``, in a fresh sandboxed runtime."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    for unsafe in ("os", "io", "require", "dofile", "loadfile"):  # Argo CD offers none of them
        lua.globals()[unsafe] = None
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script.read_text())
    return str(result["status"]), str(result["message"])


def cmod(generation: int, *conditions: Obj, observed: int | None = None) -> Obj:
    status: Obj = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "demo", "generation": generation}, "status": status}


def ready(status: str, reason: str, generation: int | None = 3, message: str = "m") -> Obj:
    cond: Obj = {"type": "Ready", "status": status, "reason": reason, "message": message}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


SYNCED = {"type": "PointerSynced", "status": "True", "reason": "PointerSynced", "message": "x"}

CERTIFIED_MODEL_CASES: list[tuple[str, Obj, str, str]] = [
    ("no status", {"metadata": {"generation": 1}}, "Progressing", "Waiting for the operator"),
    ("no conditions", {"metadata": {"generation": 1}, "status": {}}, "Progressing", "Waiting"),
    ("no Ready condition", cmod(3, SYNCED), "Progressing", "Waiting"),
    ("ready", cmod(3, SYNCED, ready("True", "Ready", message="serving x")), "Healthy", "serving x"),
    ("ready for an old spec", cmod(4, ready("True", "Ready")), "Progressing", "generation 4"),
    (
        "ready, generation on status only",
        cmod(3, ready("True", "Ready", generation=None), observed=3),
        "Healthy",
        "m",
    ),
    (
        "ready, status behind",
        cmod(3, ready("True", "Ready", generation=None), observed=2),
        "Progressing",
        "generation 3",
    ),
    ("unknown", cmod(3, ready("Unknown", "Reconciling")), "Progressing", "m"),
    ("converging", cmod(3, ready("False", "Converging", message="1/2")), "Progressing", "1/2"),
    ("no target yet", cmod(3, ready("False", "NoTarget")), "Progressing", "m"),
    (
        "target missing",
        cmod(3, ready("False", "TargetMissing", message="gone")),
        "Degraded",
        "gone",
    ),
    ("target corrupt", cmod(3, ready("False", "TargetCorrupt")), "Degraded", "m"),
    ("target refused", cmod(3, ready("False", "TargetRefused")), "Degraded", "m"),
    ("wrong base", cmod(3, ready("False", "TargetWrongBase")), "Degraded", "m"),
    ("unsigned", cmod(3, ready("False", "TargetUnsigned")), "Degraded", "m"),
    ("refusal for an old spec", cmod(4, ready("False", "TargetMissing")), "Progressing", "gen"),
    ("reason as message", cmod(3, ready("False", "TargetCorrupt", message="")), "Degraded", "Ta"),
]


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [c[1:] for c in CERTIFIED_MODEL_CASES],
    ids=[c[0] for c in CERTIFIED_MODEL_CASES],
)
def test_certified_model_health(obj: Obj, status: str, message: str) -> None:
    got_status, got_message = run_health(HEALTH / "health-certifiedmodel.lua", obj)
    assert got_status == status
    assert message in got_message


def mt(status: Obj | None) -> Obj:
    obj: Obj = {"metadata": {"name": "demo-v1", "generation": 1}}
    if status is not None:
        obj["status"] = status
    return obj


MODEL_TRAINING_CASES: list[tuple[str, Obj, str, str]] = [
    ("no status", mt(None), "Progressing", "Waiting for the operator"),
    ("empty status", mt({}), "Progressing", "Waiting"),
    ("pending", mt({"phase": "Pending", "message": ""}), "Progressing", "Pending"),
    (
        "running",
        mt({"phase": "Running", "progress": {"summary": "12/30 (40%)"}}),
        "Progressing",
        "12/30 (40%)",
    ),
    ("succeeded", mt({"phase": "Succeeded", "message": "certified x"}), "Healthy", "certified x"),
    ("failed", mt({"phase": "Failed", "message": "dataset not found"}), "Degraded", "dataset not"),
]


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [c[1:] for c in MODEL_TRAINING_CASES],
    ids=[c[0] for c in MODEL_TRAINING_CASES],
)
def test_model_training_health(obj: Obj, status: str, message: str) -> None:
    got_status, got_message = run_health(HEALTH / "health-modeltraining.lua", obj)
    assert got_status == status
    assert message in got_message


def test_degraded_reasons_cover_the_operators_refusals() -> None:
    """Every refusal reason the operator writes must turn the Argo CD health Degraded."""
    from certmodel.operator.decisions.line import REFUSAL_REASONS

    script = (HEALTH / "health-certifiedmodel.lua").read_text()
    terminal = set(re.findall(r"^\s+(\w+) = true,$", script, flags=re.MULTILINE))
    assert set(REFUSAL_REASONS) <= terminal


@pytest.mark.parametrize("kind", ["ModelTraining", "CertifiedModel"])
def test_docs_show_the_scripts_verbatim(kind: str) -> None:
    """docs/argocd.md carries each script as the argocd-cm snippet; they must not drift."""
    doc = (REPO / "docs" / "argocd.md").read_text()
    script = (HEALTH / f"health-{kind.lower()}.lua").read_text()
    key = f"resource.customizations.health.certmodel.io_{kind}: |\n"
    assert key in doc
    indented = "".join(f"    {ln}\n" if ln else "\n" for ln in script.splitlines())
    assert key + indented in doc
