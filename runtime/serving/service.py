"""Wiring: one server = a pointer source, a reloader, an engine, a registry and the HTTP API.

Start order matters: the engine first (loads run on it), then the reloader, then the source
(its first document triggers the first load), and the HTTP listener last -- though it would be
harmless earlier: until a version is live, ``/readyz`` answers 503 and completions answer 503.
Stop reverses it, after draining: readiness turns 503 first so a load balancer stops sending,
admitted requests finish, then the listener closes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from certmodel.runtime.errors import UsageError
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.app import ApiServer
from certmodel.runtime.serving.context import Context, Limits
from certmodel.runtime.serving.engine import Engine
from certmodel.runtime.serving.metrics import ServingMetrics
from certmodel.runtime.serving.models import ModelLoader
from certmodel.runtime.serving.registry import Registry
from certmodel.runtime.serving.reloader import Reloader
from certmodel.runtime.serving.sources import PointerSource
from certmodel.runtime.serving.status import StatusBoard

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Everything ``certmodel serve`` can set (flags map one to one; see serve_cmd.py)."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8000
    served_name: str = "certmodel"
    base_model: str | None = None
    public_key: Path | None = None
    """Check signatures with this EC public key before loading (docs/signing.md)."""
    require_signature: bool = False
    """Refuse unsigned versions (needs ``public_key``); a bad signature is always refused."""
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    keep: int = 2
    grace_s: float = 30.0
    max_queue: int = 256
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.require_signature and self.public_key is None:
            raise UsageError("requiring signatures needs a public key (--public-key)")


class ServingService:
    """A running server; ``start`` returns once the port is bound (``port=0`` picks one)."""

    def __init__(self, config: ServeConfig, source: PointerSource) -> None:
        self.config = config
        self.source = source
        self.metrics = ServingMetrics()
        self.registry = Registry(keep=config.keep, grace_s=config.grace_s)
        self.engine = Engine(max_queue=config.max_queue, threads=config.threads)
        self.board = StatusBoard(source.description)
        self.reloader = Reloader(
            store=Store(config.root),
            loader=ModelLoader(Store(config.root), device=config.device, dtype=config.dtype),
            engine=self.engine,
            registry=self.registry,
            board=self.board,
            metrics=self.metrics,
            base_model=config.base_model,
            public_key=config.public_key,
            require_signature=config.require_signature,
        )
        self.context = Context(
            registry=self.registry,
            engine=self.engine,
            board=self.board,
            metrics=self.metrics,
            served_name=config.served_name,
            limits=config.limits,
        )
        self._httpd: ApiServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.engine.start()
        self.reloader.start()
        self.source.start(self.reloader.offer, self.reloader.pointer_error)
        self._httpd = ApiServer((self.config.host, self.config.port), self.context)
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http",
            daemon=True,
        )  # fmt: skip
        self._http_thread.start()
        log.info("serving on %s, following %s", self.url, self.source.description)

    def wait_ready(self, timeout: float) -> bool:
        """Block until a version is live (tests, benchmark, ``--wait``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registry.live()[0] is not None:
                return True
            time.sleep(0.02)
        return False

    def stop(self, *, drain_s: float = 30.0) -> None:
        """Drain (readiness 503, admitted requests finish), then stop every thread."""
        self.context.draining = True
        deadline = time.monotonic() + drain_s
        while self.context.admitted() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self.source.stop()
        self.reloader.stop()
        self.engine.stop()
