"""Acceptance: ``certmodel serve`` answers from a certified adapter, and ``certmodel promote`` of
another version switches it live under load with zero failed requests; SIGTERM drains."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from serving.servekit import Client, Harness

from certmodel.runtime.cli.main import main

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def start_cli(root: str) -> tuple[subprocess.Popen[str], Client]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "certmodel.runtime.cli.main", "serve", "--root", root,
         "--port", "0", "--threads", "1", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "certmodel: serving on http://127.0.0.1:PORT"
    assert "serving on " in line, line
    return proc, Client(line.split("serving on ", 1)[1].strip())


def until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_serve_then_promote_switches_live_without_failures(harness: Harness) -> None:
    a, b, _ = harness.line.adapters
    root = str(harness.store.root)
    proc, client = start_cli(root)
    try:
        assert client.get("/readyz")[0] == 503
        assert main(["promote", a, "--root", root]) == 0
        until(lambda: client.get("/readyz")[0] == 200)
        code, body, headers = client.complete()
        assert (code, body["dna"], headers["X-Model-DNA"]) == (200, a, a)

        results: list[tuple[int, Any, dict[str, str]]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                results.append(client.complete())

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            assert main(["promote", b, "--root", root]) == 0
            until(lambda: any(r[1].get("dna") == b for r in list(results)))
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert [r for r in results if r[0] != 200] == []
        assert {r[1]["dna"] for r in results} <= {a, b}
        assert results[-1][1]["dna"] == b
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
