"""`certmodel migrate` on a generated legacy tree with every odd case (see legacy_factory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from legacy_factory import BASE, Legacy, build_legacy, run_cli, snapshot, write_base

from certmodel.runtime.errors import ExitCode
from certmodel.runtime.format.digest import tree_digest
from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.store import Store
from certmodel.runtime.localmode import promote_local, read_pointer
from certmodel.runtime.migrate.discover import match_base

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def legacy(tmp_path: Path) -> Legacy:
    return build_legacy(tmp_path / "legacy")


def migrate(
    capsys: Capsys, legacy: Legacy, store: Store, *flags: str
) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(
        capsys, "migrate", "--from", legacy.root, "--root", store.root, "--json", *flags
    )
    return code, {row["subject"]: row for row in json.loads(out)["rows"]}


def manifest_for(store: Store, rows: dict[str, Any], subject: str) -> Manifest:
    return store.read_manifest(rows[subject]["dna"])


def test_dry_run_reports_every_case_and_writes_nothing(
    tmp_path: Path, legacy: Legacy, capsys: Capsys
) -> None:
    before = snapshot(legacy.root)
    store = Store(tmp_path / "new-store")
    code, rows = migrate(capsys, legacy, store)
    assert code == ExitCode.FAILED  # the orphan, the truncated file and the pickle
    actions = {subject: row["action"] for subject, row in rows.items()}
    assert actions == {
        "base_models/tiny-base": "install-base",
        "adapters/good-v1": "publish",
        "adapters/good-v1-copy": "duplicate",
        "adapters/good-v2": "publish",
        "adapters/orphan": "skip",
        "adapters/truncated": "skip",
        "adapters/pickled": "skip",
        "merged/merged-v1": "publish",
        "CURRENT": "set-current",
    }
    assert rows["adapters/good-v1-copy"]["dna"] == rows["adapters/good-v1"]["dna"]
    assert "same content as adapters/good-v1" in rows["adapters/good-v1-copy"]["detail"]
    assert "some-org/missing-base-7b" in rows["adapters/orphan"]["detail"]
    assert "--base" in rows["adapters/orphan"]["detail"]
    truncated = rows["adapters/truncated"]["detail"]
    assert str(legacy.truncated.resolve() / "adapter_model.safetensors") in truncated
    assert "truncated" in truncated
    assert "--allow-pickle" in rows["adapters/pickled"]["detail"]
    assert "adapter_model.bin" in rows["adapters/pickled"]["detail"]
    assert rows["merged/merged-v1"]["kind"] == "merged"
    assert rows["CURRENT"]["dna"] == rows["adapters/good-v2"]["dna"]
    assert not store.root.exists()
    assert snapshot(legacy.root) == before


def test_dry_run_table(tmp_path: Path, legacy: Legacy, capsys: Capsys) -> None:
    code, out, _ = run_cli(capsys, "migrate", "--from", legacy.root, "--root", tmp_path / "s")
    assert code == ExitCode.FAILED
    assert out.splitlines()[0].split() == ["SOURCE", "KIND", "ACTION", "BASE", "DNA", "DETAIL"]
    assert "ERROR: " in out and "dry run: nothing was written; 3 problems" in out


def test_apply_publishes_certified_versions(legacy: Legacy, store: Store, capsys: Capsys) -> None:
    before = snapshot(legacy.root)
    code, rows = migrate(capsys, legacy, store, "--apply")
    assert code == ExitCode.FAILED  # the three refused folders; the rest is done
    assert rows["base_models/tiny-base"]["action"] == "installed"
    assert rows["adapters/good-v1"]["action"] == "published"
    assert rows["CURRENT"]["action"] == "current-set"
    assert {e.dna for e in store.list_versions()} == {
        rows[s]["dna"] for s in ("adapters/good-v1", "adapters/good-v2", "merged/merged-v1")
    }
    assert tree_digest(store.base_models_dir / BASE) == tree_digest(legacy.base)

    v1 = manifest_for(store, rows, "adapters/good-v1")
    assert v1.dna.startswith("tiny-base-lora-") and v1.kind == "adapter"
    assert v1.base_model.digest == tree_digest(store.base_models_dir / BASE)
    assert {f.path for f in v1.files} == {
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "tokenizer/tokenizer.json",  # from the base: the adapter folder has none
        "tokenizer/tokenizer_config.json",
    }
    version = store.version_path(v1.dna)
    assert (version / "adapter/adapter_model.safetensors").read_bytes() == (
        legacy.good_v1 / "adapter_model.safetensors"
    ).read_bytes()
    config = json.loads((version / "adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base_models/tiny-base"
    assert v1.recipe.method_settings == {
        "r": 4,
        "alpha": 8,
        "dropout": 0.05,
        "bias": "none",
        "target_modules": ["q_proj", "v_proj"],
    }
    assert v1.recipe.hyperparameters == {"migrated_from": "legacy"}
    provenance = v1.extra["migration"]
    assert provenance["legacy_path"] == str(legacy.good_v1.resolve())
    assert provenance["pickle_converted"] is False
    assert provenance["original_base"] == "/srv/oneseek/models/base_models/tiny-base"

    v2 = manifest_for(store, rows, "adapters/good-v2")
    v2_dir = store.version_path(v2.dna)
    assert (v2_dir / "tokenizer/tokenizer.json").read_bytes() == (
        legacy.good_v2 / "tokenizer.json"
    ).read_bytes()
    assert set(v2.extra["migration"]["not_carried"]) == {"README.md", "training_args.bin"}

    merged = manifest_for(store, rows, "merged/merged-v1")
    assert merged.kind == "merged" and "-lora-merged-" in merged.dna
    assert {f.path for f in merged.files} == {
        "model/config.json",
        "model/generation_config.json",
        "model/model.safetensors",
        "tokenizer/tokenizer.json",
    }
    assert read_pointer(store.root).dna == v2.dna
    assert snapshot(legacy.root) == before  # the legacy tree is only read
    assert run_cli(capsys, "validate", "--root", store.root)[0] == ExitCode.OK


def test_a_second_run_does_nothing(legacy: Legacy, store: Store, capsys: Capsys) -> None:
    migrate(capsys, legacy, store, "--apply")
    before = snapshot(store.root)
    _, rows = migrate(capsys, legacy, store, "--apply")
    assert snapshot(store.root) == before
    assert {row["action"] for row in rows.values()} == {"reuse-base", "exists", "skip", "keep"}
    assert rows["adapters/good-v1-copy"]["action"] == "exists"


def test_a_broken_current_symlink_is_reported_and_not_carried_over(
    tmp_path: Path, store: Store, capsys: Capsys
) -> None:
    legacy = build_legacy(tmp_path / "legacy", broken_current=True)
    _, rows = migrate(capsys, legacy, store, "--apply")
    assert rows["CURRENT"]["action"] == "skip"
    assert rows["CURRENT"]["severity"] == "warning"
    assert "adapters/gone" in rows["CURRENT"]["detail"]
    assert read_pointer(store.root).target is None
    assert rows["adapters/good-v2"]["action"] == "published"


def test_the_stores_own_current_is_never_moved(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    live = make_version(store, base="other-base").dna
    promote_local(store, live)
    _, rows = migrate(capsys, legacy, store, "--apply")
    assert rows["CURRENT"]["action"] == "keep"
    assert live in rows["CURRENT"]["detail"]
    assert read_pointer(store.root).dna == live


def test_remove_legacy_removes_only_verified_migrated_files(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    untouched = {p: snapshot(p) for p in (legacy.orphan, legacy.truncated, legacy.pickled)}
    _, rows = migrate(capsys, legacy, store, "--apply", "--remove-legacy")
    for folder in (legacy.good_v1, legacy.good_v1_copy, legacy.merged):
        assert not folder.exists()
    assert sorted(p.name for p in legacy.good_v2.iterdir()) == ["README.md", "training_args.bin"]
    assert {p: snapshot(p) for p in untouched} == untouched
    assert legacy.base.is_dir()  # the truncated adapter still names it
    assert "adapters/truncated" in rows["base_models/tiny-base"]["detail"]
    assert legacy.current.is_symlink()  # good-v2 still holds its leftovers
    assert run_cli(capsys, "validate", "--root", store.root)[0] == ExitCode.OK


def test_remove_legacy_removes_a_base_nothing_left_needs(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    flags = ["--exclude", "adapters/truncated", "--exclude", "adapters/pickled"]
    code, rows = migrate(capsys, legacy, store, "--apply", "--remove-legacy", *flags)
    assert code == ExitCode.FAILED  # the orphan
    assert "adapters/truncated" not in rows and "adapters/pickled" not in rows
    assert rows["base_models/tiny-base"]["action"] == "removed"
    assert not legacy.base.exists()
    assert (store.base_models_dir / BASE / "model.safetensors").is_file()


def test_remove_legacy_needs_apply(legacy: Legacy, store: Store, capsys: Capsys) -> None:
    code, _, err = run_cli(
        capsys, "migrate", "--from", legacy.root, "--root", store.root, "--remove-legacy"
    )
    assert code == ExitCode.USAGE and "--apply" in err


def test_base_override_links_every_model(legacy: Legacy, store: Store, capsys: Capsys) -> None:
    flags = ["--base", BASE, "--exclude", "adapters/truncated", "--exclude", "adapters/pickled"]
    code, rows = migrate(capsys, legacy, store, "--apply", *flags)
    assert code == ExitCode.OK
    orphan = manifest_for(store, rows, "adapters/orphan")
    assert orphan.base_model.name == BASE


def test_a_different_base_of_the_same_name_is_a_conflict(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    write_base(store.base_models_dir / BASE, weights=(9.0, 9.0, 9.0, 9.0))
    before = snapshot(store.base_models_dir)
    _, rows = migrate(capsys, legacy, store, "--apply")
    assert rows["base_models/tiny-base"]["action"] == "skip"
    assert "conflict" in rows["base_models/tiny-base"]["detail"]
    assert rows["adapters/good-v1"]["action"] == "skip"
    assert "conflicts" in rows["adapters/good-v1"]["detail"]
    assert snapshot(store.base_models_dir) == before
    assert store.list_versions() == []


def test_an_identical_base_already_in_the_store_is_reused(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    write_base(store.base_models_dir / BASE)
    _, rows = migrate(capsys, legacy, store)
    assert rows["base_models/tiny-base"]["action"] == "reuse-base"


def test_base_matching_uses_the_last_path_component() -> None:
    names = ["tiny-base", "Qwen2.5-7B"]
    assert match_base("/srv/models/base_models/tiny-base/", names) == "tiny-base"
    assert match_base("Qwen/qwen2.5-7b", names) == "Qwen2.5-7B"
    assert match_base("C:\\models\\tiny-base", names) == "tiny-base"
    assert match_base("other", names) is None


def test_help_states_the_pickle_risk(capsys: Capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(capsys, "migrate", "--help")
    out = capsys.readouterr().out
    assert "--allow-pickle" in out and "weights_only=True" in out and "RISK" in out


@pytest.mark.torch
def test_allow_pickle_converts_to_equal_safetensors(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = {
        "base_model.model.q_proj.lora_A.weight": torch.randn(4, 8),
        "base_model.model.q_proj.lora_B.weight": torch.randn(8, 4),
    }
    torch.save(tensors, legacy.pickled / "adapter_model.bin")
    code, out, _ = run_cli(
        capsys, "migrate", "--from", legacy.root, "--root", store.root, "--apply", "--allow-pickle"
    )
    assert code == ExitCode.FAILED  # the orphan and the truncated adapter
    assert "WARNING: converted 1 pickle adapter(s)" in out and "weights_only=True" in out
    _, rows = migrate(capsys, legacy, store, "--apply", "--allow-pickle")
    manifest = manifest_for(store, rows, "adapters/pickled")
    adapter_files = {f.path for f in manifest.files if f.path.startswith("adapter/")}
    assert adapter_files == {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    assert manifest.extra["migration"]["pickle_converted"] is True
    converted = load_file(store.version_path(manifest.dna) / "adapter/adapter_model.safetensors")
    assert converted.keys() == tensors.keys()
    assert all(torch.equal(converted[k], tensors[k]) for k in tensors)


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("this must never run",))


@pytest.mark.torch
def test_allow_pickle_refuses_a_pickle_that_is_not_plain_tensors(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    import pickle

    (legacy.pickled / "adapter_model.bin").write_bytes(pickle.dumps({"x": _Payload()}, protocol=2))
    _, rows = migrate(capsys, legacy, store, "--apply", "--allow-pickle")
    row = rows["adapters/pickled"]
    assert row["action"] == "failed" and "weights_only=True" in row["detail"]
    assert "this must never run" not in capsys.readouterr().out
    assert not list(store.staging_dir.glob("*/version"))


def test_a_merged_model_without_a_base_reference_is_matched_by_architecture(
    legacy: Legacy, store: Store, capsys: Capsys
) -> None:
    config_path = legacy.merged / "config.json"
    config = json.loads(config_path.read_text())
    del config["_name_or_path"]  # recent transformers write none
    config_path.write_text(json.dumps(config))
    _, rows = migrate(capsys, legacy, store)
    assert rows["merged/merged-v1"]["action"] == "publish"
    assert rows["merged/merged-v1"]["base"] == BASE
    assert "architecture" in rows["merged/merged-v1"]["detail"]
    config["hidden_size"] = 8
    config_path.write_text(json.dumps(config))
    _, rows = migrate(capsys, legacy, store)
    assert rows["merged/merged-v1"]["action"] == "skip"


@pytest.mark.torch
def test_migrated_real_models_serve_like_the_legacy_ones(tmp_path: Path, store: Store) -> None:
    """A tiny Llama with a safetensors adapter, a pickle adapter and a merged model: after the
    migration each loads through the server's loader and gives the legacy model's logits."""
    import os

    import torch
    from peft import LoraConfig, get_peft_model
    from tinymodels import build_tiny_llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certmodel.runtime.format.pointer import PointerTarget
    from certmodel.runtime.migrate.apply import migrate as run_migration
    from certmodel.runtime.migrate.plan import Options
    from certmodel.runtime.serving.models import ModelLoader
    from certmodel.runtime.serving.targets import check_target
    from certmodel.runtime.validate import validate_store

    legacy = tmp_path / "legacy"
    base_dir = build_tiny_llama(legacy / "base_models" / "tiny-llama")
    torch.manual_seed(0)
    references: dict[str, Any] = {}
    for name, safe in [("v1", True), ("v2-pickle", False)]:
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base_dir),
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        )
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                torch.nn.init.normal_(param, std=0.5)
        model.save_pretrained(legacy / "lora" / name, safe_serialization=safe)
        references[f"lora/{name}"] = model.eval()
    merged = references["lora/v1"].merge_and_unload()
    merged.save_pretrained(legacy / "merged" / "m1")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.save_pretrained(legacy / "merged" / "m1")
    references["merged/m1"] = merged
    os.symlink("lora/v2-pickle", legacy / "CURRENT")

    report = run_migration(legacy, store, Options(allow_pickle=True), apply=True)
    assert report.ok, report.rows
    assert validate_store(store).findings == []
    dnas = {row.subject: row.dna for row in report.rows if row.dna}
    assert read_pointer(store.root).dna == dnas["lora/v2-pickle"]
    loader = ModelLoader(store, device="cpu", dtype="float32")
    ids = tokenizer("the operator publishes", return_tensors="pt").input_ids
    for subject, reference in references.items():
        manifest = store.read_manifest(str(dnas[subject]))
        check_target(store, PointerTarget.from_manifest(manifest), base_model=None)
        version = loader.load(manifest, lambda job: job(), lambda _version: None)
        with torch.no_grad():
            got, want = version.activate()(ids).logits, reference(ids).logits
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
