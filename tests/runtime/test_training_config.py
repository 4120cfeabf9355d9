"""Training config, recipe and DNA rules, result messages, progress sinks (torch-free)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from certmodel.runtime.errors import NotFoundError, RefusedError, UsageError
from certmodel.runtime.format.store import Store
from certmodel.runtime.training.base_models import prepare_from_dir
from certmodel.runtime.training.config import load_config_file, merge_overrides, parse_config
from certmodel.runtime.training.plan import plan_training
from certmodel.runtime.training.progress import JsonLines, ProgressEvent, render_bar
from certmodel.runtime.training.result import TrainResult, failure_message, termination_message

SAFETENSORS_STUB = b"\x02\x00\x00\x00\x00\x00\x00\x00{}"


def fake_base(folder: Path, model_type: str = "llama") -> Path:
    """Files only: enough for planning (digests, model_type), not for loading."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(SAFETENSORS_STUB)
    return folder


@pytest.fixture
def planned(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "models"
    fake_base(root / "base_models" / "tiny")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    return {"root": str(root), "base": "tiny", "data": {"path": str(data)}}


def dna_of(config: dict[str, Any]) -> str:
    return plan_training(parse_config(config)).dna


def test_invalid_config_is_one_line_usage_error(planned: dict[str, Any]) -> None:
    config = merge_overrides(planned, {"hyperparameters": {"max_seq_len": 0}})
    with pytest.raises(UsageError, match=r"^invalid training config: hyperparameters\.max_seq"):
        parse_config(config)
    with pytest.raises(UsageError, match="lorra"):
        parse_config({**planned, "lorra": {}})  # typos are errors, not silently ignored


@pytest.mark.parametrize(
    "change",
    [
        {"hyperparameters": {"learning_rate": 1e-3}},
        {"hyperparameters": {"max_steps": 7}},
        {"hyperparameters": {"max_seq_len": 128}},
        {"hyperparameters": {"precision": "fp32"}},
        {"hyperparameters": {"seed": 1}},
        {"hyperparameters": {"eval_fraction": 0.2}},
        {"lora": {"r": 4}},
        {"lora": {"target_modules": ["q_proj"]}},
        {"merge": True},
    ],
)
def test_what_changes_the_bytes_changes_the_dna(
    planned: dict[str, Any], change: dict[str, Any]
) -> None:
    assert dna_of(merge_overrides(planned, change)) != dna_of(planned)


@pytest.mark.parametrize(
    "change",
    [
        {"checkpoint_every": 3},
        {"progress": "json"},
        {"device": "cpu"},
        {"lora": {"target_modules": ["v_proj", "o_proj", "k_proj", "q_proj"]}},  # = default
    ],
)
def test_what_does_not_change_the_bytes_keeps_the_dna(
    planned: dict[str, Any], change: dict[str, Any]
) -> None:
    assert dna_of(merge_overrides(planned, change)) == dna_of(planned)


def test_dataset_content_not_path_is_in_the_dna(planned: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.jsonl"
    copy.write_bytes(Path(planned["data"]["path"]).read_bytes())
    assert dna_of({**planned, "data": {"path": str(copy)}}) == dna_of(planned)
    copy.write_text('{"text": "changed"}\n')
    assert dna_of({**planned, "data": {"path": str(copy)}}) != dna_of(planned)


def test_recipe_records_resolved_targets_and_base(planned: dict[str, Any]) -> None:
    plan = plan_training(parse_config(planned))
    assert plan.dna.startswith("tiny-lora-")
    assert plan.recipe.method_settings["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert plan.recipe.base_model.name == "tiny"
    assert plan.recipe.hyperparameters["precision"] == "auto"
    assert "device" not in plan.recipe.hyperparameters


def test_unknown_architecture_needs_explicit_targets(tmp_path: Path) -> None:
    root = tmp_path / "models"
    fake_base(root / "base_models" / "odd", model_type="oddformer")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x"}\n')
    config = {"root": str(root), "base": "odd", "data": {"path": str(data)}}
    with pytest.raises(UsageError, match="--target-modules"):
        dna_of(config)
    assert dna_of({**config, "lora": {"target_modules": ["wq"]}}).startswith("odd-lora-")


def test_missing_base_and_outside_base_are_clear(planned: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="base model 'nope' not found"):
        dna_of({**planned, "base": "nope"})
    outside = fake_base(tmp_path / "outside")
    with pytest.raises(UsageError, match="prepare-base --from-dir"):
        dna_of({**planned, "base": str(outside)})


def test_config_file_with_flag_overrides(tmp_path: Path, planned: dict[str, Any]) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({**planned, "hyperparameters": {"max_steps": 5, "seed": 9}}))
    merged = merge_overrides(load_config_file(path), {"hyperparameters": {"max_steps": 7}})
    config = parse_config(merged)
    assert (config.hyperparameters.max_steps, config.hyperparameters.seed) == (7, 9)
    path.write_text("{broken")
    with pytest.raises(UsageError, match=r"train\.json:1: not valid JSON"):
        load_config_file(path)


def test_prepare_base_refuses_pickle_weights(tmp_path: Path) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    (source / "config.json").write_text('{"model_type": "llama"}')
    (source / "tokenizer.json").write_text("{}")
    (source / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    store = Store(tmp_path / "models")
    with pytest.raises(RefusedError, match="only pickle weights"):
        prepare_from_dir(store, source, "legacy")
    assert not (store.base_models_dir / "legacy").exists()


def test_prepare_base_copies_allowed_files_and_never_replaces(tmp_path: Path) -> None:
    source = fake_base(tmp_path / "src")
    (source / "modeling_evil.py").write_text("raise SystemExit")
    (source / "extra.bin").write_bytes(b"pickle")
    store = Store(tmp_path / "models")
    info = prepare_from_dir(store, source, "tiny")
    names = sorted(p.name for p in (store.base_models_dir / "tiny").iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]
    assert prepare_from_dir(store, source, "tiny") == info  # same content: a no-op
    (source / "tokenizer.json").write_text('{"changed": true}')
    with pytest.raises(RefusedError, match="already exists with different content"):
        prepare_from_dir(store, source, "tiny")


def result(**metrics: Any) -> TrainResult:
    return TrainResult(
        status="trained",
        dna="tiny-lora-0123456789ab",
        kind="adapter",
        path="/models/certified/tiny-lora-0123456789ab",
        content_digest="sha256:" + "0" * 64,
        base_model={"name": "tiny", "path": "base_models/tiny", "digest": "sha256:" + "1" * 64},
        metrics=metrics,
    )


def test_termination_message_stays_under_the_kubelet_limit() -> None:
    small = json.loads(termination_message(result(eval_loss=1.5)))
    assert small["dna"] == "tiny-lora-0123456789ab" and small["metrics"]["eval_loss"] == 1.5
    huge = termination_message(result(eval_loss=1.5, notes="x" * 5000))
    assert len(huge.encode()) <= 4096
    assert json.loads(huge)["metrics"] == {"eval_loss": 1.5}
    assert len(failure_message("y" * 10000).encode()) <= 4096


def test_json_progress_lines_and_bar() -> None:
    stream = io.StringIO()
    sink = JsonLines(stream, interval_s=3600)
    for step in (1, 2, 3):
        sink(ProgressEvent("train", step, 3, loss=2.0, tokens_per_s=100.0, eta_s=5.0))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["step"] for line in lines] == [1, 3]  # rate-limited, ends always written
    assert lines[0]["event"] == "progress" and lines[0]["loss"] == 2.0
    bar = render_bar(ProgressEvent("train", 5, 10, loss=1.25, tokens_per_s=1234.0, eta_s=75))
    assert bar.startswith("[############............] 5/10") and "ETA 1:15" in bar
