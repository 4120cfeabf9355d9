"""Process plumbing for the local control plane: free ports, pid checks, stopping, probes.

Kept apart from ``controlplane`` so that the stop logic (SIGTERM, grace, SIGKILL, reaping, pid
reuse guards) can be read in one place.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """Ask the kernel for an unused loopback port (closed right away; the race is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def started_at(pid: int) -> float:
    """Start time of ``pid`` in epoch seconds (0.0 if unknown)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return 0.0
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def ours(pid: int, since: float, name: str = "") -> bool:
    """Guard against pid reuse: started after the cluster did (and runs ``name``)."""
    if started_at(pid) < since - 2:  # btime has 1s resolution
        return False
    if not name:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return name in cmdline


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own unreaped child) counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def gone(pid: int) -> bool:
    """True once ``pid`` has exited: reaped if it is our child, else dead or a zombie.

    A multi-threaded child (kube-apiserver) shows as a zombie before its last thread is done
    and cannot be reaped yet, so for our own children only a successful wait counts.
    """
    try:
        wpid, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not alive(pid)
    return wpid == pid


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL after ``grace`` seconds."""
    if gone(pid):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if gone(pid):
                return
            time.sleep(0.05)


def pdeathsig() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
        return int(resp.status) == 200
