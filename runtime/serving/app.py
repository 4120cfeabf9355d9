"""HTTP endpoints: OpenAI-compatible generation, health, readiness, status and metrics.

Built on the standard library's ``ThreadingHTTPServer``: one thread per connection, HTTP/1.1
keep-alive, no extra dependency in the inference image. The threads only parse, validate and
wait; generation itself is serialised on the engine's worker (engine.py), so the HTTP layer
needs no async machinery to be correct under concurrency. Completions: see completions.py.

Every response carries ``X-Model-DNA``: the version that produced a completion, or the live
version for the other endpoints.
"""

from __future__ import annotations

import json
import logging
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from certmodel.runtime.serving.completions import PATHS, handle_post
from certmodel.runtime.serving.context import ApiError, Context, Response, json_response
from certmodel.runtime.serving.openai import error_body, models_body

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
DNA_HEADER = "X-Model-DNA"


def handle_get(ctx: Context, path: str) -> Response:
    dna = ctx.live_dna()
    if path == "/healthz":
        return json_response(200, {"status": "ok"}, dna=dna)
    if path == "/readyz":
        ready = dna is not None and not ctx.draining
        return json_response(200 if ready else 503, {"ready": ready, "dna": dna}, dna=dna)
    if path == "/metrics":
        return Response(200, ctx.metrics.render(), ctx.metrics.content_type, dna=dna)
    if path == "/v1/models":
        return json_response(200, models_body(ctx.served_name, dna, ctx.registry.loaded()), dna=dna)
    if path == "/v1/status":
        return json_response(200, status_json(ctx), dna=dna)
    raise ApiError(HTTPStatus.NOT_FOUND, f"no route GET {path}", "not_found_error")


def status_json(ctx: Context) -> dict[str, Any]:
    live, revision = ctx.registry.live()
    status = ctx.board.build(
        dna=live.dna if live else None,
        revision=revision,
        loaded=ctx.registry.loaded(),
        inflight=ctx.admitted(),
    )
    return status.model_dump(mode="json")


class Handler(BaseHTTPRequestHandler):
    """Routes a request to :func:`handle_get` / :func:`handle_post` and writes the response."""

    protocol_version = "HTTP/1.1"
    timeout = 75  # idle keep-alive connections are closed after this many seconds
    server: ApiServer

    def do_GET(self) -> None:
        self._dispatch(lambda ctx, path: handle_get(ctx, path))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._send(self.server.context, self._error(413, "body too large", "invalid_request"))
            return
        raw = self.rfile.read(length)
        self._dispatch(lambda ctx, path: handle_post(ctx, path, raw))

    def _dispatch(self, handler: Any) -> None:
        ctx = self.server.context
        path = self.path.split("?", 1)[0]
        started = time.perf_counter()
        try:
            response = handler(ctx, path)
        except ApiError as exc:
            response = self._error(exc.status, str(exc), exc.kind, exc.code)
        except Exception as exc:
            log.exception("%s %s failed", self.command, path)
            response = self._error(500, f"internal error: {type(exc).__name__}", "server_error")
        if response.dna is None:
            response.dna = ctx.live_dna()
        self._send(ctx, response)
        endpoint = path if path in _ENDPOINTS else "other"
        ctx.metrics.requests.labels(endpoint=endpoint, code=str(response.status)).inc()
        ctx.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)

    def _error(self, status: int, message: str, kind: str, code: str | None = None) -> Response:
        headers = {"Retry-After": "1"} if status == 503 else {}
        body = json.dumps(error_body(message, kind=kind, code=code)).encode("utf-8")
        return Response(status, body, headers=headers)

    def _send(self, ctx: Context, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.dna:
            self.send_header(DNA_HEADER, response.dna)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


_ENDPOINTS = frozenset(["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/status", *PATHS])


class ApiServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the handlers' :class:`Context`."""

    daemon_threads = True  # idle keep-alive connections must not block shutdown
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: Context) -> None:
        self.context = context
        super().__init__(address, Handler)
