"""The console's download: a real version streamed as tar, read back and verified."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from factories import make_version

from certmodel.operator.console.tarstream import (
    TarStreamError,
    archive_size,
    safe_rel,
    tar_chunks,
    version_members,
)
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version


def stream(store: Store, dna: str) -> bytes:
    path = store.version_path(dna)
    members = version_members(path, store.read_manifest(dna))
    data = b"".join(tar_chunks(path, dna, members, mtime=1_700_000_000))
    assert len(data) == archive_size(dna, members, mtime=1_700_000_000)
    return data


def test_the_archive_holds_exactly_the_version_and_verifies(store: Store, tmp_path: Path) -> None:
    manifest = make_version(store, seed=1)
    (store.version_path(manifest.dna) / "certified.sig").write_text("{}")
    data = stream(store, manifest.dna)
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
        assert all(m.isreg() and m.mode == 0o644 for m in tar.getmembers())
        tar.extractall(tmp_path / "out", filter="data")
    expected = {"certified.json", "certified.sig", *(f.path for f in manifest.files)}
    assert sorted(names) == sorted(f"{manifest.dna}/{rel}" for rel in expected)
    (tmp_path / "out" / manifest.dna / "certified.sig").unlink()  # not a real signature
    report = verify_version(tmp_path / "out" / manifest.dna)
    assert report.ok, report.problems


def test_a_file_changed_after_verification_stops_the_stream(store: Store) -> None:
    manifest = make_version(store, seed=2)
    path = store.version_path(manifest.dna)
    members = version_members(path, manifest)
    weights = path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x7f")  # same size, other bytes
    chunks = tar_chunks(path, manifest.dna, members)
    with pytest.raises(TarStreamError, match="changed since it was verified"):
        list(chunks)


def test_a_truncated_file_stops_the_stream(store: Store) -> None:
    manifest = make_version(store, seed=3)
    path = store.version_path(manifest.dna)
    members = version_members(path, manifest)
    weights = path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(TarStreamError, match="shorter than its manifest size"):
        list(tar_chunks(path, manifest.dna, members))


def test_a_symlinked_file_is_not_followed(store: Store, tmp_path: Path) -> None:
    manifest = make_version(store, seed=4)
    path = store.version_path(manifest.dna)
    members = version_members(path, manifest)
    config = path / "adapter" / "adapter_config.json"
    (tmp_path / "elsewhere.json").write_bytes(config.read_bytes())
    config.unlink()
    config.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(TarStreamError, match="cannot open"):
        list(tar_chunks(path, manifest.dna, members))


@pytest.mark.parametrize("rel", ["", "/etc/passwd", "../x.json", "a/../b.json", "a//b", "a\\b"])
def test_unsafe_manifest_paths_are_refused(rel: str) -> None:
    with pytest.raises(TarStreamError, match="not a plain relative path"):
        safe_rel(rel)
    assert safe_rel("adapter/adapter_config.json") == "adapter/adapter_config.json"


def test_a_folder_swapped_for_a_link_after_verification_leaks_nothing(
    store: Store, tmp_path: Path
) -> None:
    """A folder of the version replaced by a link to a secret after the download was allowed:
    the stream stops before it sends a byte of what the link points at."""
    manifest = make_version(store, seed=5)
    path = store.version_path(manifest.dna)
    members = version_members(path, manifest)
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    adapter = path / "adapter"
    for f in adapter.iterdir():  # same names, secret contents, shorter than the manifest says
        (secret_dir / f.name).write_bytes(b"TOKEN-SECRET")
    adapter.rename(tmp_path / "moved")
    adapter.symlink_to(secret_dir)
    sent = b""
    with pytest.raises(TarStreamError, match="cannot open"):
        for chunk in tar_chunks(path, manifest.dna, members):
            sent += chunk
    assert b"TOKEN-SECRET" not in sent


def test_a_short_file_is_refused_before_any_of_it_is_sent(store: Store) -> None:
    manifest = make_version(store, seed=6)
    path = store.version_path(manifest.dna)
    members = version_members(path, manifest)
    weights = path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"SHORT-AND-DIFFERENT")
    sent = b""
    with pytest.raises(TarStreamError, match="shorter"):
        for chunk in tar_chunks(path, manifest.dna, members):
            sent += chunk
    assert b"SHORT-AND-DIFFERENT" not in sent
