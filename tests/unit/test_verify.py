"""Verification reports every kind of damage precisely: which file, and what is wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from factories import make_version, write_safetensors

from certmodel.runtime.errors import VerificationError
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version

WEIGHTS = "adapter/adapter_model.safetensors"


def flip_byte(version: Path) -> None:
    path = version / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(version: Path) -> None:
    path = version / WEIGHTS
    path.write_bytes(path.read_bytes()[:-4])


def add_stray(version: Path) -> None:
    (version / "adapter" / "notes.json").write_text("{}")


def remove(version: Path) -> None:
    (version / "tokenizer" / "tokenizer.json").unlink()


def add_pickle(version: Path) -> None:
    (version / "adapter" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")


@pytest.mark.parametrize(
    ("damage", "kind", "path"),
    [
        (flip_byte, "digest", WEIGHTS),
        (truncate, "size", WEIGHTS),
        (add_stray, "unexpected", "adapter/notes.json"),
        (remove, "missing", "tokenizer/tokenizer.json"),
        (add_pickle, "unexpected", "adapter/adapter_model.bin"),
    ],
    ids=["flipped-byte", "truncated", "stray-file", "removed-file", "stray-pickle"],
)
def test_each_damage_is_reported_precisely(
    store: Store, damage: Callable[[Path], None], kind: str, path: str
) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    assert verify_version(version).ok
    damage(version)
    report = verify_version(version)
    assert not report.ok
    assert [(p.kind, p.path) for p in report.problems] == [(kind, path)]
    with pytest.raises(VerificationError, match=path):
        report.raise_for_problems()


def test_shallow_verification_misses_a_flipped_byte_but_deep_does_not(store: Store) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    flip_byte(version)
    assert verify_version(version, deep=False).ok
    assert not verify_version(version, deep=True).ok


def test_a_tampered_manifest_recipe_no_longer_matches_its_dna(store: Store) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    data = json.loads((version / "certified.json").read_text())
    data["recipe"]["seed"] = 999
    (version / "certified.json").write_text(json.dumps(data))
    kinds = {p.kind for p in verify_version(version).problems}
    assert kinds == {"dna"}


def test_a_tampered_file_list_no_longer_matches_the_content_digest(store: Store) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    flip_byte(version)
    data = json.loads((version / "certified.json").read_text())
    from certmodel.runtime.format.digest import file_sha256

    for entry in data["files"]:
        if entry["path"] == WEIGHTS:
            entry["sha256"] = file_sha256(version / WEIGHTS)
    (version / "certified.json").write_text(json.dumps(data))
    assert [p.kind for p in verify_version(version).problems] == ["content-digest"]


def test_an_unreadable_manifest_is_one_problem_naming_it(store: Store) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    (version / "certified.json").write_text("{not json")
    report = verify_version(version)
    assert [p.kind for p in report.problems] == ["manifest"]
    assert "certified.json" in report.problems[0].detail


def test_a_newer_format_version_asks_for_an_upgrade(store: Store) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    data = json.loads((version / "certified.json").read_text())
    data["format_version"] = 99
    (version / "certified.json").write_text(json.dumps(data))
    assert "upgrade certmodel" in verify_version(version).problems[0].detail


def test_a_symlink_inside_a_version_is_refused(store: Store, tmp_path: Path) -> None:
    manifest = make_version(store)
    version = store.version_path(manifest.dna)
    (tmp_path / "outside.json").write_text("{}")
    (version / "tokenizer" / "link.json").symlink_to(tmp_path / "outside.json")
    problems = verify_version(version).problems
    assert [p.kind for p in problems] == ["forbidden"]
    assert "symbolic links" in problems[0].detail


def test_a_corrupt_safetensors_header_is_reported_even_if_listed(store: Store) -> None:
    from certmodel.runtime.format.verify import check_safetensors_header

    path = store.root / "x.safetensors"
    write_safetensors(path, {"a": [1.0, 2.0]})
    assert check_safetensors_header(path) is None
    path.write_bytes(path.read_bytes()[:-4])
    assert "beyond the end" in (check_safetensors_header(path) or "")
    path.write_bytes(b"\xff" * 16)
    assert "header length" in (check_safetensors_header(path) or "")
