"""Hot swap vs. restart: how long until the new version answers, and how many requests fail.

Side by side, in one run, against real ``certmodel serve`` processes on 127.0.0.1 under a steady
closed-loop load (``--clients`` threads, each sending its next completion when the last one
returned):

* **hot swap, fresh load** (``--keep 1 --grace-period 0``): every promotion verifies, loads and
  warms up an adapter that is not in memory;
* **hot swap, kept version** (``--keep 2``): promotions alternate between two versions that both
  stay loaded -- the rollback path;
* **restart** (the baseline): stop the server (SIGTERM, drained), move CURRENT, start a new one;
  timed from the SIGTERM.

*Swap latency* runs from the moment the pointer file was replaced to the first response produced
by the new version. *Failed* counts every request that got no 200 (connection refused included)
while the swaps ran. Model: ``ROOT/base_models/smollm2-135m`` when it exists (``certmodel
prepare-base smollm2-135m``), else a tiny random Llama built on the spot; the adapters are random
LoRA weights (their quality is irrelevant here).

    .venv/bin/python benchmarks/bench_serving.py [--root ROOT] [--swaps 20] [--restarts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certmodel.runtime.format.store import Store, default_root
from certmodel.runtime.localmode import promote_local

REAL_BASE = "smollm2-135m"
RETRY_S = 0.05


@dataclass
class Record:
    sent: float
    done: float
    ok: bool
    dna: str | None


@dataclass
class Result:
    mode: str
    latencies: list[float] = field(default_factory=list)
    server_swaps: list[float] = field(default_factory=list)
    request_s: list[float] = field(default_factory=list)
    requests: int = 0
    failed: int = 0


class Load:
    """``clients`` threads in a closed loop of completions against ``url``."""

    def __init__(self, url: str, clients: int, max_tokens: int) -> None:
        self.url = url
        self.body = json.dumps(
            {"prompt": "The certified model says", "max_tokens": max_tokens, "temperature": 0}
        ).encode()
        self.records: list[Record] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def first_by(self, dna: str, after: float, timeout: float = 600.0) -> float:
        """Seconds from ``after`` to the first response produced by ``dna``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [r.done for r in list(self.records) if r.dna == dna and r.done > after]
            if done:
                return min(done) - after
            time.sleep(0.005)
        raise TimeoutError(f"{dna} never answered")

    def _loop(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            request = urllib.request.Request(  # noqa: S310 -- our own http:// URL
                self.url + "/v1/completions", data=self.body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310 -- http
                    dna = json.loads(resp.read())["dna"]
                self.records.append(Record(sent, time.monotonic(), True, dna))
            except (urllib.error.URLError, OSError, ValueError):
                self.records.append(Record(sent, time.monotonic(), False, None))
                time.sleep(RETRY_S)  # a refused connection returns at once: do not spin


class Server:
    """One ``certmodel serve`` process."""

    def __init__(self, root: Path, port: int, *flags: str) -> None:
        cmd = [sys.executable, "-m", "certmodel.runtime.cli.main", "serve", "--root",
               str(root), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
               *flags]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving on " not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line.split("serving on ", 1)[1].strip()

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/v1/status", timeout=30) as resp:  # noqa: S310
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def wait_live(self, dna: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.status()["dna"] == dna:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{dna} never went live")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def hot_swaps(store: Store, dnas: list[str], args: argparse.Namespace, *, keep: int) -> Result:
    mode = "hot swap, fresh load" if keep == 1 else "hot swap, kept version"
    result = Result(mode)
    promote_local(store, dnas[0])
    server = Server(store.root, 0, "--keep", str(keep), "--grace-period", "0", *_thread_flags(args))
    try:
        server.wait_live(dnas[0])
        with Load(server.url, args.clients, args.max_tokens) as load:
            for i in range(1, args.swaps + 1):
                dna = dnas[i % 2]
                if keep == 1:  # make sure the target is really out of memory before
                    _wait(lambda d=dna: d not in server.status()["loaded"])
                promote_local(store, dna)
                moved = time.monotonic()
                result.latencies.append(load.first_by(dna, moved))
                result.server_swaps.append(server.status()["last_swap"]["duration_s"])
                time.sleep(args.gap)
        _tally(result, load)
    finally:
        server.stop()
    return result


def restarts(store: Store, dnas: list[str], args: argparse.Namespace) -> Result:
    result = Result("restart (baseline)")
    port = _free_port()
    promote_local(store, dnas[0])
    server = Server(store.root, port, *_thread_flags(args))
    server.wait_live(dnas[0])
    with Load(server.url, args.clients, args.max_tokens) as load:
        for i in range(1, args.restarts + 1):
            dna = dnas[i % 2]
            moved = time.monotonic()
            server.stop()  # first: a running server would hot-swap to the new pointer itself
            promote_local(store, dna)
            server = Server(store.root, port, *_thread_flags(args))
            result.latencies.append(load.first_by(dna, moved))
            time.sleep(args.gap)
    server.stop()
    _tally(result, load)
    return result


def prepare(root: Path, model: str) -> tuple[Store, list[str], str]:
    """Two adapter versions on the real base if prepared, else on a random Llama."""
    from certmodel.runtime.serving import tiny

    store = Store(root)
    if model == "auto" and (store.base_models_dir / REAL_BASE).is_dir():
        base = REAL_BASE
    elif model == "tiny":
        base = tiny.build_base(store, "tiny-llama").name
    else:
        base = tiny.build_base(store, "random-smollm2-shape", shape="smollm2-135m").name
    dnas = [tiny.publish_adapter(store, base, seed=900 + s, scale=0.5).dna for s in (1, 2)]
    return store, dnas, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=default_root(),
        help="store with base_models/ (default: $CERTMODEL_ROOT, else temp)",
    )
    parser.add_argument(
        "--model",
        choices=["auto", "smollm2-shape", "tiny"],
        default="auto",
        help="auto: the prepared smollm2-135m if present, else smollm2-shape",
    )
    parser.add_argument("--swaps", type=int, default=20, help="hot swaps per hot mode")
    parser.add_argument("--restarts", type=int, default=5, help="restarts for the baseline")
    parser.add_argument("--clients", type=int, default=2, help="concurrent closed-loop clients")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between swaps")
    parser.add_argument("--threads", type=int, help="torch threads of the server")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = args.root or Path(tmp) / "models"
        root.mkdir(parents=True, exist_ok=True)
        store, dnas, base = prepare(root, args.model)
        results = [
            hot_swaps(store, dnas, args, keep=1),
            hot_swaps(store, dnas, args, keep=2),
            restarts(store, dnas, args),
        ]
    print(report(results, base, args, argv if argv is not None else sys.argv[1:]))
    return 0


def report(results: list[Result], base: str, args: argparse.Namespace, argv: list[str]) -> str:
    lines = [
        f"Serving swap benchmark — base `{base}`, {args.clients} clients, max_tokens"
        f" {args.max_tokens}, {os.cpu_count()} CPUs",
        "",
        "| mode | swaps | to first new answer p50 / p95 / max (s) | server swap p50 / p95 (s)"
        " | request p50 (s) | requests | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = sorted(r.latencies)
        server = (
            f"{_pct(r.server_swaps, 50):.3f} / {_pct(r.server_swaps, 95):.3f}"
            if r.server_swaps
            else "-"
        )
        lines.append(
            f"| {r.mode} | {len(lat)} | {_pct(lat, 50):.3f} / {_pct(lat, 95):.3f} /"
            f" {lat[-1]:.3f} | {server} | {_pct(r.request_s, 50):.3f} | {r.requests}"
            f" | {r.failed} |"
        )
    lines += [
        "",
        "*to first new answer*: pointer file replaced → first response produced by the new"
        " version, seen by a client. *server swap*: pointer seen → new version live (verify,"
        " load, warm-up, switch), from `/v1/status`. Failed requests of the restart baseline are"
        f" the load's retries while the port was closed (one every {RETRY_S}s per client).",
    ]
    command = shlex.join([sys.executable, "benchmarks/bench_serving.py", *argv])
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def _pct(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[pct - 1]


def _tally(result: Result, load: Load) -> None:
    result.requests = len(load.records)
    result.failed = sum(1 for r in load.records if not r.ok)
    result.request_s = [r.done - r.sent for r in load.records if r.ok]


def _thread_flags(args: argparse.Namespace) -> list[str]:
    return ["--threads", str(args.threads)] if args.threads else []


def _wait(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
