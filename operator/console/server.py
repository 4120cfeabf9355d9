"""Run the console beside the operator: its own thread, its own event loop.

Kopf owns the main event loop; the console gets a separate one, so a burst of reconciles
never delays a page and a slow download never delays a reconcile. A console that cannot start
(its port is taken) is logged as an error and the operator goes on reconciling: the control
loop matters more than the admin page.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiohttp import web
from kubernetes import client

from certmodel.operator.console.app import STATIC, AccessLogger, Console, build_app
from certmodel.operator.console.auth import Authenticator, DownloadTickets
from certmodel.operator.console.kubeio import ConsoleKube
from certmodel.operator.volume import ModelsVolume

log = logging.getLogger(__name__)


class ConsoleServer:
    """The console's HTTP server in a daemon thread."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None

    def start(self, timeout: float = 30) -> bool:
        """Start serving; False (with ``error`` set) if it could not listen."""
        self._thread = threading.Thread(target=self._run, name="certmodel-console", daemon=True)
        self._thread.start()
        self._started.wait(timeout)
        return self.error is None and self._started.is_set()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app, access_log_class=AccessLogger)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
        except BaseException as exc:
            self.error = exc
            self._started.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self, timeout: float = 10) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


def start_console(
    api: client.ApiClient,
    volume: ModelsVolume,
    *,
    host: str,
    port: int,
    namespaces: tuple[str, ...] | None,
) -> ConsoleServer | None:
    """Serve the console on ``host:port`` for ``namespaces`` (None: all); None if it failed."""
    if not (STATIC / "index.html").is_file():
        log.error("the admin console's page is missing from the install (%s)", STATIC)
    kube = ConsoleKube(api)
    console = Console(
        kube=kube,
        auth=Authenticator(kube),
        volume=volume,
        namespaces=namespaces,
        tickets=DownloadTickets(),
    )
    server = ConsoleServer(build_app(console), host=host, port=port)
    if not server.start():
        log.error(
            "the admin console could not listen on %s:%d (%s); the operator runs without it",
            host,
            port,
            server.error or "timed out",
        )
        return None
    log.info("admin console on http://%s:%d/", host, port)
    return server
