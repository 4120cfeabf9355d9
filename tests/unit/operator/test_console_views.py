"""The console's pure parts: the page model from CR dicts, and what the buttons patch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from certmodel.operator.console.views import (
    CHANGED_BY,
    ConsoleError,
    download_target,
    eta_text,
    line_view,
    overview,
    rollback_patch,
    set_current_patch,
    training_view,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
A, B, C = (f"base-lora-{c * 12}" for c in "abc")


def line(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certmodel.io/v1alpha1",
        "kind": "CertifiedModel",
        "metadata": {"name": "chat", "namespace": "ns", "generation": 3, "resourceVersion": "41"},
        "spec": {"baseModel": "base", "promotion": {"policy": "Manual", "current": A}},
        "status": {
            "current": A,
            "previous": B,
            "revision": 4,
            "observedGeneration": 3,
            "versions": [
                {"dna": B, "created": "2026-11-24T10:00:00Z", "verified": True, "evalLoss": 1.2},
                {"dna": A, "created": "2026-11-24T11:00:00Z", "verified": True, "signed": True},
                {"dna": C, "created": "2026-11-24T09:00:00Z", "verified": False},
            ],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": f"serving {A}"}
            ],
            "serving": {"pods": 2, "onCurrent": 1, "converged": False, "refused": ["p: bad"]},
            "history": [
                {"revision": 3, "fromDna": None, "toDna": B, "reason": "promote"},
                {"revision": 4, "fromDna": B, "toDna": A, "reason": "promote"},
            ],
            **status,
        },
    }


def test_line_view_shows_pointer_readiness_serving_and_versions_newest_first() -> None:
    view = line_view(line())
    assert (view["name"], view["current"], view["previous"], view["revision"]) == ("chat", A, B, 4)
    assert view["ready"] == {"status": "True", "reason": "Ready", "message": f"serving {A}"}
    assert view["reconciled"] is True and view["canRollback"] is True
    assert view["serving"] == {"pods": 2, "onCurrent": 1, "converged": False, "refused": ["p: bad"]}
    assert [v["dna"] for v in view["versions"]] == [A, B, C]
    first = view["versions"][0]
    assert first["current"] and first["signed"] and first["verified"]
    assert view["versions"][1]["previous"] and view["versions"][1]["evalLoss"] == 1.2
    assert view["versions"][2]["verified"] is False
    assert [h["revision"] for h in view["history"]] == [4, 3]


def test_a_line_the_operator_has_not_seen_yet_still_renders() -> None:
    body = line()
    del body["status"]
    view = line_view(body)
    assert view["current"] is None and view["versions"] == [] and not view["canRollback"]
    assert view["ready"]["status"] == "Unknown" and view["reconciled"] is False


def test_a_malformed_status_does_not_break_the_page() -> None:
    view = line_view(line(versions="not a list"))
    assert view["name"] == "chat" and view["versions"] == []


def training(name: str, phase: str, created: str, **progress: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"certifiedModel": "chat"},
        "status": {"phase": phase, "progress": progress} if progress else {"phase": phase},
    }


def test_training_view_reports_live_progress() -> None:
    view = training_view(
        training("t", "Running", "x", step=30, totalSteps=120, loss=1.5, etaSeconds=75)
    )
    assert (view["step"], view["totalSteps"], view["percent"]) == (30, 120, 25)
    assert (view["loss"], view["eta"], view["active"]) == (1.5, "1m15s", True)
    done = training_view(training("t", "Succeeded", "x", step=118, totalSteps=120, etaSeconds=3))
    assert (done["step"], done["percent"], done["eta"], done["active"]) == (120, 100, "", False)
    assert done["loss"] is None  # no progress loss, no metrics: nothing to show
    body = training("t", "Succeeded", "x", step=120, totalSteps=120)
    body["status"]["metrics"] = {"trainLoss": 0.75, "evalLoss": 0.8}
    final = training_view(body)
    assert (final["loss"], final["evalLoss"]) == (0.75, 0.8)  # the final loss once it is done


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (-1, ""), (0, "0s"), (59, "59s"), (61, "1m01s"), (3725, "1h02m")],
)
def test_eta_text(seconds: int | None, text: str) -> None:
    assert eta_text(seconds) == text


def test_overview_lists_lines_by_name_and_running_trainings_first() -> None:
    other = line()
    other["metadata"] = {**other["metadata"], "name": "alpha"}
    page = overview(
        "ns",
        [line(), other],
        [
            training("old", "Succeeded", "2026-01-01T00:00:00Z"),
            training("new", "Failed", "2026-02-01T00:00:00Z"),
            training("run", "Running", "2025-01-01T00:00:00Z"),
        ],
    )
    assert [v["name"] for v in page["lines"]] == ["alpha", "chat"]
    assert [t["name"] for t in page["trainings"]] == ["run", "new", "old"]


def test_set_current_patches_the_spec_with_a_precondition_and_who() -> None:
    patch = set_current_patch(line(), B, user="alice", now=NOW)
    assert patch["spec"] == {"promotion": {"policy": "Manual", "current": B}}
    assert patch["metadata"]["resourceVersion"] == "41"
    assert patch["metadata"]["annotations"][CHANGED_BY].startswith(f"alice set CURRENT to {B}")


@pytest.mark.parametrize(
    ("dna", "status", "words"),
    [
        ("../../etc", 400, "not a DNA"),
        (None, 400, "not a DNA"),
        ("base-lora-dddddddddddd", 404, "not a version of model line chat"),
        (C, 409, "failed verification"),
    ],
)
def test_set_current_refuses(dna: Any, status: int, words: str) -> None:
    with pytest.raises(ConsoleError) as err:
        set_current_patch(line(), dna, user="alice", now=NOW)
    assert err.value.status == status and words in err.value.message


def test_rollback_targets_previous_and_refuses_a_moved_or_empty_pointer() -> None:
    patch = rollback_patch(line(), expected_current=A, user="bob", now=NOW)
    assert patch["spec"]["promotion"] == {"policy": "Manual", "current": B}
    assert "bob rolled back to" in patch["metadata"]["annotations"][CHANGED_BY]
    with pytest.raises(ConsoleError, match="moved meanwhile") as err:
        rollback_patch(line(), expected_current=B, user="bob", now=NOW)
    assert err.value.status == 409
    with pytest.raises(ConsoleError, match="no previous version") as err:
        rollback_patch(line(previous=None), expected_current=A, user="bob", now=NOW)
    assert err.value.status == 409
    with pytest.raises(ConsoleError, match="moved meanwhile"):  # expectedCurrent is required
        rollback_patch(line(), expected_current=None, user="bob", now=NOW)


def test_rollback_refuses_while_the_operator_has_not_applied_a_change() -> None:
    """Someone set a new CURRENT (spec) that the operator is still verifying: a roll back now
    would silently replace it, so it waits (409) until the status catches up."""
    pending = line()
    pending["spec"]["promotion"]["current"] = C
    pending["metadata"]["generation"] = 4
    for body in (pending, {**pending, "metadata": {**pending["metadata"], "generation": 3}}):
        with pytest.raises(ConsoleError, match="not applied yet") as err:
            rollback_patch(body, expected_current=A, user="bob", now=NOW)
        assert err.value.status == 409
    assert line_view(pending)["canRollback"] is False


def test_rollback_refuses_an_unverified_previous_version() -> None:
    body = line(previous=C)
    with pytest.raises(ConsoleError, match="not verified") as err:
        rollback_patch(body, expected_current=A, user="bob", now=NOW)
    assert err.value.status == 409
    assert line_view(body)["canRollback"] is False


def test_download_target_accepts_only_the_lines_versions() -> None:
    assert download_target(line(), C) == C
    for dna, status in (("..", 400), ("base-lora-dddddddddddd", 404)):
        with pytest.raises(ConsoleError) as err:
            download_target(line(), dna)
        assert err.value.status == status
