"""Named fault-injection points, switched on by the ``CERTMODEL_FAULTS`` environment variable.

Production code calls :func:`point` at the steps where a crash matters (between writing a
version's files and renaming it into place, say). With the variable unset this is a dictionary
lookup and nothing else. The fault tests set ``CERTMODEL_FAULTS=publish.before-rename`` to raise
:class:`InjectedFault` there, or ``publish.before-rename:kill`` to SIGKILL the process -- a real
crash, as a killed pod would see it.
"""

from __future__ import annotations

import os
import signal

ENV = "CERTMODEL_FAULTS"


class InjectedFault(RuntimeError):  # noqa: N818 -- reads as what happened
    """Raised at a fault point named in ``CERTMODEL_FAULTS``."""


def point(name: str) -> None:
    """Crash here if the fault ``name`` is switched on."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        fault, _, action = item.strip().partition(":")
        if fault != name:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault at {name}")
