"""Helpers for the runtime fault-injection tests (tests/faults/test_runtime_faults.py).

Real processes, real signals, a real full file system:
- :func:`spawn` starts a ``certmodel`` command as a child process with its output in files
  (never pipes: a chatty child must not block on a full pipe while a test waits for it);
- :class:`PrivateTmpfs` mounts a small tmpfs in a private mount namespace (``unshare``), so a
  publication there hits a real ENOSPC without touching the machine's mounts; commands run
  inside with ``nsenter`` and the test reads the files through ``/proc/<pid>/root``;
- :class:`Server` runs ``certmodel serve`` on a fixed port (a restart keeps the address) and
  :class:`Load` keeps clients busy against it, recording every answer;
- the reloader's ``serve.before-switch`` fault point holds a swap after the new version was
  verified, loaded and warmed up and before it replaces the live one (the moment "mid-swap"
  names).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certmodel.runtime import faults
from certmodel.runtime.serving.reloader import SWAP_FAULT

PROMPT = "Q: what does the server do?\nA:"
SERVE_FAULT = SWAP_FAULT


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """servekit's poll, with a longer default: these waits span process starts and kills."""
    from serving.servekit import wait_for as poll

    return poll(what, check, timeout)


def cli(*argv: str) -> tuple[int, str, str]:
    """``certmodel ARGV`` in this process: (exit code, stdout, stderr)."""
    from certmodel.runtime.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


Runner = Callable[[list[list[str]]], list[tuple[int, str, str]]]
"""Runs several ``certmodel`` commands; (exit code, stdout, stderr) of each."""


def cli_batch(commands: list[list[str]]) -> list[tuple[int, str, str]]:
    return [cli(*argv) for argv in commands]


def cli_json(*argv: str) -> tuple[int, Any]:
    code, out, err = cli(*argv, "--json")
    assert out.strip(), f"certmodel {' '.join(argv)} printed nothing (exit {code}): {err}"
    return code, json.loads(out)


def certmodel_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "certmodel.runtime.cli.main", *argv]


