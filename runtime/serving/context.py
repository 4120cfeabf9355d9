"""What the HTTP handlers share: the server's parts, its limits, and the HTTP result types."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from certmodel.runtime.serving.engine import Engine
from certmodel.runtime.serving.metrics import ServingMetrics
from certmodel.runtime.serving.registry import Registry
from certmodel.runtime.serving.status import StatusBoard


@dataclass
class Limits:
    default_max_tokens: int = 16
    max_tokens: int = 512
    request_timeout_s: float = 300.0


@dataclass
class Context:
    """Built once by service.py; handlers run on many threads and only read it, except the
    admission counter (which drain waits on: it includes requests still queued)."""

    registry: Registry
    engine: Engine
    board: StatusBoard
    metrics: ServingMetrics
    served_name: str = "certmodel"
    limits: Limits = field(default_factory=Limits)
    draining: bool = False
    _admitted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admitted(self, delta: int = 0) -> int:
        """Generation requests admitted and not finished (after adding ``delta``)."""
        with self._lock:
            self._admitted += delta
            return self._admitted

    def live_dna(self) -> str | None:
        live, _ = self.registry.live()
        return live.dna if live else None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    dna: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error with its HTTP status and OpenAI-style body."""

    def __init__(
        self, status: HTTPStatus, message: str, kind: str, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


def json_response(status: int, value: Any, *, dna: str | None = None) -> Response:
    return Response(status, json.dumps(value).encode("utf-8"), dna=dna)
