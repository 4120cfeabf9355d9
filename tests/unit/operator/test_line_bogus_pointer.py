"""A pointer hand-edited to a target the operator never wrote: restored, reported, forgotten."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from certmodel.operator.api.certifiedmodel import CertifiedModelSpec, CertifiedModelStatus
from certmodel.operator.decisions.line import (
    LinePlan,
    LineSnapshot,
    PointerState,
    VersionFacts,
    decide_line,
)
from certmodel.runtime.format.pointer import PointerDocument

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
A, B, X = "base-lora-aaaaaaaaaaaa", "base-lora-bbbbbbbbbbbb", "base-lora-0123456789ab"


def facts(dna: str, **kw: Any) -> VersionFacts:
    return VersionFacts(
        dna=dna,
        **{
            "exists": True,
            "verified": True,
            "base_model": "base",
            "kind": "adapter",
            "content_digest": "sha256:" + "0" * 64,
            **kw,
        },
    )


def decide(current: str, versions: list[VersionFacts], doc: PointerDocument | None) -> LinePlan:
    spec = CertifiedModelSpec.model_validate(
        {"baseModel": "base", "promotion": {"policy": "Manual", "current": current}}
    )
    return decide_line(
        LineSnapshot(
            name="line",
            generation=1,
            spec=spec,
            old_status=CertifiedModelStatus(),
            versions=versions,
            pointer=PointerState(exists=doc is not None, document=doc),
            serving=[],
            now=NOW,
        )
    )


def edited(doc: PointerDocument, **target: Any) -> PointerDocument:
    assert doc.target is not None
    return doc.model_copy(update={"target": doc.target.model_copy(update=target)})


@pytest.fixture
def two_moves() -> PointerDocument:
    """CURRENT at B, A before it."""
    first = decide(A, [facts(A), facts(B)], None).pointer
    assert first is not None
    second = decide(B, [facts(A), facts(B)], first).pointer
    assert second is not None and second.dna == B
    return second


@pytest.mark.parametrize(
    ("change", "missing", "why"),
    [
        ({"dna": X, "path": f"certified/{X}"}, True, "does not exist on the models volume"),
        ({"content_digest": "sha256:" + "f" * 64}, False, "differ from version"),
    ],
)
def test_a_bogus_target_is_restored_reported_and_not_kept(
    two_moves: PointerDocument, change: dict[str, Any], missing: bool, why: str
) -> None:
    bad = edited(two_moves, **change)
    versions = [facts(A), facts(B)] + ([facts(X, exists=False)] if missing else [])
    plan = decide(B, versions, bad)
    assert plan.pointer is not None and plan.pointer.target == two_moves.target
    assert plan.pointer.revision == bad.revision + 1
    assert plan.pointer.previous == two_moves.previous  # [A]: the bogus target is not kept
    assert plan.pointer.history[-1].from_dna == bad.dna and plan.pointer.history[-1].to_dna == B
    ((kind, reason, message),) = [(e.type, e.reason, e.message) for e in plan.events]
    assert (kind, reason) == ("Warning", "PointerRestored")
    assert bad.dna in message and why in message and f"restored CURRENT to {B}" in message
    assert plan.status.current == B and plan.status.previous == A


def test_restoring_to_the_previous_version_pops_it(two_moves: PointerDocument) -> None:
    """Spec back at A while the pointer was edited to a bogus X: A is current, not also
    'previous' (a later rollback must not 'roll back' to the version already live)."""
    bad = edited(two_moves, dna=X, path=f"certified/{X}")
    plan = decide(A, [facts(A), facts(B), facts(X, exists=False)], bad)
    assert plan.pointer is not None and plan.pointer.dna == A
    assert plan.pointer.previous == [] and plan.pointer.history[-1].reason == "rollback"
    assert plan.pointer.history[-1].from_dna == X


def test_a_pointer_moved_by_hand_to_a_real_version_is_a_plain_move() -> None:
    """Not bogus: a verified version of the line, moved back as any other promote."""
    first = decide(A, [facts(A), facts(B)], None).pointer
    assert first is not None
    plan = decide(A, [facts(A), facts(B)], edited(first, **facts(B).target().model_dump()))
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Promoted")]
    assert plan.pointer is not None and plan.pointer.dna == A and plan.pointer.previous[-1].dna == B


def test_a_bogus_pointer_is_restored_even_when_the_specs_target_is_refused(
    two_moves: PointerDocument,
) -> None:
    """The spec names a version that is gone, and the pointer was hand-edited to a bogus X:
    CURRENT goes back to the last good version the pointer held (B is refused as missing
    too, so A), rather than keeping X and saying 'keeping CURRENT at X'."""
    bad = edited(two_moves, dna=X, path=f"certified/{X}")
    gone_b = [facts(A), facts(B, exists=False), facts(X, exists=False)]
    plan = decide(B, gone_b, bad)
    assert plan.pointer is not None and plan.pointer.dna == A
    reasons = [(e.type, e.reason) for e in plan.events]
    assert ("Warning", "PointerRestored") in reasons and ("Warning", "TargetMissing") in reasons
    assert "keeping CURRENT at " + A in plan.status.message or plan.status.current == A
    # Nothing good to go back to: the pointer is left alone, and the event says it is wrong.
    none_good = [facts(A, verified=False), facts(B, exists=False), facts(X, exists=False)]
    plan = decide(B, none_good, bad)
    assert plan.pointer is None
    assert ("Warning", "PointerInvalid") in [(e.type, e.reason) for e in plan.events]


def test_a_version_lost_under_the_pointer_the_operator_wrote_is_kept(
    two_moves: PointerDocument,
) -> None:
    """B, written by the operator, vanishes from the volume (a lagging mount, say): a refusal
    keeps CURRENT, so the pods keep serving the B they hold; no restore to A."""
    spec = CertifiedModelSpec.model_validate(
        {"baseModel": "base", "promotion": {"policy": "Manual", "current": B}}
    )
    plan = decide_line(
        LineSnapshot(
            name="line",
            generation=1,
            spec=spec,
            old_status=CertifiedModelStatus(current=B, previous=A, revision=two_moves.revision),
            versions=[facts(A), facts(B, exists=False)],
            pointer=PointerState(exists=True, document=two_moves),
            serving=[],
            now=NOW,
        )
    )
    assert plan.pointer is None
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "TargetMissing")]


def test_a_canary_is_reported_as_not_implemented_and_the_condition_goes_with_it() -> None:
    """spec.canary is accepted, but nothing splits traffic yet: the line says so."""
    spec = CertifiedModelSpec.model_validate(
        {
            "baseModel": "base",
            "promotion": {"policy": "Manual", "current": A},
            "canary": {"dna": B, "percent": 10},
        }
    )
    snap = LineSnapshot(
        name="line",
        generation=1,
        spec=spec,
        old_status=CertifiedModelStatus(),
        versions=[facts(A), facts(B)],
        pointer=PointerState(exists=False, document=None),
        serving=[],
        now=NOW,
    )
    status = decide_line(snap).status
    (canary,) = [c for c in status.conditions if c.type == "CanaryApplied"]
    assert (canary.status, canary.reason) == ("False", "NotImplemented")
    assert B in canary.message and "10%" in canary.message
    without = replace(snap, spec=spec.model_copy(update={"canary": None}), old_status=status)
    assert all(c.type != "CanaryApplied" for c in decide_line(without).status.conditions)
