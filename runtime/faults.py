"""Named fault-injection points, switched on by the ``CERTMODEL_FAULTS`` environment variable.

Production code calls :func:`point` at the steps where a crash matters (between writing a
version's files and renaming it into place, say). With the variable unset this is a dictionary
lookup and nothing else. The variable holds comma-separated ``name[:action]`` items:

- ``publish.before-rename`` (no action, or ``:raise``) raises :class:`InjectedFault` there;
- ``publish.before-rename:kill`` SIGKILLs the process -- a real crash, as a killed pod would
  see it;
- ``publish.before-rename:hang`` prints one line to stderr (``certmodel: fault point NAME
  reached in pid N: hanging``) and blocks the calling thread until the process is killed, so
  a test can look at the state mid-operation and then kill the process from outside, as the
  kubelet or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "CERTMODEL_FAULTS"
HANG_MESSAGE = "certmodel: fault point {name} reached in pid {pid}: hanging"


class InjectedFault(RuntimeError):  # noqa: N818 -- reads as what happened
    """Raised at a fault point named in ``CERTMODEL_FAULTS``."""


def point(name: str) -> None:
    """Crash (or hang) here if the fault ``name`` is switched on."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        fault, _, action = item.strip().partition(":")
        if fault != name:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "hang":
            print(HANG_MESSAGE.format(name=name, pid=os.getpid()), file=sys.stderr, flush=True)
            threading.Event().wait()  # until killed; a daemon thread dies with its process
        if action not in ("", "raise"):
            raise InjectedFault(f"injected fault at {name} (unknown action {action!r})")
        raise InjectedFault(f"injected fault at {name}")
