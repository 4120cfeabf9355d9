"""The trainer on real torch/transformers/peft with a tiny Llama built in the test session.

What is proven here: training lowers the loss and publishes a verified version that references
its base model; the same recipe is never trained twice; a merged version computes what base +
adapter computes; a run killed after a checkpoint resumes from it (and ends with the very same
bytes as an uninterrupted run); bad inputs fail with one clear line and leave nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certmodel.runtime.faults import InjectedFault
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version
from certmodel.runtime.training.result import TERMINATION_ENV

pytestmark = pytest.mark.torch

ArgsFactory = Callable[..., list[str]]


def logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def load_adapter(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path / "adapter" / "adapter_model.safetensors")


def version_dirs(store: Store) -> list[str]:
    folder = store.certified_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_training_lowers_loss_and_publishes_a_verified_adapter(trained: Any) -> None:
    result, metrics = trained.result, trained.result["metrics"]
    assert result["status"] == "trained" and result["kind"] == "adapter"
    assert metrics["train_loss"] < metrics["train_loss_first"]
    assert metrics["eval_loss"] < metrics["eval_loss_before"]
    assert metrics["steps"] == 12 and metrics["tokens"] > 0

    report = verify_version(Path(result["path"]))
    assert report.ok, report.problems
    manifest = report.manifest
    assert manifest is not None and manifest.dna == result["dna"]
    assert manifest.content_digest == result["content_digest"]
    base = trained.store.base_model_info("tiny-llama")
    assert manifest.base_model == base and manifest.recipe.base_model.digest == base.digest
    files = {entry.path for entry in manifest.files}
    assert {
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
    } <= files
    adapter_config = json.loads((Path(result["path"]) / "adapter/adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "base_models/tiny-llama"
    assert not trained.store.staging_path(result["dna"]).exists()


def test_progress_lines_and_termination_message(trained: Any) -> None:
    train_events = [e for e in trained.progress if e["phase"] == "train"]
    assert train_events[0]["step"] == 1 and train_events[-1]["step"] == 12
    assert {"loss", "tokens_per_s", "eta_s", "total"} <= set(train_events[-1])
    assert trained.termination["dna"] == trained.result["dna"]
    assert trained.termination["content_digest"] == trained.result["content_digest"]


def test_same_recipe_is_not_trained_twice(trained: Any, train_args: ArgsFactory) -> None:
    from certmodel.runtime.cli.train_cmd import resolve_config
    from certmodel.runtime.training.trainer import train

    events: list[Any] = []
    args = _parse(train_args(trained.store, trained.data))
    again = train(resolve_config(args), callback=events.append)
    assert again.status == "exists" and again.dna == trained.result["dna"]
    assert again.content_digest == trained.result["content_digest"]
    assert events == []  # nothing prepared, nothing trained


def test_dry_run_names_the_dna_without_training(
    trained: Any, cli: Any, train_args: ArgsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([*train_args(trained.store, trained.data), "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dna"] == trained.result["dna"] and out["exists"] is True


def test_merged_model_equals_base_plus_adapter(
    trained: Any, cli: Any, train_args: ArgsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert cli([*train_args(trained.store, trained.data), "--merge"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["kind"] == "merged" and merged["dna"] != trained.result["dna"]
    assert "-lora-merged-" in merged["dna"]
    merged_dir = Path(merged["path"])
    assert verify_version(merged_dir).ok
    assert {"config.json", "model.safetensors"} <= {
        p.name for p in (merged_dir / "model").iterdir()
    }

    ids = [3, 17, 42, 99, 5, 64, 7]
    base = AutoModelForCausalLM.from_pretrained(trained.store.base_models_dir / "tiny-llama")
    base_out = logits(base, ids)
    adapted = PeftModel.from_pretrained(base, Path(trained.result["path"]) / "adapter")
    adapter_out = logits(adapted, ids)
    merged_out = logits(AutoModelForCausalLM.from_pretrained(merged_dir / "model"), ids)
    assert (adapter_out - base_out).abs().max() > 1e-4  # the adapter does something
    assert (merged_out - adapter_out).abs().max() < 1e-4


@pytest.mark.reliability(
    "faults",
    "Training fails right after a checkpoint (in-process fault point `train.after-checkpoint`)",
    "the rerun resumes at step 6 from the step-5 checkpoint and ends with the bit-for-bit same"
    " adapter and content digest as an uninterrupted run; .staging cleaned",
)
def test_killed_run_resumes_from_its_checkpoint(
    trained: Any,
    tiny_model_dir: Path,
    tmp_path: Path,
    cli: Any,
    train_args: ArgsFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from certmodel.runtime.training.base_models import prepare_from_dir

    store = Store(tmp_path / "models")
    prepare_from_dir(store, tiny_model_dir, "tiny-llama")
    args = [*train_args(store, trained.data), "--checkpoint-every", "5", "--progress", "json"]

    monkeypatch.setenv("CERTMODEL_FAULTS", "train.after-checkpoint")
    with pytest.raises(InjectedFault):
        cli(args)
    dna = trained.result["dna"]  # same recipe: the checkpoint interval is not part of it
    assert (store.staging_path(dna) / "checkpoints" / "step-00000005" / "state.json").is_file()
    assert version_dirs(store) == []
    capsys.readouterr()

    monkeypatch.delenv("CERTMODEL_FAULTS")
    assert cli(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith('{"')]
    steps = [e["step"] for e in events if e["phase"] == "train"]
    assert result["resumed_from_step"] == 5 and steps[0] == 6 and steps[-1] == 12
    assert result["dna"] == dna and result["metrics"]["steps"] == 12
    assert not store.staging_path(dna).exists()
    # Weights, optimizer, scheduler, RNG and data order restored: the same bytes as a run
    # that was never interrupted.
    resumed, straight = (
        load_adapter(Path(result["path"])),
        load_adapter(Path(trained.result["path"])),
    )
    assert resumed.keys() == straight.keys()
    assert all((resumed[k] - straight[k]).abs().max() < 1e-6 for k in resumed)
    assert result["content_digest"] == trained.result["content_digest"]  # bit for bit


def _bad_dataset(tmp_path: Path, rows: Any, write_rows: Any) -> Path:
    path = write_rows(tmp_path / "bad" / "qa.jsonl", rows(4))
    lines = path.read_text().splitlines()
    lines.insert(2, '{"prompt": "Q: broken", "completion": ')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing-base", 3, "base model 'nope' not found"),
        ("empty-dataset", 2, "dataset is empty"),
        ("malformed-line", 2, "qa.jsonl:3: malformed JSON"),
        ("unknown-target", 2, "LoRA target module(s) q_prj not found"),
        ("zero-seq-len", 2, "hyperparameters.max_seq_len"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(
    case: str,
    code: int,
    message: str,
    train_store: Store,
    dataset: Path,
    tmp_path: Path,
    cli: Any,
    train_args: ArgsFactory,
    rows: Any,
    write_rows: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    termination = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_ENV, str(termination))
    data, extra = dataset, []
    if case == "missing-base":
        extra = ["--base", "nope"]
    elif case == "empty-dataset":
        data = tmp_path / "empty.jsonl"
        data.write_text("")
    elif case == "malformed-line":
        data = _bad_dataset(tmp_path, rows, write_rows)
    elif case == "unknown-target":
        extra = ["--target-modules", "q_proj,q_prj"]
    else:
        extra = ["--max-seq-len", "0"]

    assert cli([*train_args(train_store, data), *extra]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("certmodel: error: ") and message in err[0]
    assert version_dirs(train_store) == []
    staging = train_store.staging_dir
    assert not staging.exists() or list(staging.iterdir()) == []
    failure = json.loads(termination.read_text())
    assert failure["status"] == "failed" and message in failure["error"]


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_documents_do_not_attend_to_each_other(
    tiny_model_dir: Path, implementation: str
) -> None:
    """The premise of packing: with the trainer's block-diagonal mask and positions restarting
    per document, a packed document's logits equal its logits alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from certmodel.runtime.training.loop import MaskStyle, packed_attention_mask

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=implementation)
    first, second = [5, 9, 13, 2, 8], [7, 3, 11, 4]
    positions = torch.tensor([list(range(5)) + list(range(4))])
    mask = packed_attention_mask(positions, MaskStyle(implementation=implementation))
    with torch.no_grad():
        packed = model(
            input_ids=torch.tensor([first + second]),
            position_ids=positions,
            attention_mask=mask,
            use_cache=False,
        ).logits
    assert (packed[0, :5] - logits(model, first)[0]).abs().max() < 1e-5
    assert (packed[0, 5:] - logits(model, second)[0]).abs().max() < 1e-5


def _parse(argv: list[str]) -> Any:
    from certmodel.runtime.cli import main as main_module

    modules = list(main_module.COMMAND_MODULES)
    if "certmodel.runtime.cli.train_cmd" not in modules:
        modules.append("certmodel.runtime.cli.train_cmd")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(main_module, "COMMAND_MODULES", modules)
        return main_module.build_parser().parse_args(argv)
