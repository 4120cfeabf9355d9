"""Verification of a certified version against its manifest.

Every problem is reported precisely -- which file, and what is wrong with it -- so that an
operator or a user can act on it. Verification never modifies anything.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from certmodel.runtime.errors import CertmodelError, VerificationError
from certmodel.runtime.format.digest import content_digest, file_sha256, walk_files
from certmodel.runtime.format.dna import compute_dna
from certmodel.runtime.format.manifest import (
    ALLOWED_SUFFIXES,
    METADATA_FILES,
    Manifest,
    read_manifest,
)

ProblemKind = Literal[
    "manifest",
    "missing",
    "unexpected",
    "size",
    "digest",
    "forbidden",
    "content-digest",
    "dna",
    "safetensors",
    "signature",
]

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a version."""

    kind: ProblemKind
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


@dataclass
class VerifyReport:
    """The outcome of verifying one version folder."""

    version_dir: Path
    manifest: Manifest | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None

    def raise_for_problems(self) -> Manifest:
        """Return the manifest if the version is good, else raise naming the first problem."""
        if self.ok and self.manifest is not None:
            return self.manifest
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        raise VerificationError(f"{self.problems[0]}{more}")


def check_allowed_type(rel: str) -> str | None:
    """Why ``rel`` may not be part of a version, or None when its type is allowed."""
    suffix = Path(rel).suffix.lower()
    if suffix in ALLOWED_SUFFIXES:
        return None
    return (
        f"file type {suffix or '(none)'!r} is not allowed"
        f" (only {', '.join(sorted(ALLOWED_SUFFIXES))}; pickle and code are never loaded)"
    )


def check_safetensors_header(path: Path) -> str | None:
    """Why ``path`` is not a structurally valid safetensors file, or None when it is.

    Reads only the header: an 8-byte little-endian length, a JSON object, and tensor offsets
    that must lie within the file. Catches truncation and files that are not safetensors.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "not a safetensors file (shorter than its 8-byte header length)"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"not a safetensors file (header length {header_len} exceeds the file)"
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "not a safetensors file (header is not JSON)"
    if not isinstance(header, dict):
        return "not a safetensors file (header is not a JSON object)"
    data_len = size - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return f"tensor {name!r} has no data_offsets"
        if not 0 <= offsets[0] <= offsets[1] <= data_len:
            return f"tensor {name!r} lies beyond the end of the file (truncated?)"
    return None


def verify_version(version_dir: Path, *, deep: bool = True) -> VerifyReport:
    """Check a version folder against its manifest.

    ``deep`` re-hashes every file (the only way to detect a flipped byte); without it only
    presence, sizes and types are checked, which is cheap enough for listings.
    """
    try:
        manifest = read_manifest(version_dir)
    except CertmodelError as exc:
        return VerifyReport(version_dir, None, [Problem("manifest", _manifest_rel(), str(exc))])
    report = VerifyReport(version_dir, manifest)
    problems = report.problems
    if manifest.dna != version_dir.name:
        problems.append(
            Problem(
                "dna", _manifest_rel(), f"names DNA {manifest.dna}, folder is {version_dir.name}"
            )
        )
    expected_dna = compute_dna(manifest.recipe)
    if manifest.dna != expected_dna:
        problems.append(
            Problem("dna", _manifest_rel(), f"recipe hashes to {expected_dna}, not {manifest.dna}")
        )
    if content_digest(manifest.files) != manifest.content_digest:
        problems.append(
            Problem("content-digest", _manifest_rel(), "file list does not match content_digest")
        )
    try:
        present = set(walk_files(version_dir, exclude=METADATA_FILES))
    except CertmodelError as exc:
        problems.append(Problem("forbidden", version_dir.name, str(exc)))
        return report
    listed = {entry.path for entry in manifest.files}
    for rel in sorted(present - listed):
        problems.append(Problem("unexpected", rel, "file is not listed in the manifest"))
    for entry in manifest.files:
        problems.extend(_check_entry(version_dir, entry.path, entry.size, entry.sha256, deep=deep))
    return report


def _check_entry(root: Path, rel: str, size: int, sha256: str, *, deep: bool) -> list[Problem]:
    if (why := check_allowed_type(rel)) is not None:
        return [Problem("forbidden", rel, why)]
    path = root / rel
    if not path.is_file():
        return [Problem("missing", rel, "listed in the manifest but missing")]
    actual_size = path.stat().st_size
    if actual_size != size:
        return [Problem("size", rel, f"size {actual_size} bytes, manifest says {size}")]
    if deep and (actual := file_sha256(path)) != sha256:
        return [
            Problem("digest", rel, f"sha256 {actual[:16]}… does not match manifest {sha256[:16]}…")
        ]
    if rel.endswith(".safetensors") and (why := check_safetensors_header(path)) is not None:
        return [Problem("safetensors", rel, why)]
    return []


def _manifest_rel() -> str:
    return "certified.json"
