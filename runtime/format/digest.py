"""File and content digests.

A version's *content digest* is the sha256 of the canonical JSON of its sorted
``[relative path, file sha256, size]`` list. It changes when any byte, name or size changes,
and it does not depend on the order a file system lists files in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from certmodel.runtime.errors import UsageError
from certmodel.runtime.format.dna import canonical_json

_CHUNK = 1 << 20
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class FileEntry(BaseModel):
    """One file of a version: its path relative to the version folder, digest and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, description="POSIX path relative to the version folder.")
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0)


def file_sha256(path: Path) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks (models are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(root: Path, *, exclude: Iterable[str] = ()) -> list[str]:
    """Sorted relative POSIX paths of the regular files under ``root``.

    Symbolic links are refused: a certified version must be self-contained, and a link could
    point outside it or change after publication.
    """
    skipped = set(exclude)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            if (base / name).is_symlink():
                rel = (base / name).relative_to(root).as_posix()
                raise UsageError(f"{root / rel}: symbolic links are not allowed in a version")
        for name in filenames:
            rel = (base / name).relative_to(root).as_posix()
            if rel not in skipped:
                found.append(rel)
    return sorted(found)


def scan_tree(root: Path, *, exclude: Iterable[str] = ()) -> list[FileEntry]:
    """Digest every regular file under ``root`` (except ``exclude``), sorted by path."""
    return [
        FileEntry(path=rel, sha256=file_sha256(root / rel), size=(root / rel).stat().st_size)
        for rel in walk_files(root, exclude=exclude)
    ]


def content_digest(entries: Sequence[FileEntry]) -> str:
    """``sha256:<hex>`` over the sorted (path, sha256, size) list."""
    rows = sorted([e.path, e.sha256, e.size] for e in entries)
    return "sha256:" + hashlib.sha256(canonical_json(rows)).hexdigest()


def tree_digest(root: Path, *, exclude: Iterable[str] = ()) -> str:
    """Content digest of a folder (a base model, a legacy adapter)."""
    return content_digest(scan_tree(root, exclude=exclude))


def data_digest(path: Path) -> str:
    """``sha256:<hex>`` of a single file's bytes (a dataset)."""
    return "sha256:" + file_sha256(path)
