"""Decisions for a ModelTraining: what to create, and what its status says.

The snapshot holds what the handler gathered -- the DNA (or why it could not be computed),
whether the version already exists, the Job and its newest Pod, the progress file and the
result from the termination message -- and :func:`decide_training` returns the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from certmodel.operator.api.base import ConditionStatus
from certmodel.operator.api.modeltraining import (
    ModelTrainingSpec,
    ModelTrainingStatus,
    Phase,
    Progress,
    TrainingMetrics,
)
from certmodel.operator.decisions.conditions import set_condition
from certmodel.operator.decisions.line import Event

EXIT_BAD_INPUT = 2
"""The trainer's exit code for bad input (a user error, never retried: podFailurePolicy)."""


@dataclass(frozen=True)
class PodFacts:
    """The newest pod of the training Job."""

    name: str
    phase: str
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    exit_code: int | None = None
    message: str | None = None
    """The container's termination message (the trainer's result JSON, or its error line)."""


@dataclass(frozen=True)
class JobFacts:
    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    condition: Literal["Complete", "Failed"] | None = None
    condition_reason: str | None = None
    condition_message: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None


@dataclass(frozen=True)
class TrainingSnapshot:
    name: str
    generation: int
    spec: ModelTrainingSpec
    old_status: ModelTrainingStatus
    dna: str | None
    input_error: tuple[str, str] | None
    """(reason, message) when the inputs are not usable (base model or dataset missing)."""
    version_exists: bool
    version_metrics: dict[str, Any] | None
    content_digest: str | None
    job: JobFacts | None
    pods: Sequence[PodFacts]
    progress: dict[str, Any] | None
    now: datetime


@dataclass
class TrainingPlan:
    create_job: bool
    status: ModelTrainingStatus
    events: list[Event] = field(default_factory=list)
    line_changed: bool = False
    """The line should re-read its versions (a version appeared)."""


def job_name(dna: str) -> str:
    """Deterministic Job name: a second reconcile, or a second operator, creates nothing new."""
    return f"train-{dna}"


def decide_training(snap: TrainingSnapshot) -> TrainingPlan:
    """The plan for one ModelTraining, from what was observed."""
    old = snap.old_status
    if (
        old.phase in ("Succeeded",)
        and old.dna == snap.dna
        and old.observed_generation == snap.generation
    ):
        return TrainingPlan(False, old)  # terminal: nothing more to do
    if snap.input_error is not None and snap.job is None:
        reason, message = snap.input_error
        return _plan(snap, "Failed", reason, message, create=False, warn=True)
    assert snap.dna is not None
    if snap.version_exists and not old.job_name:
        # Published before this run asked for it (another ModelTraining with the same recipe,
        # or a migrated version): nothing to train, whatever Job trained it.
        return _deduplicated(snap)
    if snap.job is None:
        if snap.version_exists:
            return _deduplicated(snap)
        if old.phase == "Failed" and old.dna == snap.dna and old.job_name:
            return TrainingPlan(False, old)  # the Job failed and was cleaned up: stay failed
        return _plan(
            snap, "Pending", "JobCreated", f"created Job {job_name(snap.dna)}", create=True
        )
    return _follow(snap, snap.job)


def _deduplicated(snap: TrainingSnapshot) -> TrainingPlan:
    plan = _plan(
        snap,
        "Succeeded",
        "Deduplicated",
        f"version {snap.dna} already exists; nothing to train",
        create=False,
    )
    plan.status = plan.status.model_copy(
        update={
            "deduplicated": True,
            "job_name": None,
            "metrics": _metrics(snap.version_metrics),
            "content_digest": snap.content_digest,
            "completion_time": snap.old_status.completion_time or snap.now,
        }
    )
    plan.line_changed = True
    return plan


def _follow(snap: TrainingSnapshot, job: JobFacts) -> TrainingPlan:
    pod = snap.pods[-1] if snap.pods else None
    if job.condition == "Complete":
        if not snap.version_exists:
            return _plan(
                snap,
                "Failed",
                "VersionMissing",
                f"Job {job.name} succeeded but version {snap.dna} is not on the volume",
                create=False,
                warn=True,
            )
        plan = _plan(snap, "Succeeded", "Trained", f"trained version {snap.dna}", create=False)
        plan.status = plan.status.model_copy(
            update={
                "metrics": _metrics(snap.version_metrics),
                "content_digest": snap.content_digest,
                "progress": _done_progress(snap),
                "completion_time": job.completion_time or snap.now,
            }
        )
        plan.line_changed = True
        return plan
    if job.condition == "Failed":
        reason, message = _failure(snap, job, pod)
        return _plan(snap, "Failed", reason, message, create=False, warn=True)
    if pod is not None and pod.waiting_reason in (
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
    ):
        return _plan(
            snap,
            "Pending",
            pod.waiting_reason,
            f"cannot pull the training image: {pod.waiting_message or pod.waiting_reason}",
            create=False,
            warn=True,
        )
    progress = _progress(snap.progress) or snap.old_status.progress  # never go backwards
    if pod is not None and pod.phase == "Succeeded":
        plan = _plan(
            snap, "Running", "Finishing", "training finished; the Job is completing", create=False
        )
        plan.status = plan.status.model_copy(update={"progress": progress})
        return plan
    if job.active and pod is not None and pod.phase == "Running":
        plan = _plan(snap, "Running", "Training", _progress_message(progress), create=False)
        plan.status = plan.status.model_copy(update={"progress": progress})
        return plan
    retry = f" (retry {job.failed} of {snap.spec.retries})" if job.failed else ""
    return _plan(
        snap, "Pending", "Starting", f"waiting for the training pod to start{retry}", create=False
    )


