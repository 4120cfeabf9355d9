"""Helpers for the serving tests and their fixtures: an HTTP client and a test harness."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certmodel.runtime.format.pointer import FilePointer, PointerDocument, PointerTarget
from certmodel.runtime.format.store import Store

PROMPT = "the cat sees"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass(frozen=True)
class Line:
    """DNAs of the template line: adapters on ``tiny-llama``, a merged one, a foreign base."""

    root: Path
    adapters: list[str]
    merged: str
    other_base: str


@dataclass
class Client:
    """A tiny HTTP client for one server (urllib: a fresh connection per request)."""

    url: str

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        return self._call(urllib.request.Request(self.url + path))

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return self._call(urllib.request.Request(self.url + path, data=data, headers=headers))

    def complete(self, prompt: str = PROMPT, **extra: Any) -> tuple[int, Any, dict[str, str]]:
        body = {"prompt": prompt, "max_tokens": 6, "temperature": 0, **extra}
        return self.post("/v1/completions", body)

    def _call(self, request: urllib.request.Request) -> tuple[int, Any, dict[str, str]]:
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, _decode(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read()), dict(exc.headers)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


@dataclass
class Harness:
    """A copy of the line, its pointer, and the servers started on it."""

    store: Store
    line: Line
    services: list[Any] = field(default_factory=list)

    def start(self, **config: Any) -> tuple[Any, Client]:
        from certmodel.runtime.serving.service import ServeConfig, ServingService
        from certmodel.runtime.serving.sources import FilePointerSource

        settings = {"root": self.store.root, "port": 0, "threads": 1, "grace_s": 0.5, **config}
        service = ServingService(
            ServeConfig(**settings), FilePointerSource(self.store.root, interval=0.05)
        )
        service.start()
        self.services.append(service)
        return service, Client(service.url)

    def point(self, dna: str, /, **changes: Any) -> PointerDocument:
        """Move CURRENT to ``dna`` without the CLI's checks (as a stale or hostile writer might)."""
        from certmodel.runtime.format import pointer

        target = PointerTarget.from_manifest(self.store.read_manifest(dna))
        if changes:
            target = target.model_copy(update=changes)
        ptr = FilePointer(self.store.root)
        doc = ptr.read()
        new = pointer.promote(doc, target, allow_base_change=True)
        return ptr.swap(new, expected_revision=doc.revision)
