"""A store of certified versions on a file system: listing, reading and atomic publication.

Layout (see docs/format.md)::

    <root>/base_models/<name>/     shared base models
    <root>/certified/<dna>/        published versions, never modified
    <root>/.staging/<dna>/         work in progress for one DNA (checkpoints/, version/)
    <root>/CURRENT                 the local pointer (see pointer.py)

Publication writes the version under ``.staging/<dna>/version``, fsyncs every file, renames the
folder into ``certified/`` in one step and fsyncs the parent: a crash at any point leaves either
nothing or a complete, verifiable version.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certmodel.runtime import faults
from certmodel.runtime.errors import CertmodelError, NotFoundError, UsageError
from certmodel.runtime.format.digest import content_digest, scan_tree, tree_digest
from certmodel.runtime.format.dna import Kind, Recipe, compute_dna, is_dna
from certmodel.runtime.format.fsutil import atomic_write_bytes, fsync_dir, fsync_tree
from certmodel.runtime.format.manifest import (
    MANIFEST_NAME,
    METADATA_FILES,
    BaseModelInfo,
    Manifest,
    Metrics,
    read_manifest,
)
from certmodel.runtime.format.verify import check_allowed_type, check_safetensors_header

ROOT_ENV = "CERTMODEL_ROOT"


@dataclass(frozen=True)
class VersionEntry:
    """A folder under ``certified/``: its manifest, or why it could not be read."""

    dna: str
    path: Path
    manifest: Manifest | None
    error: str | None = None


class Store:
    """The certified directory tree under one root folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def certified_dir(self) -> Path:
        return self.root / "certified"

    @property
    def staging_dir(self) -> Path:
        return self.root / ".staging"

    @property
    def base_models_dir(self) -> Path:
        return self.root / "base_models"

    def version_path(self, dna: str) -> Path:
        """Folder of version ``dna``; refuses anything that is not a DNA (no path tricks)."""
        if not is_dna(dna):
            raise UsageError(f"{dna!r} is not a DNA name (expected <base>-<method>-<12 hex>)")
        return self.certified_dir / dna

    def exists(self, dna: str) -> bool:
        return (self.version_path(dna) / MANIFEST_NAME).is_file()

    def staging_path(self, dna: str) -> Path:
        """Deterministic work folder for ``dna``: a retried run finds its checkpoints here."""
        if not is_dna(dna):
            raise UsageError(f"{dna!r} is not a DNA name")
        return self.staging_dir / dna

    def read_manifest(self, dna: str) -> Manifest:
        path = self.version_path(dna)
        if not path.is_dir():
            raise NotFoundError(f"version {dna} not found under {self.certified_dir}")
        return read_manifest(path)

    def list_versions(self) -> list[VersionEntry]:
        """Every folder under ``certified/``, oldest first; unreadable ones carry an error."""
        if not self.certified_dir.is_dir():
            return []
        entries: list[VersionEntry] = []
        for child in sorted(self.certified_dir.iterdir()):
            if not child.is_dir():
                continue
            try:
                entries.append(VersionEntry(child.name, child, read_manifest(child)))
            except CertmodelError as exc:
                entries.append(VersionEntry(child.name, child, None, str(exc)))
        return sorted(entries, key=_sort_key)

    def base_model_path(self, name: str) -> Path:
        """Folder of base model ``name`` under ``base_models/``."""
        if not name or "/" in name or name in {".", ".."}:
            raise UsageError(f"{name!r} is not a base model name")
        path = self.base_models_dir / name
        if not path.is_dir():
            raise NotFoundError(f"base model {name!r} not found at {path}")
        return path

    def base_model_info(self, name: str) -> BaseModelInfo:
        """Name, root-relative path and content digest of a base model."""
        path = self.base_model_path(name)
        return BaseModelInfo(
            name=name, path=path.relative_to(self.root).as_posix(), digest=tree_digest(path)
        )

    def publish(
        self,
        *,
        recipe: Recipe,
        base_model: BaseModelInfo,
        source_dir: Path,
        metrics: Metrics | Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        signing_key: Path | None = None,
    ) -> Manifest:
        """Publish the files in ``source_dir`` as the version of ``recipe``; return its manifest.

        ``source_dir`` should be ``staging_path(dna) / "version"`` (same file system, so the
        final rename is atomic); a folder elsewhere is first copied there. If the version
        already exists, nothing is written and the existing manifest is returned: a recipe is
        published once. With ``signing_key`` (an EC private key file) the version is signed
        (``certified.sig``, see signing.py) before it appears under ``certified/``.
        """
        dna = compute_dna(recipe)
        kind: Kind = recipe.kind
        target = self.version_path(dna)
        if target.is_dir():
            return read_manifest(target)
        work = self.staging_path(dna) / "version"
        if source_dir.resolve() != work.resolve():
            shutil.rmtree(work, ignore_errors=True)
            work.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source_dir, work, symlinks=True)
        files = scan_tree(work, exclude=METADATA_FILES)
        _check_publishable(work, [f.path for f in files])
        manifest = Manifest(
            dna=dna,
            kind=kind,
            base_model=base_model,
            recipe=recipe,
            metrics=Metrics.model_validate(dict(metrics or {})),
            files=files,
            content_digest=content_digest(files),
            extra=dict(extra or {}),
        )
        atomic_write_bytes(work / MANIFEST_NAME, manifest.to_json())
        faults.point("publish.after-manifest")
        if signing_key is not None:
            from certmodel.runtime.format.signing import sign_version

            sign_version(work, signing_key, check=False)
        fsync_tree(work, normalise_modes=True)
        self.certified_dir.mkdir(parents=True, exist_ok=True)
        faults.point("publish.before-rename")
        try:
            work.rename(target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and target.is_dir():
                return read_manifest(target)  # a concurrent writer published the same recipe
            raise
        fsync_dir(self.certified_dir)
        faults.point("publish.after-rename")
        shutil.rmtree(self.staging_path(dna), ignore_errors=True)
        return manifest

    def clean_staging(self, dna: str) -> None:
        """Forget unfinished work for ``dna`` (checkpoints included)."""
        shutil.rmtree(self.staging_path(dna), ignore_errors=True)


def _check_publishable(work: Path, rels: list[str]) -> None:
    if not rels:
        raise UsageError(f"{work}: nothing to publish (no files)")
    for rel in rels:
        if (why := check_allowed_type(rel)) is not None:
            raise UsageError(f"{work / rel}: {why}")
        if rel.endswith(".safetensors") and (why := check_safetensors_header(work / rel)):
            raise UsageError(f"{work / rel}: {why}")


def _sort_key(entry: VersionEntry) -> tuple[str, str]:
    created = entry.manifest.created.isoformat() if entry.manifest else ""
    return (created, entry.dna)


def default_root() -> Path | None:
    """The store root from ``CERTMODEL_ROOT``, if set."""
    value = os.environ.get(ROOT_ENV)
    return Path(value) if value else None