def _failure(snap: TrainingSnapshot, job: JobFacts, pod: PodFacts | None) -> tuple[str, str]:
    if job.condition_reason == "DeadlineExceeded":
        return (
            "DeadlineExceeded",
            f"training exceeded its deadline of {snap.spec.deadline_seconds}s"
            " (spec.deadlineSeconds)",
        )
    if pod is not None and pod.terminated_reason == "OOMKilled":
        return (
            "OutOfMemory",
            f"the training container ran out of memory (limit {snap.spec.resources.memory});"
            " raise spec.resources.memory or lower batchSize / maxSeqLength",
        )
    if pod is not None and pod.exit_code == EXIT_BAD_INPUT:
        return "BadInput", f"bad input: {_first_line(pod.message) or 'see the pod log'}"
    detail = _first_line(pod.message) if pod else ""
    tail = f": {detail}" if detail else ""
    return (
        "JobFailed",
        f"Job {job.name} failed after {job.failed} attempt(s)"
        f" ({job.condition_reason or 'unknown reason'}){tail}",
    )


def _plan(
    snap: TrainingSnapshot,
    phase: Phase,
    reason: str,
    message: str,
    *,
    create: bool,
    warn: bool = False,
) -> TrainingPlan:
    old = snap.old_status
    ready: ConditionStatus = "True" if phase == "Succeeded" else "False"
    conditions = set_condition(
        old.conditions,
        type="Ready",
        status=ready,
        reason=reason,
        message=message,
        generation=snap.generation,
        now=snap.now,
    )
    failed: ConditionStatus = "True" if phase == "Failed" else "False"
    conditions = set_condition(
        conditions,
        type="Failed",
        status=failed,
        reason=reason if phase == "Failed" else "NotFailed",
        message=message if phase == "Failed" else "",
        generation=snap.generation,
        now=snap.now,
    )
    status = old.model_copy(
        update={
            "phase": phase,
            "dna": snap.dna,
            "job_name": job_name(snap.dna) if snap.dna and (create or snap.job) else old.job_name,
            "message": message,
            "observed_generation": snap.generation,
            "conditions": conditions,
            "start_time": old.start_time
            or (snap.job.start_time if snap.job else None)
            or (snap.now if create else None),
        }
    )
    events: list[Event] = []
    if old.phase != phase or _ready_reason(old) != reason:
        events.append(Event("Warning" if warn else "Normal", reason, message))
    return TrainingPlan(create, status, events)


def _ready_reason(status: ModelTrainingStatus) -> str:
    return next((c.reason for c in status.conditions if c.type == "Ready"), "")


def _progress(raw: dict[str, Any] | None) -> Progress | None:
    if not raw:
        return None
    step, total = int(raw.get("step", 0)), int(raw.get("total", 0))
    pct = f" ({100 * step // total}%)" if total else ""
    return Progress(
        step=step,
        total_steps=total,
        loss=_round(raw.get("loss")),
        tokens_per_second=_round(raw.get("tokens_per_s")),
        eta_seconds=int(raw["eta_s"]) if raw.get("eta_s") is not None else None,
        summary=f"{step}/{total}{pct}",
    )


def _done_progress(snap: TrainingSnapshot) -> Progress | None:
    """Full progress at completion; from the manifest's step count if no step was seen (a
    short run can finish between two looks at its progress file)."""
    progress = _progress(snap.progress) or snap.old_status.progress
    steps = (snap.version_metrics or {}).get("steps")
    if progress is None and isinstance(steps, int):
        progress = Progress(step=steps, total_steps=steps)
    if progress is None:
        return None
    total = progress.total_steps or progress.step
    return progress.model_copy(
        update={"step": total, "eta_seconds": 0, "summary": f"{total}/{total} (100%)"}
    )


def _progress_message(p: Progress | None) -> str:
    if p is None:
        return "training: waiting for the first step"
    eta = f", ETA {p.eta_seconds}s" if p.eta_seconds is not None else ""
    loss = f", loss {p.loss}" if p.loss is not None else ""
    return f"training: step {p.summary}{loss}{eta}"


def _metrics(raw: dict[str, Any] | None) -> TrainingMetrics | None:
    if not raw:
        return None
    return TrainingMetrics(
        train_loss=_round(raw.get("train_loss")),
        eval_loss=_round(raw.get("eval_loss")),
        tokens=raw.get("tokens"),
        duration_seconds=_round(raw.get("duration_s")),
    )


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""
