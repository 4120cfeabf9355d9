"""Pod status for the local node agent: container bookkeeping and kubelet's status rules.

Kept apart from ``podrunner`` (which starts and stops processes) so the rules that decide what
the job controller and watchers see (phase, conditions, containerStatuses) read in one place.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from localcluster.podspec import Json

BACKOFF_START = 2.0  # kubelet: 10s doubling to 300s; shorter here, for tests


@dataclass
class Ctr:
    """A container's process and the facts its status is made of."""

    spec: Json
    proc: subprocess.Popen[bytes] | None = None
    started: str = ""
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    restarts: int = 0
    ready: bool = False
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    next_probe: float = 0.0
    next_live_probe: float = 0.0
    live_failures: int = 0
    done: bool = False  # exited and will not be restarted


def pod_status(
    ctrs: list[Ctr], *, initialized: bool, volumes_ready: bool, init: bool, start_time: str
) -> Json:
    """The pod's status as a kubelet would post it (phase by kubelet's rules).

    ``init``: ``ctrs`` holds the init container being run, reported as initContainerStatuses.
    """
    statuses = []
    for c in ctrs:
        s = {
            "name": c.spec["name"],
            "image": c.spec.get("image", ""),
            "imageID": "",
            "ready": c.ready,
            "started": "running" in c.state,
            "restartCount": c.restarts,
            "state": c.state,
        }
        if c.last_state:
            s["lastState"] = c.last_state
        if "running" in c.state and c.proc:
            s["containerID"] = f"local://{c.proc.pid}"
        elif "terminated" in c.state and c.state["terminated"].get("containerID"):
            s["containerID"] = c.state["terminated"]["containerID"]
        statuses.append(s)
    terms = [c.state.get("terminated") for c in ctrs]
    if not initialized:
        first = ctrs[0] if init and ctrs else None
        code = ((first.state.get("terminated") or {}).get("exitCode") if first else None) or 0
        failed_init = bool(first and first.done and code != 0)
        phase = "Failed" if failed_init else "Pending"
    elif all(c.done for c in ctrs):
        phase = "Succeeded" if all(t and t["exitCode"] == 0 for t in terms) else "Failed"
    elif any("running" in c.state or c.restarts or "terminated" in c.state for c in ctrs):
        phase = "Running"
    else:
        phase = "Pending"
    ready = initialized and phase == "Running" and all(c.ready for c in ctrs)
    done = phase in ("Succeeded", "Failed")

    def cond(t: str, ok: bool, reason: str = "") -> Json:
        d: Json = {"type": t, "status": "True" if ok else "False"}
        if reason and not ok:
            d["reason"] = reason
        return d

    reason = "PodCompleted" if done else "ContainersNotReady"
    status: Json = {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": start_time,
        "conditions": [
            cond("PodReadyToStartContainers", volumes_ready and not done),
            cond(
                "Initialized",
                initialized or (done and not init),
                "ContainersNotInitialized",
            ),
            cond("ContainersReady", ready, reason),
            cond("Ready", ready, reason),
            cond("PodScheduled", True),
        ],
        "initContainerStatuses" if init else "containerStatuses": statuses,
    }
    return status
