"""What the server tells the operator: ``GET /v1/status``.

The operator polls this JSON to learn whether a pod converged on the pointer's DNA and, if not,
why (a refused target). It is a typed model so the contract is written down in one place; add
optional fields only, never rename one (docs/serving.md documents it).
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

MAX_REFUSALS = 20


class Refusal(BaseModel):
    """A pointer target the server would not serve."""

    model_config = ConfigDict(frozen=True)

    dna: str
    reason: str = Field(description="What is wrong, in words a person can act on.")
    code: str = Field(description="Short machine-readable reason (also the metric label).")
    revision: int = Field(description="Pointer revision that named the target.")
    at: datetime


class Swap(BaseModel):
    """The last switch of the live version."""

    model_config = ConfigDict(frozen=True)

    from_dna: str | None
    to_dna: str
    revision: int
    at: datetime
    duration_s: float = Field(description="Pointer change seen → new version live.")


class ServingStatus(BaseModel):
    """The body of ``GET /v1/status``."""

    dna: str | None = Field(description="Version serving new requests; null before the first.")
    revision: int | None = Field(description="Pointer revision the live version came from.")
    pointer_revision: int | None = Field(description="Latest pointer revision seen.")
    pointer_dna: str | None = Field(description="DNA the latest pointer names.")
    ready: bool
    converged: bool = Field(description="The live DNA is the one the latest pointer names.")
    loaded: list[str] = Field(description="Versions in memory (live first, then for rollback).")
    refused: list[Refusal]
    last_swap: Swap | None = None
    pointer_source: str
    pointer_error: str | None = Field(None, description="Why the pointer could not be read.")
    inflight: int = 0


class StatusBoard:
    """The mutable facts behind the status that do not belong to the registry."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._refusals: deque[Refusal] = deque(maxlen=MAX_REFUSALS)
        self._pointer_error: str | None = None
        self._last_swap: Swap | None = None
        self._pointer: tuple[int, str | None] | None = None

    def refuse(self, *, dna: str, code: str, reason: str, revision: int) -> Refusal:
        refusal = Refusal(dna=dna, code=code, reason=reason, revision=revision, at=_now())
        with self._lock:
            self._refusals.append(refusal)
        return refusal

    def swapped(self, *, from_dna: str | None, to_dna: str, revision: int, duration: float) -> None:
        swap = Swap(from_dna=from_dna, to_dna=to_dna, revision=revision, at=_now(),
                    duration_s=round(duration, 4))  # fmt: skip
        with self._lock:
            self._last_swap = swap

    def pointer_seen(self, *, revision: int, dna: str | None) -> None:
        with self._lock:
            self._pointer = (revision, dna)
            self._pointer_error = None

    def pointer_failed(self, message: str) -> None:
        with self._lock:
            self._pointer_error = message

    def build(
        self, *, dna: str | None, revision: int | None, loaded: list[str], inflight: int
    ) -> ServingStatus:
        with self._lock:
            pointer = self._pointer
            return ServingStatus(
                dna=dna,
                revision=revision,
                pointer_revision=pointer[0] if pointer else None,
                pointer_dna=pointer[1] if pointer else None,
                ready=dna is not None,
                converged=dna is not None and pointer is not None and pointer[1] == dna,
                loaded=loaded,
                refused=list(self._refusals),
                last_swap=self._last_swap,
                pointer_source=self.source,
                pointer_error=self._pointer_error,
                inflight=inflight,
            )


def _now() -> datetime:
    return datetime.now(UTC)
