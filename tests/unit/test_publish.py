"""Atomic publication: a crash at any step leaves no partial version visible."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_base, make_recipe, make_version, write_version_files

from certmodel.runtime import faults
from certmodel.runtime.errors import UsageError
from certmodel.runtime.format import store as store_module
from certmodel.runtime.format.dna import Recipe, compute_dna
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version


def visible_versions(store: Store) -> list[str]:
    """Versions a reader would see, each of which must verify completely."""
    seen = []
    for entry in store.list_versions():
        assert entry.manifest is not None, entry.error
        assert verify_version(entry.path).ok
        seen.append(entry.dna)
    return seen


def staged(store: Store, seed: int = 0) -> tuple[Path, Recipe]:
    make_base(store)
    recipe = make_recipe(store, seed=seed)
    work = store.staging_path(compute_dna(recipe)) / "version"
    write_version_files(work, seed=seed)
    return work, recipe


def test_publish_writes_a_verifiable_version_and_cleans_staging(store: Store) -> None:
    manifest = make_version(store)
    assert visible_versions(store) == [manifest.dna]
    assert not store.staging_path(manifest.dna).exists()
    assert manifest.base_model.path == "base_models/tiny-base"
    assert {f.path for f in manifest.files} == {
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "tokenizer/tokenizer.json",
    }


def test_publishing_the_same_recipe_twice_returns_the_first(store: Store) -> None:
    first = make_version(store)
    second = make_version(store, eval_loss=9.0)
    assert second == first
    assert visible_versions(store) == [first.dna]


@pytest.mark.parametrize("step", ["publish.after-manifest", "publish.before-rename"])
@pytest.mark.reliability(
    "faults",
    "Publication fails (in-process fault point) after writing the manifest or before the rename",
    "nothing is visible (every listed version verifies); publishing again completes the version",
)
def test_a_crash_before_the_rename_leaves_nothing_visible(
    store: Store, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    work, recipe = staged(store)
    monkeypatch.setenv(faults.ENV, step)
    with pytest.raises(faults.InjectedFault):
        store.publish(recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work)
    assert visible_versions(store) == []
    monkeypatch.delenv(faults.ENV)
    manifest = store.publish(
        recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work
    )
    assert visible_versions(store) == [manifest.dna]


@pytest.mark.reliability(
    "faults",
    "Publication fails (in-process fault point) right after the rename into certified/",
    "the version is visible only complete: it verifies",
)
def test_a_crash_after_the_rename_leaves_a_complete_version(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, recipe = staged(store)
    monkeypatch.setenv(faults.ENV, "publish.after-rename")
    with pytest.raises(faults.InjectedFault):
        store.publish(recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work)
    assert visible_versions(store) == [compute_dna(recipe)]


@pytest.mark.parametrize("failing", ["fsync_tree", "fsync_dir", "atomic_write_bytes"])
@pytest.mark.reliability(
    "faults",
    "An I/O error (ENOSPC, raised by a replaced fsync/write helper) at each durability step of"
    " publication",
    "nothing partial is visible: nothing before the rename, a complete version after it",
)
def test_an_io_error_at_any_durability_step_leaves_nothing_partial(
    store: Store, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    work, recipe = staged(store)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        store.publish(recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work)
    # fsync_dir runs after the rename: the version is then complete, never partial.
    expected = [compute_dna(recipe)] if failing == "fsync_dir" else []
    assert visible_versions(store) == expected


@pytest.mark.reliability(
    "faults",
    "A publishing process SIGKILLs itself between writing and renaming"
    " (`publish.before-rename:kill`)",
    "no version is visible; a rerun publishes one that verifies",
)
def test_a_killed_process_leaves_nothing_and_a_rerun_publishes(store: Store) -> None:
    """A real SIGKILL between writing and renaming, as a killed pod would see it."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from factories import make_version; from certmodel.runtime.format.store import Store;"
        "make_version(Store(sys.argv[1]))"
    )
    tests_dir = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, faults.ENV: "publish.before-rename:kill"}
    killed = subprocess.run(
        [sys.executable, "-c", script, str(store.root), tests_dir], env=env, check=False
    )
    assert killed.returncode == -9
    assert visible_versions(store) == []
    env.pop(faults.ENV)
    subprocess.run([sys.executable, "-c", script, str(store.root), tests_dir], env=env, check=True)
    assert len(visible_versions(store)) == 1


def test_pickle_weights_are_refused_at_publication(store: Store) -> None:
    work, recipe = staged(store)
    (work / "adapter" / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UsageError, match=r"adapter_model\.bin: file type '\.bin' is not allowed"):
        store.publish(recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work)
    assert visible_versions(store) == []


def test_a_truncated_safetensors_is_refused_at_publication(store: Store) -> None:
    work, recipe = staged(store)
    weights = work / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3])
    with pytest.raises(UsageError, match="truncated"):
        store.publish(recipe=recipe, base_model=store.base_model_info("tiny-base"), source_dir=work)


def test_version_paths_refuse_traversal(store: Store) -> None:
    with pytest.raises(UsageError, match="not a DNA"):
        store.version_path("../../etc")
    with pytest.raises(UsageError, match="not a base model name"):
        store.base_model_path("../x")


def test_published_files_are_readable_by_other_users(store: Store) -> None:
    """Inference pods may run as another user than the trainer that wrote the version."""
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    modes = {
        p.relative_to(version).as_posix(): p.stat().st_mode & 0o777 for p in version.rglob("*")
    }
    assert modes["certified.json"] == 0o644
    assert modes["adapter/adapter_model.safetensors"] == 0o644
    assert modes["adapter"] == 0o755
