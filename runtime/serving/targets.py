"""Admission of a pointer target: may the server load it? Torch-free, so it is cheap to test.

A pod never trusts the pointer alone. Before anything is loaded it deep-verifies the version the
pointer names (every file re-hashed against the manifest), checks that the manifest's content
digest is the one the pointer recorded (so a version replaced behind the pointer's back is
caught), and for an adapter that the base model on disk is byte-for-byte the one it was trained
on. With a public key (``serve --public-key``) it also checks ``certified.sig`` over every file
(docs/signing.md): an unsigned version is refused when a signature is required, and a signature
that does not verify always is. Each refusal carries a short code (for metrics labels and the
operator) and a message a person can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from certmodel.runtime.errors import CertmodelError, RefusedError, VerificationError
from certmodel.runtime.format.digest import tree_digest
from certmodel.runtime.format.manifest import SIGNATURE_NAME, Manifest
from certmodel.runtime.format.pointer import PointerTarget
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version

RefusalCode = Literal[
    "invalid-target",
    "missing",
    "corrupt",
    "digest-mismatch",
    "wrong-base",
    "unsigned",
    "bad-signature",
    "load-failed",
]


class TargetRefusedError(RefusedError):
    """The pointer's target cannot be served; the server keeps the version it has."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code: RefusalCode = code


def check_target(
    store: Store,
    target: PointerTarget,
    *,
    base_model: str | None,
    public_key: Path | None = None,
    require_signature: bool = False,
) -> Manifest:
    """The manifest of ``target`` after a deep verification; :class:`TargetRefusedError` otherwise.

    ``base_model`` pins the server to one base (``--base-model``): a version built on another is
    refused as ``wrong-base`` even though the pointer allowed the base change. With
    ``public_key`` the signature is checked too (see :func:`check_signature`).
    """
    path = _version_path(store, target)
    if not path.is_dir():
        raise TargetRefusedError("missing", f"version {target.dna} not found under {path.parent}")
    report = verify_version(path, deep=True)
    if not report.ok or report.manifest is None:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise TargetRefusedError("corrupt", f"{target.dna}: {first.path}: {first.detail}{more}")
    manifest = report.manifest
    if manifest.content_digest != target.content_digest:
        raise TargetRefusedError(
            "digest-mismatch",
            f"{target.dna}: content digest {manifest.content_digest} differs from the pointer's"
            f" {target.content_digest} (the version was replaced after it was promoted)",
        )
    if manifest.kind != target.kind:
        raise TargetRefusedError(
            "invalid-target", f"{target.dna}: pointer says {target.kind}, manifest {manifest.kind}"
        )
    for expected in filter(None, [target.base_model, base_model]):
        if manifest.base_model.name != expected:
            raise TargetRefusedError(
                "wrong-base",
                f"{target.dna} is built on base model {manifest.base_model.name!r}, this server"
                f" serves {expected!r}",
            )
    if public_key is not None:
        check_signature(path, target.dna, public_key, required=require_signature)
    return manifest


def check_signature(path: Path, dna: str, public_key: Path, *, required: bool) -> None:
    """Refuse a version whose ``certified.sig`` does not verify with ``public_key`` over every
    file (``bad-signature``), or that has none when ``required`` (``unsigned``)."""
    if not (path / SIGNATURE_NAME).is_file():
        if required:
            raise TargetRefusedError(
                "unsigned",
                f"{dna}: not signed ({SIGNATURE_NAME} missing) and this server requires a"
                f" signature by {public_key}",
            )
        return
    from certmodel.runtime.format.signing import verify_signature

    try:
        verify_signature(path, public_key)
    except VerificationError as exc:
        detail = str(exc).replace(f"{path}/", "")
        raise TargetRefusedError("bad-signature", f"{dna}: {detail}") from None
    except CertmodelError as exc:  # the key file (or model-signing), not the version
        raise TargetRefusedError(
            "bad-signature", f"{dna}: cannot check the signature: {exc}"
        ) from None


def check_base(store: Store, manifest: Manifest) -> Path:
    """The base-model folder of an adapter version, after checking it hashes to the recorded
    digest: an adapter applied to other base weights produces garbage without any error."""
    base_dir = store.base_models_dir.resolve()
    path = (store.root / manifest.base_model.path).resolve()
    if not path.is_relative_to(base_dir) or path == base_dir:
        raise TargetRefusedError(
            "wrong-base", f"base model path {manifest.base_model.path!r} is not under {base_dir}"
        )
    if not path.is_dir():
        raise TargetRefusedError(
            "wrong-base", f"base model {manifest.base_model.name} missing: {path}"
        )
    try:
        digest = tree_digest(path)
    except CertmodelError as exc:
        raise TargetRefusedError("wrong-base", f"base model {path}: {exc}") from None
    if digest != manifest.base_model.digest:
        raise TargetRefusedError(
            "wrong-base",
            f"base model at {path} hashes to {digest}, but {manifest.dna} was trained on"
            f" {manifest.base_model.digest}",
        )
    return path


def _version_path(store: Store, target: PointerTarget) -> Path:
    """The version folder, derived from the DNA alone: a pointer cannot send us elsewhere."""
    try:
        path = store.version_path(target.dna)
    except CertmodelError as exc:
        raise TargetRefusedError("invalid-target", str(exc)) from None
    if target.path.strip("/") != f"certified/{target.dna}":
        raise TargetRefusedError(
            "invalid-target", f"pointer path {target.path!r} is not certified/{target.dna}"
        )
    return path
