"""Pure functions of the console: CR dicts in, the page model and the patches out.

Nothing here talks to Kubernetes or reads files: the handlers in app.py fetch the objects,
these functions decide what the page shows and what a button writes, and app.py applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from certmodel.operator.api.certifiedmodel import CertifiedModelStatus
from certmodel.operator.api.modeltraining import ModelTrainingStatus
from certmodel.operator.decisions.conditions import find
from certmodel.runtime.format.dna import is_dna

FIELD_MANAGER = "certmodel-console"
"""The field manager of the console's spec patches (visible in managedFields)."""
CHANGED_BY = "certmodel.io/console-changed-by"
"""Annotation recording who last moved CURRENT through the console, and to what."""
ACTIVE_PHASES = ("Pending", "Running")


class ConsoleError(Exception):
    """A refusal the API answers with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _status(body: Mapping[str, Any], model: Any) -> Any:
    """The typed status (tolerant: unknown or malformed fields must not break the page)."""
    try:
        return model.model_validate(body.get("status") or {})
    except ValidationError:
        return model()


def line_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """One model line as the page shows it: pointer, readiness, serving and its versions."""
    meta = body.get("metadata") or {}
    raw_spec = body.get("spec") or {}
    promotion = raw_spec.get("promotion") or {}
    status: CertifiedModelStatus = _status(body, CertifiedModelStatus)
    ready = find(status.conditions, "Ready")
    versions = sorted(
        status.versions,
        key=lambda v: (v.created.timestamp() if v.created else 0.0, v.dna),
        reverse=True,
    )
    serving = status.serving
    generation = meta.get("generation")
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "baseModel": raw_spec.get("baseModel", ""),
        "policy": promotion.get("policy", "Manual"),
        "specCurrent": promotion.get("current"),
        "current": status.current,
        "previous": status.previous,
        "revision": status.revision,
        "pointerConfigMap": status.pointer_config_map,
        "message": status.message,
        "reconciled": generation is not None and status.observed_generation == generation,
        "ready": {
            "status": ready.status if ready else "Unknown",
            "reason": ready.reason if ready else "",
            "message": ready.message if ready else "not reconciled yet",
        },
        "serving": {
            "pods": serving.pods if serving else 0,
            "onCurrent": serving.on_current if serving else 0,
            "converged": serving.converged if serving else False,
            "refused": list(serving.refused) if serving else [],
        },
        "canRollback": rollback_blocker(body, status) is None,
        "versions": [
            {
                "dna": v.dna,
                "created": _time(v.created),
                "kind": v.kind,
                "evalLoss": v.eval_loss,
                "trainLoss": v.train_loss,
                "contentDigest": v.content_digest,
                "verified": v.verified,
                "signed": v.signed,
                "training": v.training,
                "current": v.dna == status.current,
                "previous": v.dna == status.previous,
            }
            for v in versions
        ],
        "history": [
            {
                "revision": h.revision,
                "from": h.from_dna,
                "to": h.to_dna,
                "reason": h.reason,
                "at": _time(h.at),
            }
            for h in reversed(status.history[-5:])
        ],
    }


def eta_text(seconds: int | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def training_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """One training run with its live progress."""
    meta = body.get("metadata") or {}
    status: ModelTrainingStatus = _status(body, ModelTrainingStatus)
    progress = status.progress
    step = progress.step if progress else 0
    total = progress.total_steps if progress else 0
    if status.phase == "Succeeded" and total:
        step = total
    metrics = status.metrics
    return {
        "name": meta.get("name", ""),
        "line": (body.get("spec") or {}).get("certifiedModel", ""),
        "created": meta.get("creationTimestamp"),
        "phase": status.phase,
        "active": status.phase in ACTIVE_PHASES,
        "dna": status.dna,
        "deduplicated": bool(status.deduplicated),
        "step": step,
        "totalSteps": total,
        "percent": round(100 * step / total) if total else None,
        # Live loss while it runs; the final train loss once it is done.
        "loss": (progress.loss if progress else None)
        if progress and progress.loss is not None
        else (metrics.train_loss if metrics else None),
        "evalLoss": metrics.eval_loss if metrics else None,
        "etaSeconds": progress.eta_seconds if progress and status.phase == "Running" else None,
        "eta": eta_text(progress.eta_seconds) if progress and status.phase == "Running" else "",
        "message": status.message,
    }


def overview(
    namespace: str, lines: Iterable[Mapping[str, Any]], trainings: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The page model: lines by name; trainings running first, then newest first."""
    runs = [training_view(t) for t in trainings]
    runs.sort(key=lambda t: str(t["created"] or ""), reverse=True)
    runs.sort(key=lambda t: not t["active"])
    return {
        "namespace": namespace,
        "lines": sorted((line_view(b) for b in lines), key=lambda v: v["name"]),
        "trainings": runs,
    }


