"""The loaded versions, which one is live, and who is using which.

The switch is one assignment under a lock: a request *pins* a version when it is admitted
(:meth:`Registry.acquire`, which also counts it as a user) and runs on that version to the end,
whatever happens to the pointer meanwhile. So the switch never waits for requests, and requests
never see half a switch.

Retention: the live version and the ``keep - 1`` versions live before it stay loaded, so a
rollback is an instant switch. A version that falls out of that set is unloaded once it has been
out for ``grace_s`` *and* no admitted request still uses it -- in-flight work always finishes on
the version it started on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from certmodel.runtime.format.manifest import Manifest


class NotReadyError(Exception):
    """No version is live yet (the pointer is empty, or every target so far was refused)."""


class UnknownModelError(Exception):
    """A request named a model that is neither the served name nor a loaded DNA."""


@dataclass(eq=False)
class LoadedVersion:
    """One version in memory; ``model`` is the torch side (see models.py), opaque here."""

    manifest: Manifest
    model: Any
    refs: int = 0
    dropped_at: float | None = field(default=None, repr=False)

    @property
    def dna(self) -> str:
        return self.manifest.dna


class Registry:
    """Thread-safe bookkeeping of loaded versions; holds no torch state itself."""

    def __init__(
        self, *, keep: int = 2, grace_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1 (the live version)")
        self.keep = keep
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: dict[str, LoadedVersion] = {}
        self._recent: list[str] = []  # live first, then the versions live before it
        self._live: LoadedVersion | None = None
        self._revision: int | None = None

    def acquire(self, dna: str | None = None) -> LoadedVersion:
        """Pin a version for one request: the live one, or a loaded one named by DNA."""
        with self._lock:
            if dna is None:
                version = self._live
                if version is None:
                    raise NotReadyError("no verified model version is loaded yet")
            elif (version := self._versions.get(dna)) is None:
                raise UnknownModelError(f"model {dna!r} is not loaded here")
            version.refs += 1
            return version

    def release(self, version: LoadedVersion) -> None:
        with self._lock:
            version.refs -= 1

    def get(self, dna: str) -> LoadedVersion | None:
        with self._lock:
            return self._versions.get(dna)

    def activate(self, version: LoadedVersion, *, revision: int) -> LoadedVersion | None:
        """Make ``version`` live (adding it if new); return the version that was live before."""
        with self._lock:
            self._versions[version.dna] = version
            previous = self._live
            self._live = version
            self._revision = revision
            self._recent = [version.dna, *(d for d in self._recent if d != version.dna)]
            now = self._clock()
            for position, dna in enumerate(self._recent):
                entry = self._versions[dna]
                if position < self.keep:
                    entry.dropped_at = None
                elif entry.dropped_at is None:
                    entry.dropped_at = now
            return previous

    def set_revision(self, revision: int) -> None:
        """The pointer moved without changing the target (e.g. a history-only update)."""
        with self._lock:
            self._revision = revision

    def take_evictable(self) -> list[LoadedVersion]:
        """Remove and return the versions that may be unloaded now (unused, out of grace)."""
        now = self._clock()
        with self._lock:
            gone = [
                v
                for v in self._versions.values()
                if v.dropped_at is not None and v.refs == 0 and now - v.dropped_at >= self.grace_s
            ]
            for version in gone:
                del self._versions[version.dna]
                self._recent.remove(version.dna)
            return gone

    def live(self) -> tuple[LoadedVersion | None, int | None]:
        with self._lock:
            return self._live, self._revision

    def loaded(self) -> list[str]:
        """Loaded DNAs, live first, then most recently live."""
        with self._lock:
            return list(self._recent)

    def inflight(self) -> int:
        with self._lock:
            return sum(v.refs for v in self._versions.values())
