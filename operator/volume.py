"""Read-only access to the models volume from the operator: manifests, verification, progress.

The operator mounts the models PVC read-only. Deep verification re-hashes every file, so its
result is cached per version and redone only when a file's size or mtime changes (and at
least every ``reverify_seconds``); the inference server verifies again before it loads.

With a public key (``--public-key``), a version is ``signed`` only when its ``certified.sig``
really verifies with that key over every file (docs/signing.md); that check is cached with the
digest check, and also redone when the key file's content changes (a rotation). Without a key
``signed`` is unknown (None): the existence of ``certified.sig`` proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certmodel.operator.decisions.line import VersionFacts
from certmodel.runtime.errors import CertmodelError, VerificationError
from certmodel.runtime.format.digest import walk_files
from certmodel.runtime.format.dna import is_dna
from certmodel.runtime.format.manifest import SIGNATURE_NAME, Manifest
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version
from certmodel.runtime.training.progress import PROGRESS_FILE


@dataclass(frozen=True)
class _Verified:
    signature: tuple[tuple[tuple[str, int, int, int, int], ...], str]
    at: float
    ok: bool
    problem: str
    manifest: Manifest | None
    signed: bool | None = None
    """True: certified.sig verifies with the public key; False: missing or invalid; None: not
    checked (no public key, the manifest check failed, or the key itself is unusable)."""
    signature_problem: str = ""


def check_public_key(path: Path) -> None:
    """Fail at startup (:class:`UsageError`) on a public key that cannot check signatures."""
    from certmodel.runtime.format.signing import check_key

    check_key(path, private=False)


class ModelsVolume:
    """The models volume as the operator sees it."""

    def __init__(
        self, root: Path, *, public_key: Path | None = None, reverify_seconds: float = 600.0
    ) -> None:
        self.store = Store(root)
        self.public_key = public_key
        self._reverify = reverify_seconds
        self._cache: dict[str, _Verified] = {}

    @property
    def root(self) -> Path:
        return self.store.root

    def exists(self, dna: str) -> bool:
        return is_dna(dna) and self.store.exists(dna)

    def verified(self, dna: str) -> _Verified:
        """Deep verification of ``dna``, cached while its files are unchanged."""
        path = self.store.version_path(dna)
        signature = (_stat_signature(path), self._key_fingerprint())
        hit = self._cache.get(dna)
        if hit and hit.signature == signature and time.monotonic() - hit.at < self._reverify:
            return hit
        report = verify_version(path)
        first = report.problems[0] if report.problems else None
        signed, signature_problem = self._check_signature(path) if report.ok else (None, "")
        result = _Verified(
            signature=signature,
            at=time.monotonic(),
            ok=report.ok,
            problem=f"{first.path}: {first.detail}" if first else "",
            manifest=report.manifest,
            signed=signed,
            signature_problem=signature_problem,
        )
        self._cache[dna] = result
        return result

    def _key_fingerprint(self) -> str:
        """Changes when the public key file does (a mounted ConfigMap updated in place)."""
        if self.public_key is None:
            return ""
        try:
            return hashlib.sha256(self.public_key.read_bytes()).hexdigest()
        except OSError as exc:
            return f"unreadable: {exc}"

    def _check_signature(self, path: Path) -> tuple[bool | None, str]:
        """(signed, why not) of the version at ``path``, whose manifest already verified."""
        if self.public_key is None:
            return None, ""
        if not (path / SIGNATURE_NAME).is_file():
            return False, f"not signed ({SIGNATURE_NAME} missing)"
        from certmodel.runtime.format.signing import verify_signature

        try:
            verify_signature(path, self.public_key)
        except VerificationError as exc:
            return False, str(exc).replace(f"{path}/", "")
        except CertmodelError as exc:  # the key (or model-signing), not the version
            return None, f"cannot check signatures: {exc}"
        return True, ""

    def facts(self, dna: str, *, training: str | None, promote_requested: bool) -> VersionFacts:
        """What the line's decisions need to know about version ``dna``."""
        if not self.exists(dna):
            return VersionFacts(
                dna=dna, exists=False, training=training, promote_requested=promote_requested
            )
        v = self.verified(dna)
        m = v.manifest
        return VersionFacts(
            dna=dna,
            exists=True,
            verified=v.ok,
            problem=v.problem,
            base_model=m.base_model.name if m else None,
            kind=m.kind if m else None,
            created=m.created if m else None,
            eval_loss=m.metrics.eval_loss if m else None,
            train_loss=m.metrics.train_loss if m else None,
            content_digest=m.content_digest if m else None,
            signed=v.signed,
            signature_problem=v.signature_problem,
            training=training,
            promote_requested=promote_requested,
        )

    def metrics(self, dna: str) -> tuple[dict[str, Any] | None, str | None]:
        """(metrics, content digest) of a published version, or (None, None)."""
        try:
            manifest = self.store.read_manifest(dna)
        except CertmodelError:
            return None, None
        return manifest.metrics.model_dump(exclude_none=True), manifest.content_digest

    def progress(self, dna: str) -> dict[str, Any] | None:
        """The trainer's latest progress record for ``dna`` (written under .staging/<dna>/)."""
        try:
            data = json.loads((self.store.staging_path(dna) / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def _stat_signature(path: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    try:
        rels = walk_files(path)
    except (OSError, CertmodelError):
        return ()
    out = []
    for rel in rels:
        try:
            st = (path / rel).stat()
        except OSError:
            continue
        # ctime and inode too: `touch -r` can restore an mtime, not a ctime or an inode.
        out.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)
