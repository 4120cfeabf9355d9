"""Decisions for a CertifiedModel (a model line): where CURRENT should point, and its status.

Gather → decide → act: the handler gathers a :class:`LineSnapshot` (the spec, the versions the
line knows with their verification, the pointer ConfigMap's document, what serving pods report),
:func:`decide_line` returns a :class:`LinePlan`, and the I/O layer writes the pointer with a
compare-and-swap and patches the status once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from certmodel.operator.api.base import Condition, ConditionStatus
from certmodel.operator.api.certifiedmodel import (
    CertifiedModelSpec,
    CertifiedModelStatus,
    HistoryEntry,
    ServingStatus,
    VersionStatus,
)
from certmodel.operator.decisions.conditions import find, set_condition
from certmodel.runtime.format import pointer
from certmodel.runtime.format.pointer import PointerDocument, PointerTarget

STATUS_HISTORY = 20
REFUSAL_REASONS = frozenset({"TargetMissing", "TargetCorrupt", "TargetWrongBase", "TargetUnsigned"})


@dataclass(frozen=True)
class VersionFacts:
    """What the operator knows of one version of the line (manifest + verification)."""

    dna: str
    exists: bool
    verified: bool = False
    problem: str = ""
    base_model: str | None = None
    kind: Literal["adapter", "merged"] | None = None
    created: datetime | None = None
    eval_loss: float | None = None
    train_loss: float | None = None
    content_digest: str | None = None
    signed: bool | None = None
    training: str | None = None
    promote_requested: bool = False

    def target(self) -> PointerTarget:
        assert self.kind and self.base_model and self.content_digest
        return PointerTarget(
            dna=self.dna,
            path=f"certified/{self.dna}",
            kind=self.kind,
            base_model=self.base_model,
            content_digest=self.content_digest,
        )


@dataclass(frozen=True)
class PodServing:
    """One inference pod of the line, as its /v1/status reported (or failed to)."""

    name: str
    ready: bool
    dna: str | None
    refused: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class PointerState:
    """The pointer ConfigMap as read: absent, unreadable, or a document."""

    exists: bool
    document: PointerDocument | None = None
    error: str = ""


@dataclass(frozen=True)
class LineSnapshot:
    name: str
    generation: int
    spec: CertifiedModelSpec
    old_status: CertifiedModelStatus
    versions: Sequence[VersionFacts]
    pointer: PointerState
    serving: Sequence[PodServing]
    now: datetime


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class LinePlan:
    pointer: PointerDocument | None
    """The document to write (compare-and-swap against what was read), or None: no write."""
    status: CertifiedModelStatus
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class _Choice:
    dna: str | None
    refusal: tuple[str, str] | None = None  # (reason, message)
    facts: VersionFacts | None = None


def pointer_name(name: str, spec: CertifiedModelSpec) -> str:
    return spec.pointer_config_map or f"{name}-pointer"


def choose_target(spec: CertifiedModelSpec, versions: Sequence[VersionFacts]) -> _Choice:
    """The version spec asks for, or why it cannot be served."""
    by_dna = {v.dna: v for v in versions}
    if spec.promotion.policy == "Latest":
        gates = spec.promotion.gates
        candidates = [
            v
            for v in versions
            if v.promote_requested
            and v.verified
            and v.base_model == spec.base_model
            and (
                gates.max_eval_loss is None
                or (v.eval_loss is not None and v.eval_loss <= gates.max_eval_loss)
            )
            and (not gates.require_signature or v.signed)
        ]
        if not candidates:
            return _Choice(None)
        best = max(candidates, key=lambda v: (v.created or datetime.min, v.dna))
        return _Choice(best.dna, facts=best)
    dna = spec.promotion.current
    if dna is None:
        return _Choice(None)
    facts = by_dna.get(dna)
    if facts is None or not facts.exists:
        return _Choice(dna, ("TargetMissing", f"version {dna} does not exist on the models volume"))
    if not facts.verified:
        return _Choice(
            dna, ("TargetCorrupt", f"version {dna} failed verification: {facts.problem}")
        )
    if facts.base_model != spec.base_model:
        return _Choice(
            dna,
            (
                "TargetWrongBase",
                f"version {dna} is built on base model {facts.base_model!r},"
                f" this line serves {spec.base_model!r}",
            ),
        )
    if spec.promotion.gates.require_signature and not facts.signed:
        return _Choice(dna, ("TargetUnsigned", f"version {dna} has no valid signature"))
    return _Choice(dna, facts=facts)


def next_document(
    current: PointerDocument, target: PointerTarget, *, now: datetime, by: str
) -> PointerDocument:
    """Move ``current`` to ``target``: a rollback when it is the previous target, else a promote.

    Going back to the version that was live just before keeps the previous-stack tidy, so the
    history reads ``rollback`` when a user sets spec.promotion.current back.
    """
    if current.previous and current.previous[-1] == target:
        return pointer.rollback(current, by=by, now=now)
    return pointer.promote(current, target, by=by, now=now, allow_base_change=True)


def decide_line(snap: LineSnapshot) -> LinePlan:
    """Where CURRENT should point, whether to write it, and the line's status."""
    spec, now = snap.spec, snap.now
    events: list[Event] = []
    doc = snap.pointer.document if snap.pointer.document is not None else PointerDocument()
    if snap.pointer.error:
        # Hand-edited into something unreadable: start a new document above the last revision.
        doc = PointerDocument(revision=max(doc.revision, snap.old_status.revision or 0))
    choice = choose_target(spec, snap.versions)
    new_doc: PointerDocument | None = None
    if choice.facts is not None and choice.refusal is None:
        target = choice.facts.target()
        if doc.target != target or snap.pointer.error or not snap.pointer.exists:
            new_doc = next_document(doc, target, now=now, by="certmodel-operator")
            if new_doc == doc:  # unreadable or missing ConfigMap holding the same target
                new_doc = doc.model_copy(update={"revision": doc.revision + 1})
            events.append(_move_event(doc, new_doc, snap.pointer))
    live = new_doc or doc
    status = _status(snap, live, choice)
    if choice.refusal and _reason(snap.old_status) != choice.refusal[0]:
        events.append(Event("Warning", choice.refusal[0], _refusal_message(choice, live)))
    return LinePlan(pointer=new_doc, status=status, events=events)


