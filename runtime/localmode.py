"""Local-mode operations on a store and its file pointer: the CLI's promote and rollback.

The same checks run in the cluster (the operator verifies before it moves a ConfigMap
pointer): a version is made current only after its every file verified against its manifest.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from certmodel.runtime.errors import NotFoundError, RefusedError, VerificationError
from certmodel.runtime.format import pointer
from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.pointer import FilePointer, PointerDocument, PointerTarget
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version


def verified_target(store: Store, dna: str, *, public_key: Path | None = None) -> PointerTarget:
    """The pointer target for ``dna`` after a deep verification; refuses a bad version.

    With ``public_key`` the version must also carry a valid signature by that key.
    """
    path = store.version_path(dna)
    if not path.is_dir():
        raise NotFoundError(f"version {dna} not found under {store.certified_dir}")
    report = verify_version(path)
    if not report.ok:
        first = report.problems[0]
        raise RefusedError(
            f"refusing {dna}: {path / first.path}: {first.detail}"
            + (
                f" (and {len(report.problems) - 1} more problems)"
                if len(report.problems) > 1
                else ""
            )
        )
    if public_key is not None:
        from certmodel.runtime.format.signing import verify_signature

        try:
            verify_signature(path, public_key)
        except VerificationError as exc:
            raise RefusedError(f"refusing {dna}: {exc}") from None
    manifest: Manifest = report.raise_for_problems()
    return PointerTarget.from_manifest(manifest)


def promote_local(
    store: Store, dna: str, *, allow_base_change: bool = False, public_key: Path | None = None
) -> PointerDocument:
    """Verify ``dna`` (and its signature, given ``public_key``) and make it CURRENT."""
    target = verified_target(store, dna, public_key=public_key)
    ptr = FilePointer(store.root)
    doc = ptr.read()
    new = pointer.promote(doc, target, by=_who(), allow_base_change=allow_base_change)
    return ptr.swap(new, expected_revision=doc.revision)


def rollback_local(store: Store) -> PointerDocument:
    """Return CURRENT to the version live before it, after verifying that version again."""
    ptr = FilePointer(store.root)
    doc = ptr.read()
    new = pointer.rollback(doc, by=_who())
    assert new.target is not None
    verified_target(store, new.target.dna)
    return ptr.swap(new, expected_revision=doc.revision)


def read_pointer(root: Path) -> PointerDocument:
    return FilePointer(root).read()


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
