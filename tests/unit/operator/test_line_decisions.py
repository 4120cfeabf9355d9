"""Table-driven tests of where CURRENT should point and what the line's status says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certmodel.operator.api.certifiedmodel import CertifiedModelSpec, CertifiedModelStatus
from certmodel.operator.decisions.line import (
    LineSnapshot,
    PodServing,
    PointerState,
    VersionFacts,
    decide_line,
)
from certmodel.runtime.format.pointer import PointerDocument

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
A, B, C = (f"base-lora-{c * 12}" for c in "abc")


def facts(dna: str, **kw: Any) -> VersionFacts:
    defaults: dict[str, Any] = {
        "exists": True,
        "verified": True,
        "base_model": "base",
        "kind": "adapter",
        "created": NOW - timedelta(hours=ord(dna[-1]) % 10),
        "eval_loss": 1.0,
        "content_digest": "sha256:" + "0" * 64,
        "promote_requested": True,
    }
    return VersionFacts(dna=dna, **{**defaults, **kw})


def spec(**promotion: Any) -> CertifiedModelSpec:
    return CertifiedModelSpec.model_validate({"baseModel": "base", "promotion": promotion})


def snap(
    spec_: CertifiedModelSpec,
    versions: list[VersionFacts],
    *,
    doc: PointerDocument | None = None,
    pods: list[PodServing] | None = None,
    pointer: PointerState | None = None,
    old: CertifiedModelStatus | None = None,
) -> LineSnapshot:
    state = pointer or PointerState(exists=doc is not None, document=doc)
    return LineSnapshot(
        name="line",
        generation=3,
        spec=spec_,
        old_status=old or CertifiedModelStatus(),
        versions=versions,
        pointer=state,
        serving=pods or [],
        now=NOW,
    )


def cond(status: CertifiedModelStatus, kind: str = "Ready") -> tuple[str, str]:
    c = next(c for c in status.conditions if c.type == kind)
    assert c.observed_generation == 3
    return c.status, c.reason


def test_manual_promotion_writes_the_pointer_and_is_ready() -> None:
    plan = decide_line(snap(spec(current=A), [facts(A)]))
    assert plan.pointer is not None and plan.pointer.dna == A and plan.pointer.revision == 1
    assert plan.status.current == A and cond(plan.status) == ("True", "Ready")
    assert [e.reason for e in plan.events] == ["Promoted"]


def test_a_pointer_already_in_place_is_not_written_again() -> None:
    first = decide_line(snap(spec(current=A), [facts(A)]))
    again = decide_line(snap(spec(current=A), [facts(A)], doc=first.pointer, old=first.status))
    assert again.pointer is None and again.events == []
    assert again.status == first.status  # steady state: nothing to write, not even status


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (facts(B, exists=False), "TargetMissing"),
        (
            facts(B, verified=False, problem="adapter/x.safetensors: sha256 mismatch"),
            "TargetCorrupt",
        ),
        (facts(B, base_model="other"), "TargetWrongBase"),
    ],
)
def test_a_bad_target_is_refused_and_the_old_pointer_kept(
    target: VersionFacts, reason: str
) -> None:
    live = decide_line(snap(spec(current=A), [facts(A)])).pointer
    plan = decide_line(snap(spec(current=B), [facts(A), target], doc=live))
    assert plan.pointer is None
    assert plan.status.current == A
    assert cond(plan.status) == ("False", reason)
    assert f"keeping CURRENT at {A}" in plan.status.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]
    # The same refusal on the next reconcile is not announced again.
    again = decide_line(snap(spec(current=B), [facts(A), target], doc=live, old=plan.status))
    assert again.events == []


def test_an_unknown_dna_is_missing() -> None:
    plan = decide_line(snap(spec(current=C), [facts(A)]))
    assert cond(plan.status) == ("False", "TargetMissing") and plan.pointer is None


def test_setting_current_back_to_the_previous_version_is_a_rollback() -> None:
    d1 = decide_line(snap(spec(current=A), [facts(A), facts(B)])).pointer
    d2 = decide_line(snap(spec(current=B), [facts(A), facts(B)], doc=d1)).pointer
    plan = decide_line(snap(spec(current=A), [facts(A), facts(B)], doc=d2))
    assert plan.pointer is not None
    assert plan.pointer.history[-1].reason == "rollback" and plan.pointer.previous == []
    assert [e.reason for e in plan.events] == ["RolledBack"]
    assert plan.status.history[-1].reason == "rollback" and plan.status.revision == 3


def test_latest_policy_takes_the_newest_verified_version_within_the_gates() -> None:
    versions = [
        facts(A, created=NOW - timedelta(hours=3), eval_loss=0.9),
        facts(B, created=NOW - timedelta(hours=2), eval_loss=2.5),  # too lossy
        facts(C, created=NOW - timedelta(hours=1), verified=False),  # corrupt
    ]
    plan = decide_line(snap(spec(policy="Latest", gates={"maxEvalLoss": 2.0}), versions))
    assert plan.pointer is not None and plan.pointer.dna == A


def test_latest_policy_only_takes_versions_whose_training_asked_for_promotion() -> None:
    plan = decide_line(snap(spec(policy="Latest"), [facts(A, promote_requested=False)]))
    assert plan.pointer is None and cond(plan.status) == ("False", "NoTarget")


def test_a_signature_gate_refuses_an_unsigned_manual_target() -> None:
    plan = decide_line(snap(spec(current=A, gates={"requireSignature": True}), [facts(A)]))
    assert cond(plan.status) == ("False", "TargetUnsigned") and plan.pointer is None


def test_a_hand_edited_unreadable_pointer_is_restored_with_a_higher_revision() -> None:
    first = decide_line(snap(spec(current=A), [facts(A)]))
    broken = PointerState(exists=True, document=None, error="not JSON")
    plan = decide_line(snap(spec(current=A), [facts(A)], pointer=broken, old=first.status))
    assert plan.pointer is not None and plan.pointer.dna == A
    assert plan.pointer.revision > (first.status.revision or 0)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "PointerRestored")]


def test_a_pointer_edited_to_another_version_is_moved_back_to_spec() -> None:
    first = decide_line(snap(spec(current=A), [facts(A), facts(B)])).pointer
    assert first is not None
    from certmodel.runtime.format import pointer

    edited = pointer.promote(first, facts(B).target())
    plan = decide_line(snap(spec(current=A), [facts(A), facts(B)], doc=edited))
    assert plan.pointer is not None and plan.pointer.dna == A


@pytest.mark.parametrize(
    ("pods", "ready"),
    [
        ([], ("True", "Ready")),
        ([PodServing("p1", True, A), PodServing("p2", True, A)], ("True", "Ready")),
        ([PodServing("p1", True, A), PodServing("p2", True, B)], ("False", "Converging")),
        ([PodServing("p1", True, A), PodServing("p2", False, None)], ("True", "Ready")),
    ],
    ids=["no-pods", "all-on-current", "one-behind", "unready-pod-ignored"],
)
def test_ready_waits_for_serving_pods_to_converge(
    pods: list[PodServing], ready: tuple[str, str]
) -> None:
    plan = decide_line(snap(spec(current=A), [facts(A)], pods=pods))
    assert cond(plan.status) == ready


def test_refusals_reported_by_pods_appear_in_status() -> None:
    pods = [PodServing("p1", True, B, refused=("base-lora-aaaaaaaaaaaa: digest mismatch",))]
    plan = decide_line(snap(spec(current=A), [facts(A)], pods=pods))
    assert plan.status.serving is not None
    assert plan.status.serving.refused == ["p1: base-lora-aaaaaaaaaaaa: digest mismatch"]
    assert "refused" in plan.status.message


def test_transition_time_is_kept_while_the_status_holds() -> None:
    first = decide_line(snap(spec(current=A), [facts(A)]))
    later = replace(
        snap(spec(current=A), [facts(A)], doc=first.pointer, old=first.status),
        now=NOW + timedelta(hours=1),
    )
    status = decide_line(later).status
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.last_transition_time == NOW