@dataclass
class Child:
    """A child process whose stdout and stderr go to files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> int:
        """SIGKILL (as the kubelet or the OOM killer does); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=60)

    def running(self) -> bool:
        """True while the child runs; fails with its stderr once it has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"exited ({self.proc.returncode}):\n{self.stderr()[-3000:]}")
        return True

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    def wait_line(self, needle: str, *, stream: str = "err", timeout: float = 120) -> str:
        """Wait until the child wrote a line containing ``needle``; fail if it exited first."""

        def line() -> str | None:
            text = self.stderr() if stream == "err" else self.stdout()
            found = next((ln for ln in text.splitlines() if needle in ln), None)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before writing {needle!r}:\n"
                    f"{self.stderr()[-3000:]}"
                )
            return found

        return str(wait_for(f"{needle!r} from pid {self.proc.pid}", line, timeout))


def spawn(argv: Sequence[str], logs: Path, *, env: dict[str, str] | None = None) -> Child:
    """Start ``argv`` with output in ``logs``.out / ``logs``.err."""
    logs.parent.mkdir(parents=True, exist_ok=True)
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(list(argv), stdout=o, stderr=e, env=env)
    return Child(proc, out, err)


def env_with(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set and no fault switched on otherwise."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.setdefault("HF_HUB_OFFLINE", "1")
    # One torch thread: on a busy machine, threads that spin for a shared core make a tiny
    # model's steps ten times slower, not faster.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return {**env, **extra}


def hang_line(point: str) -> str:
    """The start of the line a ``:hang`` fault prints when ``point`` is reached."""
    return faults.HANG_MESSAGE.split("{pid}")[0].format(name=point)


def train_argv(root: Path, data: Path, *extra: str) -> list[str]:
    """``train`` arguments of a fast recipe on the tiny model (extra flags appended)."""
    return [
        "train", "--root", str(root), "--base", "tiny-llama", "--data", str(data),
        "--max-seq-len", "64", "--batch-size", "4", "--learning-rate", "3e-3",
        "--lora-r", "8", "--json", *extra,
    ]  # fmt: skip


def last_json(text: str) -> dict[str, Any]:
    """The JSON document a ``--json`` command printed on stdout."""
    start = text.index("{")
    value: dict[str, Any] = json.loads(text[start:])
    return value


# -- a small, private, really full file system ---------------------------------------------


class PrivateTmpfs:
    """A tmpfs of ``size`` mounted at ``mountpoint`` in a mount namespace of its own.

    A ``sleep`` process holds the namespace; :meth:`argv` wraps a command with ``nsenter`` so
    it runs there, and :meth:`view` is the host-side path of a file inside (through
    ``/proc/<pid>/root``). The mount disappears with the holder: nothing leaks onto the host.
    """

    def __init__(self, mountpoint: Path, size: str) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mountpoint = mountpoint
        script = (
            f"mount -t tmpfs -o size={size},mode=0755 certmodel-faults '{mountpoint}'"
            " && echo mounted && exec sleep 3600"
        )
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != "mounted":
            why = self.holder.stderr.read() if self.holder.stderr else ""
            self.close()
            raise AssertionError(f"cannot mount a private tmpfs at {mountpoint}: {why}")

    def view(self, path: Path) -> Path:
        """Where the test process sees ``path`` as the namespace sees it."""
        return Path(f"/proc/{self.holder.pid}/root") / path.relative_to("/")

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--", *argv]

    def free_bytes(self) -> int:
        st = os.statvfs(self.view(self.mountpoint))
        return st.f_bavail * st.f_frsize

    def fill(self, filler: Path, *, leave: int) -> int:
        """Fill the file system with ``filler`` until only ``leave`` bytes are free."""
        view = self.view(filler)
        with view.open("wb") as handle:
            chunk = b"\0" * 65536
            with contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    handle.write(chunk)
                    handle.flush()
        size = view.stat().st_size
        os.truncate(view, max(size - leave, 0))
        return self.free_bytes()

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=30)
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream is not None:
                stream.close()


# -- the inference server, restartable on one address -------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """``certmodel serve`` on ``port``; started (and restarted) with :meth:`start`."""

    root: Path
    logs: Path
    port: int = field(default_factory=free_port)
    child: Child | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, faults_spec: str | None = None) -> Child:
        """A new server process, with ``faults_spec`` in its ``CERTMODEL_FAULTS``."""
        self.starts += 1
        args = [
            "serve", "--root", str(self.root), "--port", str(self.port), "--threads", "1",
            "--poll-interval", "0.05", "--grace-period", "0.5", "--log-level", "WARNING",
        ]  # fmt: skip
        argv = certmodel_argv(*args)
        env = env_with(**{faults.ENV: faults_spec}) if faults_spec else env_with()
        self.child = spawn(argv, self.logs.with_name(f"{self.logs.name}-{self.starts}"), env=env)
        self.child.wait_line("serving on", stream="out")
        return self.child

    def status(self) -> dict[str, Any]:
        from serving.servekit import Client

        code, body, _ = Client(self.url).get("/v1/status")
        assert code == 200, body
        return dict(body)

    def stop(self) -> None:
        if self.child is not None and self.child.proc.poll() is None:
            self.child.proc.send_signal(signal.SIGTERM)
            try:
                self.child.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.child.kill()


@dataclass(frozen=True)
class Answer:
    """One request of the load: its HTTP code (0 = no connection), DNA, text, start time."""

    code: int
    dna: str | None
    header_dna: str | None
    text: str | None
    started: float
    error: str | None = None


class Load:
    """``clients`` threads sending greedy completions to ``url`` until stopped."""

    def __init__(self, url: str, clients: int = 3) -> None:
        from serving.servekit import Client

        self.client = Client(url)
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                code, body, headers = self.client.complete(PROMPT, max_tokens=6)
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                answer = Answer(0, None, None, None, started, error=type(exc).__name__)
                time.sleep(0.05)  # the server is down: do not spin
            else:
                ok = code == 200 and isinstance(body, dict)
                answer = Answer(
                    code,
                    body.get("dna") if ok else None,
                    headers.get("X-Model-DNA"),
                    body["choices"][0]["text"] if ok else None,
                    started,
                    error=None if ok else str(body)[:200],
                )
            with self._lock:
                self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_answers(self, what: str, check: Callable[[Answer], bool], count: int = 3) -> None:
        wait_for(what, lambda: sum(map(check, self.snapshot())) >= count)


if __name__ == "__main__":
    if sys.argv[1:2] == ["batch"]:  # commands as JSON: one process for several checks
        print(json.dumps(cli_batch(json.loads(sys.argv[2]))))
        sys.exit(0)
    from certmodel.runtime.cli.main import main

    sys.exit(main(sys.argv[1:]))
