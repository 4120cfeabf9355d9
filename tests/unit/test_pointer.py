"""The CURRENT pointer: promote, rollback, history, compare-and-swap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certmodel.runtime.errors import ConflictError, RefusedError
from certmodel.runtime.format import pointer
from certmodel.runtime.format.pointer import FilePointer, PointerDocument, PointerTarget
from certmodel.runtime.format.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def target(dna: str, base: str = "base") -> PointerTarget:
    return PointerTarget(
        dna=dna,
        path=f"certified/{dna}",
        kind="adapter",
        base_model=base,
        content_digest="sha256:" + "0" * 64,
    )


A, B, C, D = (target(f"base-lora-{c * 12}") for c in "abcd")


def test_promote_records_a_move_and_a_revision() -> None:
    doc = pointer.promote(PointerDocument(), A, by="ana", now=T0)
    assert (doc.revision, doc.dna, doc.previous) == (1, A.dna, [])
    assert doc.history[-1].model_dump() == {
        "revision": 1,
        "from_dna": None,
        "to_dna": A.dna,
        "reason": "promote",
        "at": T0,
        "by": "ana",
    }


def test_promoting_the_current_target_again_changes_nothing() -> None:
    doc = pointer.promote(PointerDocument(), A)
    assert pointer.promote(doc, A) is doc


def test_rollback_walks_back_through_what_was_promoted() -> None:
    doc = PointerDocument()
    for t in (A, B, C):
        doc = pointer.promote(doc, t)
    doc = pointer.rollback(doc)
    assert doc.dna == B.dna
    doc = pointer.rollback(doc)
    assert doc.dna == A.dna
    with pytest.raises(RefusedError, match="nothing to roll back to"):
        pointer.rollback(doc)
    doc = pointer.promote(doc, D)
    assert pointer.rollback(doc).dna == A.dna
    assert [m.reason for m in doc.history] == ["promote"] * 3 + ["rollback"] * 2 + ["promote"]
    assert [m.revision for m in doc.history] == [1, 2, 3, 4, 5, 6]


def test_a_target_on_another_base_model_is_refused_unless_allowed() -> None:
    doc = pointer.promote(PointerDocument(), A)
    other = target("other-lora-eeeeeeeeeeee", base="other")
    with pytest.raises(RefusedError, match="base model 'other'"):
        pointer.promote(doc, other)
    assert pointer.promote(doc, other, allow_base_change=True).dna == other.dna


def test_history_is_bounded() -> None:
    doc = PointerDocument()
    for i in range(pointer.MAX_HISTORY + 20):
        doc = pointer.promote(doc, target(f"base-lora-{i:012x}"))
    assert len(doc.history) == pointer.MAX_HISTORY
    assert len(doc.previous) == pointer.MAX_PREVIOUS
    assert doc.history[-1].revision == pointer.MAX_HISTORY + 20


def test_file_pointer_round_trips_and_detects_a_concurrent_move(store: Store) -> None:
    ptr = FilePointer(store.root)
    assert ptr.read() == PointerDocument()
    first = ptr.swap(pointer.promote(ptr.read(), A), expected_revision=0)
    assert ptr.read() == first
    stale = PointerDocument()  # a second writer that read before the first one wrote
    with pytest.raises(ConflictError, match="revision 1"):
        ptr.swap(pointer.promote(stale, B), expected_revision=stale.revision)
    assert ptr.read().dna == A.dna


def test_a_garbled_pointer_file_is_reported_with_its_path(store: Store) -> None:
    (store.root / "CURRENT").write_text("garbage")
    with pytest.raises(Exception, match="CURRENT: not a valid pointer document"):
        FilePointer(store.root).read()
