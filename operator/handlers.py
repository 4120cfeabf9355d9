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
from certmodel.operator.api.certifiedmodel import CertifiedModelSpec
from certmodel.operator.decisions.line import pointer_name
from certmodel.operator.decisions.manifests import MANAGED_BY
from certmodel.operator.reconcile import (
    LINES,
    TRAININGS,
    ConflictRetry,
    Context,
    Observed,
    TrainingRef,
    reconcile_line,
    reconcile_training,
    training_ref,
)
from certmodel.operator.serving import is_serving_pod

TRAINING_TICK_S = 2.0
LINE_TICK_S = 10.0


def _ctx(memo: Any) -> Context:
    ctx: Context = memo.ctx
    return ctx


def _training(memo: Any, namespace: str, name: str) -> None:
    reconcile_training(_ctx(memo), namespace, name)


def _line(memo: Any, namespace: str, name: str, observed: Observed | None = None) -> None:
    try:
        reconcile_line(_ctx(memo), namespace, name, observed=observed)
    except ConflictRetry as exc:
        raise kopf.TemporaryError(str(exc), delay=1) from exc


# -- indexes: the watch caches that make a steady-state reconcile free of API requests -------
# They are coroutines on purpose: Kopf runs plain functions on the worker threads, where an
# index update would queue behind a burst of reconciles and go stale (measured at 1000 lines).
@kopf.index(GROUP, VERSION, LINES)
async def lines_by_name(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): dict(body)}


@kopf.index(GROUP, VERSION, TRAININGS)
async def trainings_by_line(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], TrainingRef] | None:
    ref = training_ref(dict(body))
    line = body.get("spec", {}).get("certifiedModel")
    return {(namespace, line): ref} if ref and line else None


@kopf.index(
    "",
    "v1",
    "configmaps",
    labels={"app.kubernetes.io/component": "pointer", "app.kubernetes.io/managed-by": MANAGED_BY},
)
async def pointers_by_name(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): dict(body)}


@kopf.index("", "v1", "pods", labels={"certmodel.io/model": kopf.PRESENT})
async def pods_by_line(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]] | None:
    if labels.get("app.kubernetes.io/component") == "training":
        return None
    return {(namespace, labels["certmodel.io/model"]): dict(body)}


def _observed(
    body: Mapping[str, Any] | None, namespace: str, name: str, indexes: dict[str, Any]
) -> Observed | None:
    """A line's snapshot from Kopf's indexes (passed to handlers by the index names); the
    line itself from ``body`` or, for events on other objects, from its own index."""
    if body is None:
        known = list(indexes["lines_by_name"].get((namespace, name), []))
        if not known:
            return None
        body = known[0]
    trainings_by_line: kopf.Index[Any, Any] = indexes["trainings_by_line"]
    pointers_by_name: kopf.Index[Any, Any] = indexes["pointers_by_name"]
    pods_by_line: kopf.Index[Any, Any] = indexes["pods_by_line"]
    raw = dict(body)
    spec = CertifiedModelSpec.model_validate(raw.get("spec") or {})
    cms = list(pointers_by_name.get((namespace, pointer_name(name, spec)), []))
    pods = [
        p
        for p in pods_by_line.get((namespace, name), [])
        if is_serving_pod((p.get("metadata") or {}).get("labels") or {}, name, spec)
    ]
    return Observed(
        body=raw,
        config_map=cms[0] if cms else None,
        pods=pods,
        trainings=list(trainings_by_line.get((namespace, name), [])),
    )


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
def line_changed(
    *, name: str, namespace: str | None, memo: Any, body: kopf.Body, **indexes: Any
) -> None:
    ns = namespace or "default"
    _line(memo, ns, name, _observed(body, ns, name, indexes))


@kopf.timer(GROUP, VERSION, LINES, interval=LINE_TICK_S, initial_delay=LINE_TICK_S)
def line_tick(
    *, name: str, namespace: str | None, memo: Any, body: kopf.Body, **indexes: Any
) -> None:
    ns = namespace or "default"
    _line(memo, ns, name, _observed(body, ns, name, indexes))


@kopf.on.event(
    "",
    "v1",
    "configmaps",
    labels={"app.kubernetes.io/component": "pointer", "app.kubernetes.io/managed-by": MANAGED_BY},
)
def pointer_event(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, **indexes: Any
) -> None:
    """A pointer ConfigMap changed or vanished: restore it if someone else did it."""
    if line := labels.get("certmodel.io/model"):
        ns = namespace or "default"
        _line(memo, ns, line, _observed(None, ns, line, indexes))


@kopf.on.event("", "v1", "pods", labels={"certmodel.io/model": kopf.PRESENT})
def pod_event(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, **indexes: Any
) -> None:
    ns = namespace or "default"
    if labels.get("app.kubernetes.io/component") == "training":
        if training := labels.get("certmodel.io/training"):
            _training(memo, ns, training)
    else:
        line = labels["certmodel.io/model"]
        _line(memo, ns, line, _observed(None, ns, line, indexes))


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
