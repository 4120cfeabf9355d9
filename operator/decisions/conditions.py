"""Kubernetes-style conditions: set one, keep its transition time while its status holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from certmodel.operator.api.base import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """``conditions`` with ``type`` replaced; lastTransitionTime moves only when status does."""
    old = next((c for c in conditions if c.type == type), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since,
    )
    return [*(c for c in conditions if c.type != type), new]


def find(conditions: Sequence[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)
