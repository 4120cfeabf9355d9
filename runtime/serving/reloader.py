"""Following the pointer: verify → load beside → warm up → switch → unload after grace.

The reloader is the only thread that loads or unloads models, so loads never race each other
or an unload. Pointer documents from the source are *coalesced*: if the pointer moves three
times while a load runs, the next load goes straight to the latest target -- intermediate
versions that would be live for no one are skipped.

A target that is missing, corrupt, replaced after promotion, built on the wrong base, unsigned
or badly signed (with ``public_key``), or that fails to load or warm up is *refused*: the live
version keeps serving, and the refusal goes to the log, the ``certmodel_refused_targets_total``
metric and ``/v1/status``. A ``missing`` target is retried every ``retry_missing_s`` (a shared
volume may show a new version late), an ``unsigned`` or ``bad-signature`` one every
``retry_signature_s`` (it may be signed later, or the key rotated); a corrupt one is not.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from pathlib import Path

from certmodel.runtime import faults
from certmodel.runtime.format.pointer import PointerDocument, PointerTarget
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.engine import Engine, GenerationRequest, generate_on
from certmodel.runtime.serving.metrics import ServingMetrics
from certmodel.runtime.serving.models import ModelLoader, VersionModel
from certmodel.runtime.serving.registry import LoadedVersion, Registry
from certmodel.runtime.serving.status import StatusBoard
from certmodel.runtime.serving.targets import TargetRefusedError, check_target

log = logging.getLogger(__name__)

WARMUP = GenerationRequest(prompts=["Hello"], max_tokens=1, temperature=0.0)


SWAP_FAULT = "serve.before-switch"
"""Fault point: the new version is verified, loaded and warmed up; the old one is still live."""


class Reloader:
    """Turns pointer documents into live versions."""

    def __init__(
        self,
        *,
        store: Store,
        loader: ModelLoader,
        engine: Engine,
        registry: Registry,
        board: StatusBoard,
        metrics: ServingMetrics,
        base_model: str | None = None,
        public_key: Path | None = None,
        require_signature: bool = False,
        retry_missing_s: float = 10.0,
        retry_signature_s: float = 30.0,
        tick_s: float = 0.5,
    ) -> None:
        self.store, self.loader, self.engine = store, loader, engine
        self.registry, self.board, self.metrics = registry, board, metrics
        self.base_model = base_model
        self.public_key = public_key
        self.require_signature = require_signature
        self.retry_missing_s = retry_missing_s
        self.retry_signature_s = retry_signature_s
        self.tick_s = tick_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._desired: tuple[PointerDocument, float] | None = None
        self._retry: tuple[PointerDocument, float] | None = None
        self._last_refusal: tuple[str, int, str] | None = None
        self._thread = threading.Thread(target=self._loop, name="reloader", daemon=True)

    def offer(self, doc: PointerDocument) -> None:
        """Source callback: ``doc`` is the pointer now (replaces any not yet acted on)."""
        with self._lock:
            self._desired = (doc, time.monotonic())
            self._retry = None
        self._wake.set()

    def pointer_error(self, message: str) -> None:
        """Source callback: the pointer could not be read; keep serving, say why."""
        self.board.pointer_failed(message)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            try:
                self._evict()
                if (work := self._take()) is not None:
                    self._follow(*work)
            except Exception:  # keep following the pointer whatever one attempt did
                log.exception("reloader step failed")

    def _take(self) -> tuple[PointerDocument, float] | None:
        with self._lock:
            work, self._desired = self._desired, None
            if work is None and self._retry is not None and time.monotonic() >= self._retry[1]:
                work, self._retry = (self._retry[0], time.monotonic()), None
            return work

    def _follow(self, doc: PointerDocument, seen_at: float) -> None:
        self.board.pointer_seen(revision=doc.revision, dna=doc.dna)
        target = doc.target
        if target is None:
            log.info("pointer revision %d names no version yet", doc.revision)
            return
        live, _ = self.registry.live()
        if live is not None and live.dna == target.dna:
            self.registry.set_revision(doc.revision)
            self._publish_live(live, doc.revision)
            return
        try:
            version = self._resolve(target)
        except TargetRefusedError as exc:
            self._refuse(doc, target, exc)
            return
        if live is not None:
            faults.point(SWAP_FAULT)  # the fault tests kill the server here, mid-swap
        self._switch(version, doc.revision, seen_at)

    def _resolve(self, target: PointerTarget) -> LoadedVersion:
        """A loaded version for ``target``: kept from before (rollback) or freshly loaded."""
        kept = self.registry.get(target.dna)
        if kept is not None:
            if kept.manifest.content_digest != target.content_digest:
                raise TargetRefusedError(
                    "digest-mismatch",
                    f"{target.dna}: loaded content digest {kept.manifest.content_digest} differs"
                    f" from the pointer's {target.content_digest}",
                )
            return kept
        manifest = check_target(
            self.store,
            target,
            base_model=self.base_model,
            public_key=self.public_key,
            require_signature=self.require_signature,
        )
        started = time.monotonic()
        try:
            model = self.loader.load(manifest, self.engine.run, self._warm_up)
        except TargetRefusedError:
            raise
        except Exception as exc:
            log.exception("loading %s failed", manifest.dna)
            raise TargetRefusedError(
                "load-failed", f"{manifest.dna}: {type(exc).__name__}: {exc}"
            ) from None
        log.info("loaded %s in %.2fs", manifest.dna, time.monotonic() - started)
        return LoadedVersion(manifest=manifest, model=model)

    @staticmethod
    def _warm_up(model: VersionModel) -> None:
        """One tiny generation: the first request must not pay for lazy initialisation, and a
        version that cannot generate at all is refused before it goes live."""
        generate_on(model, WARMUP)

    def _switch(self, version: LoadedVersion, revision: int, seen_at: float) -> None:
        previous = self.registry.activate(version, revision=revision)
        duration = time.monotonic() - seen_at
        self.metrics.swaps.inc()
        self.metrics.swap_duration.observe(duration)
        self.board.swapped(
            from_dna=previous.dna if previous else None,
            to_dna=version.dna,
            revision=revision,
            duration=duration,
        )
        self._publish_live(version, revision)
        log.info(
            "live: %s (revision %d, was %s, %.3fs after the pointer moved)",
            version.dna, revision, previous.dna if previous else "-", duration,
        )  # fmt: skip

    def _publish_live(self, version: LoadedVersion, revision: int) -> None:
        manifest = version.manifest
        self.metrics.set_model(
            dna=manifest.dna, revision=revision, kind=manifest.kind,
            base_model=manifest.base_model.name,
        )  # fmt: skip
        self.metrics.ready.set(1)
        self.metrics.loaded.set(len(self.registry.loaded()))

    def _refuse(self, doc: PointerDocument, target: PointerTarget, exc: TargetRefusedError) -> None:
        key = (target.dna, doc.revision, exc.code)
        if key != self._last_refusal:  # a retry that fails the same way is not news
            self._last_refusal = key
            self.board.refuse(dna=target.dna, code=exc.code, reason=str(exc), revision=doc.revision)
            self.metrics.refused.labels(reason=exc.code).inc()
            live, _ = self.registry.live()
            log.error(
                "refused %s (revision %d): %s; still serving %s",
                target.dna, doc.revision, exc, live.dna if live else "nothing",
            )  # fmt: skip
        # A version can appear later (a slow volume) or be signed later (`certmodel sign`, a key
        # rotation): those are retried; a corrupt version stays refused until the pointer moves.
        delay = {
            "missing": self.retry_missing_s,
            "unsigned": self.retry_signature_s,
            "bad-signature": self.retry_signature_s,
        }.get(exc.code)
        if delay is not None:
            with self._lock:
                if self._desired is None:
                    self._retry = (doc, time.monotonic() + delay)

    def _evict(self) -> None:
        for version in self.registry.take_evictable():
            model: VersionModel = version.model
            self.engine.run(partial(self.loader.unload, model))
            log.info("unloaded %s", version.dna)
            self.metrics.loaded.set(len(self.registry.loaded()))