def _move(body: Mapping[str, Any], dna: str, user: str, action: str, now: datetime) -> Any:
    meta = body.get("metadata") or {}
    return {
        # The resourceVersion makes the patch a compare-and-swap: a line changed since it was
        # read answers 409, and the user decides again on fresh data.
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {CHANGED_BY: f"{user} {action} {dna} at {now.isoformat()}"},
        },
        "spec": {"promotion": {"policy": "Manual", "current": dna}},
    }


def set_current_patch(
    body: Mapping[str, Any], dna: Any, *, user: str, now: datetime
) -> dict[str, Any]:
    """The merge patch for "Set as CURRENT", or a ConsoleError saying why not."""
    name = (body.get("metadata") or {}).get("name", "")
    if not isinstance(dna, str) or not is_dna(dna):
        raise ConsoleError(400, f"{str(dna)[:80]!r} is not a DNA name")
    status: CertifiedModelStatus = _status(body, CertifiedModelStatus)
    version = next((v for v in status.versions if v.dna == dna), None)
    if version is None:
        raise ConsoleError(404, f"{dna} is not a version of model line {name}")
    if not version.verified:
        raise ConsoleError(409, f"{dna} failed verification; it cannot become CURRENT")
    patch: dict[str, Any] = _move(body, dna, user, "set CURRENT to", now)
    return patch


def rollback_blocker(body: Mapping[str, Any], status: CertifiedModelStatus) -> str | None:
    """Why "Roll back" cannot be done now, or None: what disables the button and, should the
    page be stale, what the request is refused with (409)."""
    meta = body.get("metadata") or {}
    name = meta.get("name", "")
    promotion = (body.get("spec") or {}).get("promotion") or {}
    pending = promotion.get("policy", "Manual") == "Manual" and promotion.get("current") not in (
        None,
        status.current,
    )
    if meta.get("generation") != status.observed_generation or pending:
        # Someone set a new CURRENT the operator has not applied yet (it may be verifying it):
        # a roll back now would silently replace that decision.
        return f"model line {name} has a change the operator has not applied yet; retry soon"
    if status.previous is None:
        return f"model line {name} has no previous version to roll back to"
    if not any(v.dna == status.previous and v.verified for v in status.versions):
        return f"the previous version {status.previous} is not verified"
    return None


def rollback_patch(
    body: Mapping[str, Any], *, expected_current: Any, user: str, now: datetime
) -> dict[str, Any]:
    """The merge patch for "Roll back": CURRENT back to status.previous.

    ``expected_current`` is the CURRENT the user saw; if the pointer moved since, the user
    would roll back from something else than they think, so that is refused (409)."""
    meta = body.get("metadata") or {}
    name = meta.get("name", "")
    status: CertifiedModelStatus = _status(body, CertifiedModelStatus)
    if expected_current != status.current:
        raise ConsoleError(
            409, f"CURRENT of {name} moved meanwhile (now {status.current}); reload and retry"
        )
    if blocker := rollback_blocker(body, status):
        raise ConsoleError(409, blocker)
    assert status.previous is not None  # rollback_blocker checked it
    patch: dict[str, Any] = _move(body, status.previous, user, "rolled back to", now)
    return patch


def download_target(body: Mapping[str, Any], dna: str) -> str:
    """The DNA to stream if it is a version of this line (its status lists it), else refuse."""
    name = (body.get("metadata") or {}).get("name", "")
    if not is_dna(dna):
        raise ConsoleError(400, f"{dna[:80]!r} is not a DNA name")
    status: CertifiedModelStatus = _status(body, CertifiedModelStatus)
    if all(v.dna != dna for v in status.versions):
        raise ConsoleError(404, f"{dna} is not a version of model line {name}")
    return dna
