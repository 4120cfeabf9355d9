"""Gather → decide → act for both kinds. No Kopf here: the glue in handlers.py calls these.

Each reconcile reads a snapshot (API objects, the models volume), asks the pure decisions for a
plan, then writes: objects to create, one compare-and-swap of the pointer, one status patch --
and only what changed, so a quiet system makes no API writes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from certmodel.operator import metrics, serving
from certmodel.operator.api.certifiedmodel import CertifiedModelSpec, CertifiedModelStatus
from certmodel.operator.api.modeltraining import ModelTrainingSpec, ModelTrainingStatus
from certmodel.operator.decisions import manifests
from certmodel.operator.decisions.line import (
    LinePlan,
    LineSnapshot,
    PointerState,
    VersionFacts,
    decide_line,
    pointer_name,
)
from certmodel.operator.decisions.training import (
    JobFacts,
    PodFacts,
    TrainingPlan,
    TrainingSnapshot,
    decide_training,
    job_name,
)
from certmodel.operator.kube import Kube
from certmodel.operator.volume import ModelsVolume
from certmodel.runtime import faults
from certmodel.runtime.errors import CertmodelError
from certmodel.runtime.format.pointer import POINTER_KEY, PointerDocument

log = logging.getLogger(__name__)
TRAININGS, LINES = "modeltrainings", "certifiedmodels"


class ConflictRetry(Exception):  # noqa: N818 -- reads as what the caller should do
    """Another writer moved the pointer first; reconcile again from a fresh read."""


@dataclass(frozen=True)
class Resolved:
    """A ModelTraining spec turned into the trainer's config and the version's DNA."""

    dna: str | None
    config_json: str
    error: tuple[str, str] | None = None


class Resolver(Protocol):
    def __call__(self, spec: ModelTrainingSpec) -> Resolved: ...


@dataclass
class Context:
    kube: Kube
    volume: ModelsVolume
    config: manifests.OperatorConfig
    resolve: Resolver
    poll_pod: Callable[[dict[str, Any]], serving.PodReport] = serving.poll_pod


_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_phases: dict[tuple[str, str], str] = {}


@contextmanager
def _locked(kind: str, namespace: str, name: str) -> Iterator[None]:
    """One reconcile per object at a time in this process (Kopf timers and change handlers
    run concurrently); other replicas are kept out by peering and by compare-and-swap."""
    with _locks[(kind, namespace, name)]:
        yield


@contextmanager
def _measured(kind: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except Exception:
        metrics.RECONCILES.labels(kind, "error").inc()
        raise
    else:
        metrics.RECONCILES.labels(kind, "ok").inc()
    finally:
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)


# -- ModelTraining ----------------------------------------------------------------------------
def reconcile_training(ctx: Context, namespace: str, name: str) -> TrainingPlan | None:
    with _locked(TRAININGS, namespace, name), _measured("ModelTraining"):
        body = ctx.kube.get_custom(TRAININGS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            _phases.pop((namespace, name), None)
            return None
        snap, plan, resolved = _plan_training(ctx, body)
        _act_training(ctx, body, snap, plan, resolved)
    if plan.line_changed:
        reconcile_line(ctx, namespace, body["spec"]["certifiedModel"])
    return plan


def _plan_training(
    ctx: Context, body: dict[str, Any]
) -> tuple[TrainingSnapshot, TrainingPlan, Resolved]:
    meta = body["metadata"]
    old = ModelTrainingStatus.model_validate(body.get("status") or {})
    spec = ModelTrainingSpec.model_validate(body["spec"])
    resolved = ctx.resolve(spec)
    dna = resolved.dna or old.dna
    job = ctx.kube.get_job(meta["namespace"], job_name(dna)) if dna else None
    pods = ctx.kube.list_pods(meta["namespace"], f"certmodel.io/dna={dna}") if job else []
    metrics_, digest = ctx.volume.metrics(dna) if dna else (None, None)
    facts = [_pod_facts(p) for p in sorted(pods, key=_created)]
    if metrics_ is None and facts:
        result = result_from_message(facts[-1].message)  # the trainer's termination message
        metrics_ = result.get("metrics") if result else None
    snap = TrainingSnapshot(
        name=meta["name"],
        generation=meta.get("generation", 1),
        spec=spec,
        old_status=old,
        dna=dna,
        input_error=resolved.error,
        version_exists=bool(dna) and ctx.volume.exists(dna or ""),
        version_metrics=metrics_,
        content_digest=digest,
        job=_job_facts(job) if job else None,
        pods=facts,
        progress=ctx.volume.progress(dna) if dna else None,
        now=datetime.now(UTC),
    )
    return snap, decide_training(snap), resolved


def _act_training(
    ctx: Context,
    body: dict[str, Any],
    snap: TrainingSnapshot,
    plan: TrainingPlan,
    resolved: Resolved,
) -> None:
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec, old = snap.spec, snap.old_status
    dna = plan.status.dna
    if plan.create_job and dna:
        ctx.kube.ensure_config_map(
            manifests.training_config_map(
                name=name,
                uid=uid,
                namespace=ns,
                dna=dna,
                model=spec.certified_model,
                config_json=resolved.config_json,
            )
        )
        created = ctx.kube.ensure_job(
            manifests.training_job(
                name=name, uid=uid, namespace=ns, dna=dna, spec=spec, config=ctx.config
            )
        )
        log.info("%s/%s: %s Job %s", ns, name, "created" if created else "adopted", job_name(dna))
        faults.point("operator.job-created")  # the fault tests crash here: Job made, no status
    if plan.status != old:
        ctx.kube.patch_status(TRAININGS, ns, name, _status_patch(plan.status, old))
    for event in plan.events:
        ctx.kube.emit(body, event)
    _phases[(ns, name)] = plan.status.phase
    _record_phase_metrics(plan, old)


def _record_phase_metrics(plan: TrainingPlan, old: ModelTrainingStatus) -> None:
    for phase in ("Pending", "Running", "Succeeded", "Failed"):
        metrics.TRAININGS.labels(phase).set(sum(1 for p in _phases.values() if p == phase))
    st = plan.status
    if (
        st.phase == "Succeeded"
        and old.phase != "Succeeded"
        and st.start_time
        and st.completion_time
    ):
        metrics.TRAINING_SECONDS.observe((st.completion_time - st.start_time).total_seconds())


# -- CertifiedModel ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Observed:
    """What a caller with a watch cache (Kopf's indexes) already knows, so a reconcile at
    steady state costs no API request. Stale data is safe: the pointer write is a
    compare-and-swap, and a status patch carries only what was decided from it."""

    body: dict[str, Any]
    config_map: dict[str, Any] | None
    pods: list[dict[str, Any]]
    trainings: list[TrainingRef]


@dataclass(frozen=True)
class TrainingRef:
    """A succeeded ModelTraining of a line, as the line needs to know it."""

    name: str
    dna: str
    promote: bool


def training_ref(mt: dict[str, Any]) -> TrainingRef | None:
    status = mt.get("status") or {}
    if status.get("phase") != "Succeeded" or not status.get("dna"):
        return None
    return TrainingRef(mt["metadata"]["name"], status["dna"], bool(mt["spec"].get("promote")))


def reconcile_line(
    ctx: Context, namespace: str, name: str, *, observed: Observed | None = None
) -> LinePlan | None:
    with _locked(LINES, namespace, name), _measured("CertifiedModel"):
        body = observed.body if observed else ctx.kube.get_custom(LINES, namespace, name)
        if body is None:
            return None
        spec = CertifiedModelSpec.model_validate(body["spec"])
        cm_name = pointer_name(name, spec)
        if observed is not None:
            cm, pods, trainings = observed.config_map, observed.pods, observed.trainings
        else:
            cm = ctx.kube.read_config_map(namespace, cm_name)
            pods = ctx.kube.list_pods(namespace, serving.selector(name, spec))
            trainings = [
                ref
                for mt in ctx.kube.list_custom(TRAININGS, namespace)
                if mt["spec"].get("certifiedModel") == name and (ref := training_ref(mt))
            ]
        snap = LineSnapshot(
            name=name,
            generation=body["metadata"].get("generation", 1),
            spec=spec,
            old_status=CertifiedModelStatus.model_validate(body.get("status") or {}),
            versions=_line_versions(ctx, spec, trainings, cm),
            pointer=_pointer_state(cm),
            serving=serving.serving_pods(pods, ctx.poll_pod),
            now=datetime.now(UTC),
        )
        plan = decide_line(snap)
        if plan.pointer is not None:
            obj = manifests.pointer_config_map(
                name=cm_name,
                namespace=namespace,
                line=name,
                uid=body["metadata"]["uid"],
                document=plan.pointer,
            )
            rv = cm["metadata"]["resourceVersion"] if cm else None
            if not ctx.kube.swap_config_map(obj, rv):
                raise ConflictRetry(f"pointer ConfigMap {namespace}/{cm_name} changed meanwhile")
            faults.point("operator.pointer-written")  # fault tests: moved, status not yet
            reason = plan.pointer.history[-1].reason if plan.pointer.history else "promote"
            metrics.POINTER_MOVES.labels(reason).inc()
        if plan.status != snap.old_status:
            ctx.kube.patch_status(
                LINES, namespace, name, _status_patch(plan.status, snap.old_status)
            )
        for event in plan.events:
            if event.type == "Warning" and event.reason.startswith("Target"):
                metrics.REFUSALS.labels(event.reason).inc()
            ctx.kube.emit(body, event)
        return plan


def _line_versions(
    ctx: Context,
    spec: CertifiedModelSpec,
    trainings: list[TrainingRef],
    cm: dict[str, Any] | None,
) -> list[VersionFacts]:
    """The line's versions: those its ModelTrainings produced, the one spec names, and those
    the pointer has served (so a version stays listed after its ModelTraining is deleted)."""
    wanted: dict[str, tuple[str | None, bool]] = {t.dna: (t.name, t.promote) for t in trainings}
    doc = _pointer_state(cm).document
    if doc is not None:
        for target in [*doc.previous, *([doc.target] if doc.target else [])]:
            wanted.setdefault(target.dna, (None, False))
    if spec.promotion.current:
        wanted.setdefault(spec.promotion.current, (None, False))
    facts = [
        ctx.volume.facts(dna, training=t, promote_requested=p) for dna, (t, p) in wanted.items()
    ]
    return sorted(facts, key=lambda f: (f.created or datetime.min.replace(tzinfo=UTC), f.dna))


def _pointer_state(cm: dict[str, Any] | None) -> PointerState:
    if cm is None:
        return PointerState(exists=False)
    text = (cm.get("data") or {}).get(POINTER_KEY)
    if text is None:
        return PointerState(exists=True, error=f"key {POINTER_KEY} missing")
    try:
        return PointerState(exists=True, document=PointerDocument.parse(text, source="ConfigMap"))
    except CertmodelError as exc:
        return PointerState(exists=True, error=str(exc)[:200])


# -- shared -----------------------------------------------------------------------------------
def _status_patch(new: Any, old: Any) -> dict[str, Any]:
    """A merge patch from ``old`` to ``new``: changed keys, and None for keys that went away."""
    new_wire: dict[str, Any] = new.wire()
    old_wire: dict[str, Any] = old.wire()
    patch = {k: v for k, v in new_wire.items() if old_wire.get(k) != v}
    patch.update({k: None for k in old_wire if k not in new_wire})
    return patch


def _job_facts(job: dict[str, Any]) -> JobFacts:
    status = job.get("status") or {}
    final = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        ),
        None,
    )
    return JobFacts(
        name=job["metadata"]["name"],
        active=status.get("active") or 0,
        succeeded=status.get("succeeded") or 0,
        failed=status.get("failed") or 0,
        condition=final["type"] if final else None,
        condition_reason=final.get("reason") if final else None,
        condition_message=final.get("message") if final else None,
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime")),
    )


def _pod_facts(pod: dict[str, Any]) -> PodFacts:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    cs = next((c for c in statuses if c.get("name") == "train"), statuses[0] if statuses else {})
    state = cs.get("state") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    return PodFacts(
        name=pod["metadata"]["name"],
        phase=(pod.get("status") or {}).get("phase", "Unknown"),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated_reason=terminated.get("reason"),
        exit_code=terminated.get("exitCode"),
        message=terminated.get("message"),
    )


def _created(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def result_from_message(message: str | None) -> dict[str, Any] | None:
    """The trainer's result JSON from a termination message, if it is one."""
    try:
        data = json.loads(message or "")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
