"""Kopf glue: which events trigger which reconcile. No decisions and no API calls here.

Change handlers react at once; timers catch what no event announces (progress written to the
volume, a pod's HTTP status); event handlers on Jobs, Pods and pointer ConfigMaps route a
change to the object that owns it. Every path ends in reconcile.py, which is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from certmodel.operator.api import GROUP, VERSION
from certmodel.operator.decisions.manifests import MANAGED_BY
from certmodel.operator.reconcile import (
    LINES,
    TRAININGS,
    ConflictRetry,
    Context,
    reconcile_line,
    reconcile_training,
)

TRAINING_TICK_S = 2.0
LINE_TICK_S = 10.0


def _ctx(memo: Any) -> Context:
    ctx: Context = memo.ctx
    return ctx


def _training(memo: Any, namespace: str, name: str) -> None:
    reconcile_training(_ctx(memo), namespace, name)


def _line(memo: Any, namespace: str, name: str) -> None:
    try:
        reconcile_line(_ctx(memo), namespace, name)
    except ConflictRetry as exc:
        raise kopf.TemporaryError(str(exc), delay=1) from exc


# -- ModelTraining ----------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, TRAININGS)
@kopf.on.create(GROUP, VERSION, TRAININGS)
@kopf.on.update(GROUP, VERSION, TRAININGS, field="spec")
def training_changed(*, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _training(memo, namespace or "default", name)


def _training_active(status: Any, **_: Any) -> bool:
    phase = status.get("phase")
    # Failed before any Job (inputs missing) is re-checked: the user may upload the data.
    return phase not in ("Succeeded", "Failed") or (phase == "Failed" and not status.get("jobName"))


@kopf.timer(GROUP, VERSION, TRAININGS, interval=TRAINING_TICK_S, when=_training_active)
def training_tick(*, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _training(memo, namespace or "default", name)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def job_event(*, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    if training := labels.get("certmodel.io/training"):
        _training(memo, namespace or "default", training)


# -- CertifiedModel ---------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, LINES)
@kopf.on.create(GROUP, VERSION, LINES)
@kopf.on.update(GROUP, VERSION, LINES, field="spec")
def line_changed(*, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _line(memo, namespace or "default", name)


@kopf.timer(GROUP, VERSION, LINES, interval=LINE_TICK_S, initial_delay=LINE_TICK_S)
def line_tick(*, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _line(memo, namespace or "default", name)


@kopf.on.event(
    "",
    "v1",
    "configmaps",
    labels={"app.kubernetes.io/component": "pointer", "app.kubernetes.io/managed-by": MANAGED_BY},
)
def pointer_event(*, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    """A pointer ConfigMap changed or vanished: restore it if someone else did it."""
    if line := labels.get("certmodel.io/model"):
        _line(memo, namespace or "default", line)


@kopf.on.event("", "v1", "pods", labels={"certmodel.io/model": kopf.PRESENT})
def pod_event(*, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    ns = namespace or "default"
    if labels.get("app.kubernetes.io/component") == "training":
        if training := labels.get("certmodel.io/training"):
            _training(memo, ns, training)
    else:
        _line(memo, ns, labels["certmodel.io/model"])


@kopf.on.delete(GROUP, VERSION, LINES)
def line_deleted(*, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """The finalizer: a line that pods still serve is not deleted under them."""
    from certmodel.operator.api.certifiedmodel import CertifiedModelSpec
    from certmodel.operator.serving import selector

    namespace = namespace or "default"
    body = _ctx(memo).kube.get_custom(LINES, namespace, name)
    spec = CertifiedModelSpec.model_validate((body or {}).get("spec") or {"baseModel": "x"})
    pods = _ctx(memo).kube.list_pods(namespace, selector(name, spec))
    live = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    if live:
        raise kopf.TemporaryError(
            f"CertifiedModel {name} is still served by {len(live)} pod(s) ({', '.join(live[:3])});"
            " scale the inference Deployment down first",
            delay=10,
        )
