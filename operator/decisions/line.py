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
NO_PUBLIC_KEY = "no public key configured for signature checks (operator flag --public-key)"


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
    """True only for a signature verified with the operator's public key; None: not checked."""
    signature_problem: str = ""
    """Why ``signed`` is not True: missing, invalid (what failed), or why it was not checked."""
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
        candidates = [v for v in versions if _passes_gates(v, spec, signature=True)]
        if not candidates:
            return _unsigned_latest(spec, versions)
        best = max(candidates, key=_newest)
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
        return _Choice(dna, _unsigned(facts))
    return _Choice(dna, facts=facts)


def _passes_gates(v: VersionFacts, spec: CertifiedModelSpec, *, signature: bool) -> bool:
    """May the Latest policy promote ``v``? (``signature=False``: all gates but that one.)"""
    gates = spec.promotion.gates
    return (
        v.promote_requested
        and v.verified
        and v.base_model == spec.base_model
        and (
            gates.max_eval_loss is None
            or (v.eval_loss is not None and v.eval_loss <= gates.max_eval_loss)
        )
        and (not signature or not gates.require_signature or bool(v.signed))
    )


def _newest(v: VersionFacts) -> tuple[datetime, str]:
    return (v.created or datetime.min, v.dna)


def _unsigned(facts: VersionFacts) -> tuple[str, str]:
    why = facts.signature_problem or NO_PUBLIC_KEY
    return "TargetUnsigned", f"version {facts.dna} has no valid signature: {why}"


def _unsigned_latest(spec: CertifiedModelSpec, versions: Sequence[VersionFacts]) -> _Choice:
    """Latest found nothing: when the signature gate alone holds back the newest version that
    would pass, say so (a refusal), rather than wait silently for a version that may never
    come; otherwise there is simply no target yet."""
    if not spec.promotion.gates.require_signature:
        return _Choice(None)
    held = [v for v in versions if _passes_gates(v, spec, signature=False)]
    if not held:
        return _Choice(None)
    newest = max(held, key=_newest)
    return _Choice(newest.dna, _unsigned(newest))


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
        bogus = _bogus_target(doc, snap.versions)
        if bogus:
            new_doc = _restore(doc, target, now=now)
            events.append(
                Event(
                    "Warning",
                    "PointerRestored",
                    f"pointer ConfigMap named {doc.dna}, which this line cannot serve ({bogus});"
                    f" restored CURRENT to {target.dna} (revision {new_doc.revision})",
                )
            )
        elif doc.target != target or snap.pointer.error or not snap.pointer.exists:
            new_doc = next_document(doc, target, now=now, by="certmodel-operator")
            if new_doc == doc:  # unreadable or missing ConfigMap holding the same target
                new_doc = doc.model_copy(update={"revision": doc.revision + 1})
            events.append(_move_event(doc, new_doc, snap.pointer))
    elif doc.dna != snap.old_status.current and (bogus := _bogus_target(doc, snap.versions)):
        # A hand edit (not a version the operator wrote and then lost: that one is kept, as
        # every refusal keeps CURRENT), and the spec's own target cannot be served either: go
        # back to the last good version the pointer held, or at least say the pointer is wrong.
        fallback = _last_good(doc, snap.versions)
        if fallback is not None:
            new_doc = _restore(doc, fallback, now=now)
            events.append(
                Event(
                    "Warning",
                    "PointerRestored",
                    f"pointer ConfigMap named {doc.dna}, which this line cannot serve ({bogus});"
                    f" restored CURRENT to {fallback.dna}, the last good version it held"
                    f" (revision {new_doc.revision})",
                )
            )
        else:
            events.append(
                Event(
                    "Warning",
                    "PointerInvalid",
                    f"pointer ConfigMap names {doc.dna}, which this line cannot serve ({bogus}),"
                    " and there is no valid version to restore it to",
                )
            )
    live = new_doc or doc
    status = _status(snap, live, choice)
    if choice.refusal and _reason(snap.old_status) != choice.refusal[0]:
        events.append(Event("Warning", choice.refusal[0], _refusal_message(choice, live)))
    return LinePlan(pointer=new_doc, status=status, events=events)


def _bogus_target(doc: PointerDocument, versions: Sequence[VersionFacts]) -> str:
    """Why the pointer's target is nothing the operator would have written, or "": a version
    that does not exist, or target fields that are not its manifest's. Only a hand edit of the
    ConfigMap (or a version deleted under it) gets there."""
    if doc.target is None:
        return ""
    dna = doc.target.dna
    facts = next((v for v in versions if v.dna == dna), None)
    if facts is None or not facts.exists:
        return f"version {dna} does not exist on the models volume"
    if facts.kind and facts.base_model and facts.content_digest and facts.target() != doc.target:
        return f"its path, kind, base model or digest differ from version {dna}'s manifest"
    return ""


def _last_good(doc: PointerDocument, versions: Sequence[VersionFacts]) -> PointerTarget | None:
    """The newest target of the pointer's previous stack that is still a verified version."""
    by_dna = {v.dna: v for v in versions}
    for target in reversed(doc.previous):
        facts = by_dna.get(target.dna)
        usable = facts and facts.exists and facts.verified and facts.content_digest
        if usable and facts and facts.target() == target:
            return target
    return None


def _restore(doc: PointerDocument, target: PointerTarget, *, now: datetime) -> PointerDocument:
    """Move off a bogus target: it is not kept as 'previous' (a rollback must never return to
    it), and the history still says where CURRENT was moved from."""
    moved = next_document(
        doc.model_copy(update={"target": None}), target, now=now, by="certmodel-operator"
    )
    last = moved.history[-1].model_copy(update={"from_dna": doc.dna})
    return moved.model_copy(update={"history": [*moved.history[:-1], last]})


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


CANARY_CONDITION = "CanaryApplied"


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
    conditions = [c for c in snap.old_status.conditions if c.type != CANARY_CONDITION]
    if snap.spec.canary is not None:
        # Accepted by the schema for forward compatibility; say plainly that nothing splits
        # traffic yet rather than let a user believe a canary is live.
        conditions = set_condition(
            conditions,
            type=CANARY_CONDITION,
            status="False",
            reason="NotImplemented",
            message=f"spec.canary ({snap.spec.canary.dna}, {snap.spec.canary.percent}%) is not"
            " implemented yet: every request is served by CURRENT",
            generation=gen,
            now=now,
        )
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
