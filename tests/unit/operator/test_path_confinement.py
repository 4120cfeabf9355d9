"""Paths from a ModelTraining spec stay inside the models volume, symlinks resolved
(operator/recipes.py: ``confined``, ``check_confined`` and the resolver that applies them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import write_safetensors

from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.recipes import OUTSIDE_VOLUME, confined, make_resolver
from certmodel.runtime.errors import UsageError


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "datasets").mkdir(parents=True)
    base = root / "base_models" / "tiny"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (base / "tokenizer.json").write_text("{}")
    write_safetensors(base / "model.safetensors", {"w": [1.0, 2.0]})
    (root / "datasets" / "qa.jsonl").write_text('{"text": "hi"}\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"text": "secret"}\n')
    (root / "datasets" / "etc.jsonl").symlink_to("/etc/passwd")
    (root / "datasets" / "up.jsonl").symlink_to("../../outside/secret.jsonl")
    (root / "datasets" / "alias.jsonl").symlink_to("qa.jsonl")
    (root / "datasets" / "dir-out").symlink_to(outside)
    (root / "base_models" / "linked").symlink_to(outside)
    return root


@pytest.mark.parametrize(
    "rel",
    [
        "datasets/qa.jsonl",
        "datasets/alias.jsonl",  # a link that stays inside is fine
        "datasets/./qa.jsonl",
        "datasets/not-yet-there.jsonl",  # missing is a different problem (InputNotFound)
        "base_models/tiny",
    ],
)
def test_paths_inside_the_volume_are_allowed(volume: Path, rel: str) -> None:
    assert confined(volume, rel, field="f").is_relative_to(volume.resolve())


@pytest.mark.parametrize(
    ("rel", "why"),
    [
        ("/etc/passwd", "must be a relative path"),
        ("../outside/secret.jsonl", "must be a relative path"),
        ("datasets/../../outside/secret.jsonl", "must be a relative path"),
        ("", "must be a relative path"),
        (".", "resolves outside"),
        ("datasets/etc.jsonl", "resolves outside"),
        ("datasets/up.jsonl", "resolves outside"),
        ("datasets/dir-out/secret.jsonl", "resolves outside"),
        ("base_models/linked", "resolves outside"),
    ],
)
def test_paths_leaving_the_volume_are_refused(volume: Path, rel: str, why: str) -> None:
    with pytest.raises(UsageError) as err:
        confined(volume, rel, field="spec.dataset.path")
    message = str(err.value)
    assert message.startswith("spec.dataset.path: ") and why in message
    assert "/etc/passwd" not in message or rel == "/etc/passwd"  # the link target stays private


def spec(dataset: str, base: str = "tiny") -> ModelTrainingSpec:
    return ModelTrainingSpec.model_validate(
        {"certifiedModel": "chat", "baseModel": base, "dataset": {"path": dataset}}
    )


@pytest.mark.parametrize(
    ("dataset", "base", "field"),
    [
        ("datasets/etc.jsonl", "tiny", "spec.dataset.path"),
        ("datasets/up.jsonl", "tiny", "spec.dataset.path"),
        ("datasets/qa.jsonl", "linked", "spec.baseModel"),
    ],
)
def test_the_resolver_refuses_before_reading_anything(
    volume: Path, dataset: str, base: str, field: str
) -> None:
    resolved = make_resolver(volume)(spec(dataset, base))
    assert resolved.dna is None and resolved.config_json == ""
    assert resolved.error is not None
    reason, message = resolved.error
    assert reason == OUTSIDE_VOLUME and message.startswith(f"{field}: ")


def test_a_link_swapped_in_after_a_good_plan_is_refused_on_the_next_reconcile(
    volume: Path,
) -> None:
    resolve = make_resolver(volume)
    data = volume / "datasets" / "swap.jsonl"
    data.write_text('{"text": "hi"}\n')
    first = resolve(spec("datasets/swap.jsonl"))
    assert first.error is None and first.dna is not None  # planned, and cached
    data.unlink()
    data.symlink_to("/etc/passwd")
    again = resolve(spec("datasets/swap.jsonl"))
    assert again.error is not None and again.error[0] == OUTSIDE_VOLUME and again.dna is None


def test_the_trainer_checks_again_with_the_config_the_operator_wrote(volume: Path) -> None:
    """The Job's trainer re-plans from the config the operator wrote (confine_paths: true), so a
    link swapped in after the operator planned is refused in the pod too (exit 2), while the
    same path given on a user's command line (confine_paths off) is the user's business."""
    from certmodel.operator.recipes import train_config
    from certmodel.runtime.training.config import parse_config
    from certmodel.runtime.training.plan import plan_training

    resolved = make_resolver(volume)(spec("datasets/swap2.jsonl"))
    assert resolved.error is not None  # not there yet: nothing planned
    data = volume / "datasets" / "swap2.jsonl"
    data.write_text('{"text": "hi"}\n')
    resolved = make_resolver(volume, pod_root=str(volume))(spec("datasets/swap2.jsonl"))
    assert resolved.error is None and resolved.dna is not None
    config = json.loads(resolved.config_json)
    assert config["confine_paths"] is True
    assert plan_training(parse_config(config)).dna == resolved.dna
    data.unlink()
    data.symlink_to(volume.parent / "outside" / "secret.jsonl")
    with pytest.raises(UsageError, match="outside the models volume"):
        plan_training(parse_config(config))
    plan_training(
        train_config(spec("datasets/swap2.jsonl"), root=str(volume)).model_copy(
            update={"confine_paths": False}
        )
    )
