"""Offline signatures of certified versions with OpenSSF ``model-signing`` (EC key pairs).

``certified.sig`` is a model-signing bundle (a DSSE envelope over an in-toto statement) that
lists the sha256 of *every* file of the version, ``certified.json`` included, so the manifest
(recipe, metrics, file list) is protected as well as the weights. Only ``certified.sig``
itself is left out. Signing and verification are offline: an EC private key (P-256) signs,
its public key verifies; no Sigstore, no OIDC, no network.

``model-signing`` is an optional dependency (the ``runtime`` extra): it is imported inside the
functions, so the format library stays importable without it, and using a function without it
raises a :class:`CertmodelError` saying what to install.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from certmodel.runtime.errors import CertmodelError, UsageError, VerificationError
from certmodel.runtime.format.digest import file_sha256, walk_files
from certmodel.runtime.format.fsutil import atomic_write_bytes
from certmodel.runtime.format.manifest import MANIFEST_NAME, SIGNATURE_NAME
from certmodel.runtime.format.verify import verify_version

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
"""The in-toto predicate type model-signing 1.x writes; anything else is refused."""


def _model_signing() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The ``hashing``, ``signing`` and ``verifying`` modules, or a clear error."""
    try:
        from model_signing import hashing, signing, verifying
    except ImportError as exc:  # the package, or one of its imports (pyopenssl), is missing
        raise CertmodelError(
            f"signing needs the model-signing package ({exc}); install certmodel[runtime]"
        ) from None
    return hashing, signing, verifying


def _hashing_config(hashing: ModuleType) -> Any:
    """File-level sha256 of every file but the signature; git paths are *not* skipped."""
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)


def sign_version(
    version_dir: Path,
    private_key_path: Path,
    *,
    password: str | None = None,
    check: bool = True,
) -> Path:
    """Write ``certified.sig`` for the version in ``version_dir``; return its path.

    With ``check`` (the default) the version is deep-verified against its manifest first and a
    bad one is refused: a signature vouches for what the manifest says. Publication passes
    ``check=False`` because it signs its staging folder, whose name is not the DNA yet. An
    existing signature is replaced atomically.
    """
    hashing, signing, _ = _model_signing()
    if not (version_dir / MANIFEST_NAME).is_file():
        raise VerificationError(f"{version_dir / MANIFEST_NAME}: manifest missing; not signing")
    if check:
        verify_version(version_dir).raise_for_problems()
    key = _readable(private_key_path, "private key")
    with tempfile.TemporaryDirectory(prefix="certmodel-sign-") as tmp:
        out = Path(tmp) / SIGNATURE_NAME
        try:
            config = signing.Config().use_elliptic_key_signer(private_key=key, password=password)
            config.set_hashing_config(_hashing_config(hashing)).sign(version_dir, out)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{key}: cannot sign with this key ({_one_line(exc)})") from None
        bundle = out.read_bytes()
    target = version_dir / SIGNATURE_NAME
    atomic_write_bytes(target, bundle)
    return target


def verify_signature(version_dir: Path, public_key_path: Path) -> None:
    """Check ``certified.sig`` against ``public_key_path`` and the files of the version.

    Raises :class:`VerificationError` naming what failed: a missing or unreadable signature, a
    signature that does not verify with this key, a file whose bytes differ from the signed
    ones (``certified.json`` included), or a file that the signature does not cover.
    """
    hashing, _, verifying = _model_signing()
    key = _readable(public_key_path, "public key")
    sig = version_dir / SIGNATURE_NAME
    if not sig.is_file():
        raise VerificationError(f"{sig}: missing (the version is not signed)")
    _read_bundle(sig)  # a clear message for a file that is not a bundle at all
    try:
        verifier = verifying.Config().use_elliptic_key_verifier(public_key=key)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{key}: not a usable EC public key ({_one_line(exc)})") from None
    try:
        verifier.set_hashing_config(_hashing_config(hashing)).verify(version_dir, sig)
    except Exception as exc:  # model-signing raises ValueError and assorted parse errors
        if "Signature mismatch" in str(exc):
            # The envelope verified (model-signing compares files only after that), so the
            # signed file list can be trusted to say which file changed.
            raise VerificationError(_mismatch(version_dir, sig)) from None
        raise VerificationError(
            f"{sig}: does not verify with public key {key}"
            f" (signed with another key, or the signature was altered): {_one_line(exc)}"
        ) from None
    # Verified. Now insist that it covers every file of the version: the signed statement
    # could otherwise carry extra ignore_paths that model-signing honours.
    signed = _signed_digests(sig)
    present = set(walk_files(version_dir, exclude={SIGNATURE_NAME}))
    if uncovered := sorted(present - set(signed)):
        raise VerificationError(f"{version_dir / uncovered[0]}: not covered by the signature")
    if MANIFEST_NAME not in signed:
        raise VerificationError(f"{sig}: does not cover {MANIFEST_NAME}")


def check_key(path: Path, *, private: bool) -> None:
    """Fail early, with :class:`UsageError`, on a key file that cannot sign (``private``) or
    verify: missing, unreadable, not PEM, not an EC key, or (private) protected by a password.
    Trainers check before training and servers at startup, rather than at the first use."""
    what = "private key" if private else "public key"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    _model_signing()  # the package is needed to use the key at all: say so now
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    try:
        key = load_pem_private_key(data, password=None) if private else load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        detail = " without a password" if private else ""
        raise UsageError(f"{path}: not a PEM {what}{detail} ({_one_line(exc)})") from None
    expected = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, expected):
        raise UsageError(f"{path}: not an EC {what} (use P-256)")
    if key.curve.name not in SUPPORTED_CURVES:  # model-signing would refuse it only at use
        raise UsageError(
            f"{path}: EC {what} on curve {key.curve.name}; model-signing supports"
            f" {', '.join(sorted(SUPPORTED_CURVES))} (use P-256: secp256r1)"
        )


SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: {what} file not found")
    return path


def _read_bundle(sig: Path) -> dict[str, Any]:
    """The bundle's signed statement (not yet authenticated), or a clear error."""
    try:
        bundle = json.loads(sig.read_bytes())
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True))
    except (
        OSError,
        ValueError,  # JSON and UTF-8 errors
        binascii.Error,
        KeyError,
        TypeError,
    ):
        raise VerificationError(f"{sig}: not a model-signing signature bundle") from None
    if not isinstance(payload, dict) or payload.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(f"{sig}: not a model-signing signature (unknown predicate)")
    return payload


def _signed_digests(sig: Path) -> dict[str, str]:
    """Relative path -> hex sha256 of each file the statement lists."""
    predicate = _read_bundle(sig).get("predicate") or {}
    serialization = predicate.get("serialization") or {}
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise VerificationError(f"{sig}: unsupported serialization {serialization!r}")
    out: dict[str, str] = {}
    for res in predicate.get("resources") or []:
        if isinstance(res, dict) and res.get("algorithm") == "sha256":
            out[str(res.get("name"))] = str(res.get("digest"))
    return out


def _mismatch(version_dir: Path, sig: Path) -> str:
    """Name the first file that differs from the signed statement."""
    signed = _signed_digests(sig)
    present = set(walk_files(version_dir, exclude={SIGNATURE_NAME}))
    for rel in sorted(set(signed) | present):
        if rel not in present:
            return f"{version_dir / rel}: signed but missing"
        if rel not in signed:
            return f"{version_dir / rel}: not covered by the signature"
        if file_sha256(version_dir / rel) != signed[rel]:
            return f"{version_dir / rel}: sha256 differs from the signed one (tampered)"
    return f"{sig}: files do not match the signature"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
