"""Pointer sources: where the server learns which version is CURRENT.

One interface, two implementations: :class:`FilePointerSource` follows the local ``CURRENT``
file (local mode), and ``kubesource.ConfigMapPointerSource`` watches the line's pointer
ConfigMap through the Kubernetes API (in a pod). Each runs one daemon thread and calls
``on_change`` with the whole :class:`PointerDocument` -- first the state it finds, then every
change -- and ``on_error`` when the pointer cannot be read (the server keeps serving).
Identical documents are delivered once, so a reconnect or a touch of the file costs nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from certmodel.runtime.errors import CertmodelError
from certmodel.runtime.format.pointer import POINTER_FILE, PointerDocument

log = logging.getLogger(__name__)

ChangeCallback = Callable[[PointerDocument], None]
ErrorCallback = Callable[[str], None]
REREAD_EVERY = 50


class PointerSource(ABC):
    """Delivers pointer documents to callbacks from a thread of its own."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: PointerDocument | None = None
        self._on_change: ChangeCallback = lambda doc: None
        self._on_error: ErrorCallback = lambda message: None

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the pointer lives, for logs and ``/v1/status``."""

    def start(self, on_change: ChangeCallback, on_error: ErrorCallback) -> None:
        self._on_change, self._on_error = on_change, on_error
        self._thread = threading.Thread(target=self._guarded, name="pointer-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            # Repeated: a blocking read that started just after one interrupt needs another.
            self._interrupt()
            self._thread.join(0.1)
            if time.monotonic() > deadline:
                break

    @abstractmethod
    def _run(self) -> None:
        """Follow the pointer until ``self._stop`` is set."""

    def _interrupt(self) -> None:  # noqa: B027 -- optional hook, most sources need nothing
        """Wake a blocking read so :meth:`stop` is prompt (sources that block override it)."""

    def _emit(self, doc: PointerDocument) -> None:
        if doc != self._last:
            self._last = doc
            self._on_change(doc)

    def _error(self, message: str) -> None:
        log.warning("pointer %s: %s", self.description, message)
        self._on_error(message)

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception:  # a dead source would silently freeze the served version
            log.exception("pointer source %s crashed", self.description)
            self._on_error(f"pointer source {self.description} crashed; see the server log")


class FilePointerSource(PointerSource):
    """Polls the ``CURRENT`` file's identity (inode, mtime, size) every ``interval`` seconds.

    Polling a ``stat`` is cheap and works on every file system, network volumes included, where
    inotify does not. The pointer is replaced by an atomic rename, so a read never sees half a
    document; a file that does not parse is reported once and re-read when it changes.
    """

    def __init__(self, root: Path, *, interval: float = 0.1) -> None:
        super().__init__()
        self.path = Path(root) / POINTER_FILE
        self.interval = interval

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def _run(self) -> None:
        seen: tuple[int, int, int] | str | None = "never"
        ticks = 0
        while not self._stop.is_set():
            identity = self._identity()
            # An in-place rewrite within one mtime tick keeps the identity: re-read now and then.
            if identity != seen or ticks % REREAD_EVERY == 0:
                seen = identity
                self._read()
            ticks += 1
            self._stop.wait(self.interval)

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._emit(PointerDocument())
            return
        except OSError as exc:
            self._error(f"cannot read: {exc}")
            return
        try:
            self._emit(PointerDocument.parse(text, source=str(self.path)))
        except CertmodelError as exc:
            self._error(str(exc))
