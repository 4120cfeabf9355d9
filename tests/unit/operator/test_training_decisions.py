"""Table-driven tests of the ModelTraining decisions: what to create, what status says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from certmodel.operator.api.modeltraining import (
    ModelTrainingSpec,
    ModelTrainingStatus,
    Progress,
)
from certmodel.operator.decisions.training import (
    JobFacts,
    PodFacts,
    TrainingSnapshot,
    decide_training,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
DNA = "tiny-lora-0123456789ab"
SPEC = ModelTrainingSpec.model_validate(
    {
        "certifiedModel": "chat",
        "baseModel": "tiny",
        "dataset": {"path": "d.jsonl"},
        "resources": {"memory": "2Gi"},
        "deadlineSeconds": 600,
    }
)
OURS = ModelTrainingStatus(phase="Pending", dna=DNA, job_name=f"train-{DNA}")


def snap(**kw: Any) -> TrainingSnapshot:
    base: dict[str, Any] = {
        "name": "mt",
        "generation": 1,
        "spec": SPEC,
        "old_status": ModelTrainingStatus(),
        "dna": DNA,
        "input_error": None,
        "version_exists": False,
        "version_metrics": None,
        "content_digest": None,
        "job": None,
        "pods": [],
        "progress": None,
        "now": NOW,
    }
    return TrainingSnapshot(**{**base, **kw})


def ready(plan: Any) -> tuple[str, str]:
    c = next(c for c in plan.status.conditions if c.type == "Ready")
    return c.status, c.reason


def test_a_new_run_creates_its_job() -> None:
    plan = decide_training(snap())
    assert plan.create_job and plan.status.phase == "Pending"
    assert plan.status.job_name == f"train-{DNA}" and plan.status.dna == DNA
    assert [e.reason for e in plan.events] == ["JobCreated"]


def test_a_published_recipe_is_deduplicated_without_a_job() -> None:
    plan = decide_training(
        snap(
            version_exists=True,
            version_metrics={"eval_loss": 1.5},
            job=JobFacts(name=f"train-{DNA}", condition="Complete"),
        )
    )
    assert not plan.create_job and plan.status.phase == "Succeeded"
    assert plan.status.deduplicated and plan.status.job_name is None
    assert plan.status.metrics is not None and plan.status.metrics.eval_loss == 1.5
    assert ready(plan) == ("True", "Deduplicated") and plan.line_changed


def test_missing_inputs_fail_with_the_reason_and_create_nothing() -> None:
    plan = decide_training(snap(dna=None, input_error=("InputNotFound", "dataset d not found")))
    assert not plan.create_job and plan.status.phase == "Failed"
    assert plan.status.message == "dataset d not found"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "InputNotFound")]


def test_running_reports_progress_and_keeps_it_when_the_file_is_gone() -> None:
    job = JobFacts(name=f"train-{DNA}", active=1)
    pod = PodFacts(name="p", phase="Running")
    raw = {"step": 30, "total": 120, "loss": 1.23456, "tokens_per_s": 900.0, "eta_s": 90}
    plan = decide_training(snap(old_status=OURS, job=job, pods=[pod], progress=raw))
    assert plan.status.phase == "Running"
    assert plan.status.progress == Progress(
        step=30,
        total_steps=120,
        loss=1.2346,
        tokens_per_second=900.0,
        eta_seconds=90,
        summary="30/120 (25%)",
    )
    assert plan.status.message == "training: step 30/120 (25%), loss 1.2346, ETA 90s"
    later = decide_training(snap(old_status=plan.status, job=job, pods=[pod], progress=None))
    assert later.status.progress == plan.status.progress


def test_a_finished_pod_is_reported_while_the_job_completes() -> None:
    plan = decide_training(
        snap(
            old_status=OURS,
            job=JobFacts(name="j"),
            pods=[PodFacts(name="p", phase="Succeeded", exit_code=0)],
        )
    )
    assert (plan.status.phase, ready(plan)) == ("Running", ("False", "Finishing"))


def test_completion_records_metrics_and_full_progress() -> None:
    old = OURS.model_copy(update={"progress": Progress(step=110, total_steps=120)})
    plan = decide_training(
        snap(
            old_status=old,
            version_exists=True,
            content_digest="sha256:" + "a" * 64,
            version_metrics={"train_loss": 1.0, "eval_loss": 1.1, "tokens": 5000, "duration_s": 42},
            job=JobFacts(name="j", succeeded=1, condition="Complete", completion_time=NOW),
        )
    )
    st = plan.status
    assert st.phase == "Succeeded" and ready(plan) == ("True", "Trained")
    assert st.progress is not None and st.progress.summary == "120/120 (100%)"
    assert st.metrics is not None and st.metrics.tokens == 5000 and plan.line_changed


def test_a_job_that_succeeded_without_a_version_is_a_failure() -> None:
    plan = decide_training(snap(old_status=OURS, job=JobFacts(name="j", condition="Complete")))
    assert plan.status.phase == "Failed" and ready(plan) == ("False", "VersionMissing")


@pytest.mark.parametrize(
    ("job", "pod", "reason", "words"),
    [
        (
            JobFacts(name="j", condition="Failed", condition_reason="DeadlineExceeded"),
            None,
            "DeadlineExceeded",
            "exceeded its deadline of 600s",
        ),
        (
            JobFacts(name="j", condition="Failed", condition_reason="BackoffLimitExceeded"),
            PodFacts(name="p", phase="Failed", terminated_reason="OOMKilled", exit_code=137),
            "OutOfMemory",
            "ran out of memory (limit 2Gi)",
        ),
        (
            JobFacts(name="j", condition="Failed", condition_reason="PodFailurePolicy"),
            PodFacts(
                name="p", phase="Failed", exit_code=2, message="d.jsonl:3: malformed JSON\nmore"
            ),
            "BadInput",
            "bad input: d.jsonl:3: malformed JSON",
        ),
        (
            JobFacts(
                name="j", failed=3, condition="Failed", condition_reason="BackoffLimitExceeded"
            ),
            PodFacts(name="p", phase="Failed", exit_code=1, message="boom"),
            "JobFailed",
            "failed after 3 attempt(s) (BackoffLimitExceeded): boom",
        ),
    ],
    ids=["deadline", "oom", "bad-input", "other"],
)
def test_failures_say_why_in_words_a_user_can_act_on(
    job: JobFacts, pod: PodFacts | None, reason: str, words: str
) -> None:
    plan = decide_training(snap(old_status=OURS, job=job, pods=[pod] if pod else []))
    assert plan.status.phase == "Failed"
    assert next(c for c in plan.status.conditions if c.type == "Failed").reason == reason
    assert words in plan.status.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]


def test_an_image_pull_error_is_reported_while_pending() -> None:
    pod = PodFacts(
        name="p", phase="Pending", waiting_reason="ImagePullBackOff", waiting_message="not found"
    )
    plan = decide_training(snap(old_status=OURS, job=JobFacts(name="j"), pods=[pod]))
    assert (
        plan.status.phase == "Pending" and "cannot pull the training image" in plan.status.message
    )


def test_an_unchanged_situation_emits_no_second_event() -> None:
    first = decide_training(snap())
    again = decide_training(replace(snap(old_status=first.status), job=JobFacts(name="j")))
    assert [e.reason for e in again.events] == ["Starting"]
    third = decide_training(replace(snap(old_status=again.status), job=JobFacts(name="j")))
    assert third.events == [] and third.status == again.status


def test_a_succeeded_run_is_left_alone() -> None:
    done = ModelTrainingStatus(phase="Succeeded", dna=DNA, observed_generation=1)
    plan = decide_training(snap(old_status=done, job=None))
    assert plan.status is done and not plan.create_job and plan.events == []


def test_a_run_too_short_to_see_still_reports_full_progress() -> None:
    plan = decide_training(
        snap(
            old_status=OURS,
            version_exists=True,
            version_metrics={"steps": 8},
            job=JobFacts(name="j", condition="Complete"),
        )
    )
    assert plan.status.progress is not None and plan.status.progress.summary == "8/8 (100%)"