def _move_event(old: PointerDocument, new: PointerDocument, state: PointerState) -> Event:
    if state.error or (state.exists and old.target is None and state.document is None):
        return Event(
            "Warning",
            "PointerRestored",
            f"pointer ConfigMap was unreadable ({state.error}); restored to {new.dna}",
        )
    last = new.history[-1] if new.history else None
    verb = "RolledBack" if last and last.reason == "rollback" else "Promoted"
    return Event(
        "Normal",
        verb,
        f"CURRENT moved from {old.dna or 'nothing'} to {new.dna} (revision {new.revision})",
    )


def _refusal_message(choice: _Choice, live: PointerDocument) -> str:
    assert choice.refusal
    keep = f"keeping CURRENT at {live.dna}" if live.dna else "CURRENT stays unset"
    return f"{choice.refusal[1]}; {keep}"


def _reason(status: CertifiedModelStatus) -> str:
    ready = find(status.conditions, "Ready")
    return ready.reason if ready else ""


class _Cond(NamedTuple):
    status: ConditionStatus
    reason: str
    message: str


def _status(snap: LineSnapshot, live: PointerDocument, choice: _Choice) -> CertifiedModelStatus:
    gen, now = snap.generation, snap.now
    serving = _serving(snap.serving, live.dna)
    in_place = choice.refusal is None and choice.dna is not None and live.dna == choice.dna
    if choice.refusal:
        synced = _Cond("False", choice.refusal[0], _refusal_message(choice, live))
    elif choice.dna is None:
        why = (
            "no version passes the promotion gates yet"
            if snap.spec.promotion.policy == "Latest"
            else "spec.promotion.current is not set"
        )
        synced = _Cond("False", "NoTarget", why)
    else:
        synced = _Cond("True", "PointerSynced", f"CURRENT is {live.dna} (revision {live.revision})")
    counts = f"{serving.on_current}/{serving.pods} serving pods on {live.dna}"
    if serving.converged:
        conv = _Cond("True", "Converged", counts)
    else:
        refused = f"; refused: {', '.join(serving.refused)}" if serving.refused else ""
        conv = _Cond("False", "Converging", counts + refused)
    if in_place and serving.converged:
        ready = _Cond("True", "Ready", f"serving {live.dna}")
    elif synced.status == "False":
        ready = _Cond("False", synced.reason, synced.message)
    else:
        ready = _Cond("False", conv.reason, conv.message)
    conditions = list(snap.old_status.conditions)
    for kind, cond in (("PointerSynced", synced), ("ServingConverged", conv), ("Ready", ready)):
        conditions = set_condition(
            conditions,
            type=kind,
            status=cond.status,
            reason=cond.reason,
            message=cond.message,
            generation=gen,
            now=now,
        )
    return CertifiedModelStatus(
        current=live.dna,
        previous=live.previous[-1].dna if live.previous else None,
        revision=live.revision,
        pointer_config_map=pointer_name(snap.name, snap.spec),
        versions=[_version_status(v) for v in snap.versions],
        version_count=sum(1 for v in snap.versions if v.exists),
        history=[
            HistoryEntry(
                revision=m.revision, from_dna=m.from_dna, to_dna=m.to_dna, reason=m.reason, at=m.at
            )
            for m in live.history[-STATUS_HISTORY:]
        ],
        serving=serving,
        message=ready.message,
        observed_generation=gen,
        conditions=conditions,
    )


def _serving(pods: Sequence[PodServing], dna: str | None) -> ServingStatus:
    ready = [p for p in pods if p.ready]
    on_current = [p for p in ready if p.dna == dna]
    refused = [f"{p.name}: {r}" for p in pods for r in p.refused]
    return ServingStatus(
        pods=len(ready),
        on_current=len(on_current),
        converged=len(on_current) == len(ready),
        refused=refused[:10],
    )


def _version_status(v: VersionFacts) -> VersionStatus:
    return VersionStatus(
        dna=v.dna,
        created=v.created,
        kind=v.kind,
        eval_loss=v.eval_loss,
        train_loss=v.train_loss,
        content_digest=v.content_digest,
        verified=v.verified,
        signed=v.signed,
        training=v.training,
        promote_requested=v.promote_requested or None,
    )


def ready_condition(status: CertifiedModelStatus) -> Condition | None:
    return find(status.conditions, "Ready")
