"""The CURRENT pointer: which version of a model line is live, with its history.

One typed document, :class:`PointerDocument`, is the pointer's content everywhere: in local mode
it is the ``CURRENT`` file at the store root; in a cluster it is the ``pointer.json`` key of the
line's ConfigMap. Transitions are pure functions on the document (:func:`promote`,
:func:`rollback`); the stores around them only read and compare-and-swap.

Rollback semantics: the document keeps a stack of the versions that were live before the current
one. Promote pushes the current version; rollback pops the top and makes it current, so repeated
rollbacks walk back through what was promoted, and a rollback never returns to the version it
just left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from certmodel.runtime.errors import ConflictError, RefusedError, VerificationError
from certmodel.runtime.format.dna import Kind
from certmodel.runtime.format.fsutil import atomic_write_bytes
from certmodel.runtime.format.manifest import Manifest

POINTER_FILE = "CURRENT"
POINTER_KEY = "pointer.json"
"""Key of the pointer document in a line's ConfigMap."""
MAX_HISTORY = 100
MAX_PREVIOUS = 50


class PointerTarget(BaseModel):
    """What a pointer points at: enough for a server to find, check and load the version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dna: str
    path: str = Field(description="Version folder relative to the store root.")
    kind: Kind
    base_model: str
    content_digest: str

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> PointerTarget:
        return cls(
            dna=manifest.dna,
            path=f"certified/{manifest.dna}",
            kind=manifest.kind,
            base_model=manifest.base_model.name,
            content_digest=manifest.content_digest,
        )


class Move(BaseModel):
    """One change of the pointer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int
    from_dna: str | None
    to_dna: str | None
    reason: Literal["promote", "rollback"]
    at: datetime
    by: str = ""


class PointerDocument(BaseModel):
    """The pointer's whole state; ``revision`` grows by one with every move."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int = 0
    target: PointerTarget | None = None
    previous: list[PointerTarget] = Field(default_factory=list)
    history: list[Move] = Field(default_factory=list)

    @property
    def dna(self) -> str | None:
        return self.target.dna if self.target else None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def parse(cls, text: str, *, source: str) -> PointerDocument:
        """Parse a pointer document, raising an error that names ``source``."""
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise VerificationError(f"{source}: not a valid pointer document ({exc})") from None


def promote(
    doc: PointerDocument,
    target: PointerTarget,
    *,
    by: str = "",
    now: datetime | None = None,
    allow_base_change: bool = False,
) -> PointerDocument:
    """The document after making ``target`` current; unchanged if it already is.

    A target built on another base model than the current one is refused unless
    ``allow_base_change``: the serving pods have that base loaded, and a silent switch of base
    is almost always a mistake in the spec.
    """
    if doc.target == target:
        return doc
    if doc.target and doc.target.base_model != target.base_model and not allow_base_change:
        raise RefusedError(
            f"version {target.dna} is built on base model {target.base_model!r}, but the line"
            f" serves {doc.target.base_model!r}; pass allow_base_change to switch base models"
        )
    previous = [*doc.previous, doc.target][-MAX_PREVIOUS:] if doc.target else list(doc.previous)
    return _moved(doc, target, previous, reason="promote", by=by, now=now)


def rollback(doc: PointerDocument, *, by: str = "", now: datetime | None = None) -> PointerDocument:
    """The document after returning to the version that was live before the current one."""
    if not doc.previous:
        raise RefusedError("nothing to roll back to: no version was live before the current one")
    return _moved(doc, doc.previous[-1], doc.previous[:-1], reason="rollback", by=by, now=now)


def _moved(
    doc: PointerDocument,
    target: PointerTarget,
    previous: list[PointerTarget],
    *,
    reason: Literal["promote", "rollback"],
    by: str,
    now: datetime | None,
) -> PointerDocument:
    revision = doc.revision + 1
    move = Move(
        revision=revision,
        from_dna=doc.dna,
        to_dna=target.dna,
        reason=reason,
        at=now or datetime.now(UTC),
        by=by,
    )
    history = [*doc.history, move][-MAX_HISTORY:]
    return PointerDocument(revision=revision, target=target, previous=previous, history=history)


class FilePointer:
    """The local-mode pointer: a JSON file replaced atomically, guarded by a lock file.

    :meth:`swap` is a compare-and-swap on the revision, so two local writers never lose an
    update: the loser gets :class:`ConflictError` and may re-read and retry.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / POINTER_FILE
        self._lock_path = Path(root) / f".{POINTER_FILE}.lock"

    def read(self) -> PointerDocument:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return PointerDocument()
        return PointerDocument.parse(text, source=str(self.path))

    def swap(self, new: PointerDocument, *, expected_revision: int) -> PointerDocument:
        """Write ``new`` if the stored revision is still ``expected_revision``."""
        with self._locked():
            current = self.read()
            if current.revision != expected_revision:
                raise ConflictError(
                    f"{self.path}: pointer moved to revision {current.revision} meanwhile"
                    f" (expected {expected_revision}); re-read and retry"
                )
            if new != current:
                atomic_write_bytes(self.path, new.to_json().encode("utf-8"))
        return new

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
