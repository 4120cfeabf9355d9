"""Run one Pod's containers as local processes and report its status (local node agent).

Test/dev infrastructure, a kubelet in miniature: one thread per pod. Each container runs in its
own private mount namespace (``unshare -m`` + ``nsexec.py``) so the pod's volumes appear at
their absolute mountPaths without touching the host. The pod's status follows kubelet rules
(phase from restartPolicy and exit codes, Ready/ContainersReady/Initialized/PodScheduled
conditions, termination messages), so the job controller and anything watching pods see what
they would see on a real node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster import podspec
from localcluster.podspec import Json, NotReadyError, PodContext
from localcluster.podstatus import Ctr, pod_status

log = logging.getLogger("localcluster.nodeagent")
NSEXEC = str(Path(__file__).with_name("nsexec.py"))
BACKOFF_MAX = 60.0
TOKEN_REFRESH_S = 600.0


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AgentContext:
    """What every pod worker shares with the agent."""

    core: Any
    node: Json
    state_dir: Path
    api_port: int
    venv_bin: str | None


class PodWorker(threading.Thread):
    def __init__(self, agent: AgentContext, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.dir = agent.state_dir / "pods" / self.uid
        self.logs = agent.state_dir / "logs" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.deleting = threading.Event()
        self.gone = threading.Event()
        self.stopping = threading.Event()  # agent shutdown
        self.ctrs: list[Ctr] = []
        self.initialized = False
        self.volumes_ready = False
        self.start_time = (pod.get("status") or {}).get("startTime") or now()
        self._sent: Json = {}

    # ---------------------------------------------------------------- events from the agent
    def update(self, pod: Json) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def _wait(self, seconds: float) -> bool:
        """Sleep; True when the pod is going away (deleted or agent stopping)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.deleting.is_set() or self.gone.is_set() or self.stopping.is_set():
                return True
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        return False

    # ---------------------------------------------------------------- main loop
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s: worker crashed", self.key)
            self._kill_all(grace=2.0)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        ctx = PodContext(self.agent.core, self.pod, self.agent.node, self.dir)
        spec = self.pod["spec"]
        self._report()
        vols = self._retry(ctx.volumes)
        if vols is None:
            return self._finish()
        self.volumes_ready = True
        for init in spec.get("initContainers") or []:
            if not self._run_init(ctx, init, vols):
                return self._finish()
        self.initialized = True
        self.ctrs = [Ctr(c) for c in spec["containers"]]
        next_refresh = time.monotonic() + TOKEN_REFRESH_S
        while not (self.deleting.is_set() or self.gone.is_set() or self.stopping.is_set()):
            for c in self.ctrs:
                self._tend(ctx, c, vols)
            self._report()
            if all(c.done for c in self.ctrs):
                break  # terminal: Succeeded or Failed; wait below for deletion
            if time.monotonic() > next_refresh:
                self._retry(lambda: ctx.volumes(refresh_only=True), once=True)
                next_refresh = time.monotonic() + TOKEN_REFRESH_S
            time.sleep(0.25)
        while not self._wait(3600):
            pass
        self._finish()

    def _retry(self, fn: Any, once: bool = False) -> Any:
        delay = 0.5
        while True:
            try:
                return fn()
            except NotReadyError as e:
                log.info("pod %s: waiting: %s", self.key, e)
            except Exception as e:
                log.warning("pod %s: %s", self.key, e)
            if once or self._wait(delay):
                return None
            delay = min(delay * 2, 10.0)

    # ---------------------------------------------------------------- containers
    def _start(self, ctx: PodContext, c: Ctr, vols: dict[str, str]) -> None:
        spec = c.spec
        name = spec["name"]
        cdir = self.dir / "containers" / name
        cdir.mkdir(parents=True, exist_ok=True)
        term = cdir / "termination-log"
        term.write_bytes(b"")
        env = ctx.env(spec, ctx.base_env(self.agent.venv_bin, self.agent.api_port))
        argv = [
            podspec.expand(a, env) for a in (spec.get("command") or []) + (spec.get("args") or [])
        ]
        if not argv:
            raise RuntimeError("container has no command: the local node agent runs no images")
        mounts = podspec.mounts(spec, vols, env, term)
        work = self.dir / "work"
        work.mkdir(exist_ok=True)
        scratch = cdir / "scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        nsspec = {
            "mounts": mounts,
            "cwd": spec.get("workingDir") or str(work),
            "argv": argv,
            "env": env,
            "scratch": str(scratch),
            "keep": _kept_paths(self.agent.venv_bin),
        }
        (cdir / "spec.json").write_text(json.dumps(nsspec))
        out = (self.logs / f"{name}.log").open("ab")
        c.proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "--",
                sys.executable,
                NSEXEC,
                str(cdir / "spec.json"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": env["PATH"]},
            cwd=str(work),
        )
        out.close()
        (self.dir / f"{name}.pid").write_text(f"{c.proc.pid}\n")
        c.started = now()
        c.state = {"running": {"startedAt": c.started}}
        c.ready = not spec.get("readinessProbe")
        start = time.monotonic()
        ready_probe, live_probe = spec.get("readinessProbe") or {}, spec.get("livenessProbe") or {}
        c.next_probe = start + float(ready_probe.get("initialDelaySeconds") or 0)
        c.next_live_probe = start + float(live_probe.get("initialDelaySeconds") or 0)
        c.live_failures = 0
        log.info(
            "pod %s: started %s (pid %d): %s", self.key, name, c.proc.pid, podspec.describe(argv)
        )

    def _exited(self, c: Ctr, code: int) -> None:
        spec = c.spec
        if c.proc is not None:
            # Like a container's cgroup: whatever the main process left behind dies with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            (self.dir / f"{spec['name']}.pid").unlink(missing_ok=True)
        msg = ""
        term = self.dir / "containers" / spec["name"] / "termination-log"
        if term.exists():
            msg = term.read_bytes()[:4096].decode(errors="replace")
        if (
            not msg
            and code != 0
            and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            lines = (self.logs / f"{spec['name']}.log").read_bytes().splitlines()[-80:]
            msg = b"\n".join(lines)[-12288:].decode(errors="replace")
        t: Json = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started,
            "finishedAt": now(),
            "containerID": f"local://{c.proc.pid if c.proc else 0}",
        }
        if code < 0:  # killed by a signal: report as a shell would
            t["exitCode"] = 128 - code
            t["signal"] = -code
        if msg:
            t["message"] = msg
        c.state = {"terminated": t}
        c.ready = False
        c.proc = None
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            c.done = True
        else:
            c.next_start = time.monotonic() + c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _tend(self, ctx: PodContext, c: Ctr, vols: dict[str, str]) -> None:
        if c.done:
            return
        if c.proc is None:
            if time.monotonic() < c.next_start:
                if "terminated" in c.state:
                    c.last_state, c.state = (
                        c.state,
                        {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off restarting failed container {c.spec['name']}",
                            }
                        },
                    )
                return
            if "terminated" in c.last_state or "terminated" in c.state:
                c.restarts += 1
                if "terminated" in c.state:
                    c.last_state = c.state
            try:
                self._start(ctx, c, vols)
            except NotReadyError as e:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
                c.next_start = time.monotonic() + 1.0
            except Exception as e:
                c.started = c.started or now()
                c.state = {
                    "terminated": {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": str(e),
                        "startedAt": c.started,
                        "finishedAt": now(),
                    }
                }
                self._exited_start_error(c)
            return
        code = c.proc.poll()
        if code is not None:
            self._exited(c, code)
            return
        self._probe(c)

    def _exited_start_error(self, c: Ctr) -> None:
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        if policy == "Never":
            c.done = True
        else:
            c.next_start = time.monotonic() + c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _probe(self, c: Ctr) -> None:
        """Readiness and liveness on their own schedules, as a kubelet runs them.

        Readiness is retried every second until its first success (faster than a kubelet, so
        tests need not wait a full period); liveness keeps its period and failure threshold, so
        a slow-starting server is not killed before it had the time the spec grants it.
        """
        if c.proc is None:
            return
        now = time.monotonic()
        rp, lp = c.spec.get("readinessProbe"), c.spec.get("livenessProbe")
        if rp and now >= c.next_probe:
            ok = podspec.probe(rp, c.spec, c.proc.pid)
            c.ready = ok
            period = float(rp.get("periodSeconds") or 10)
            c.next_probe = now + (period if ok else min(period, 1.0))
        if lp and now >= c.next_live_probe:
            c.next_live_probe = now + float(lp.get("periodSeconds") or 10)
            if podspec.probe(lp, c.spec, c.proc.pid):
                c.live_failures = 0
                return
            c.live_failures += 1
            if c.live_failures >= int(lp.get("failureThreshold") or 3):
                log.info("pod %s: liveness failed for %s, killing", self.key, c.spec["name"])
                c.live_failures = 0
                self._kill(c, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def _run_init(self, ctx: PodContext, spec: Json, vols: dict[str, str]) -> bool:
        c = Ctr(spec)
        self.ctrs = [c]
        while not self._wait(0.25):
            self._tend(ctx, c, vols)
            self._report(init=True)
            term = c.state.get("terminated") or {}
            if c.proc is None and term and term.get("exitCode") == 0:
                return True
            if c.done:
                return False  # failed with restartPolicy Never: pod Failed
        return False

    # ---------------------------------------------------------------- stopping
    def _kill(self, c: Ctr, grace: float) -> None:
        if c.proc is None:
            return
        try:
            os.killpg(c.proc.pid, signal.SIGTERM)
            c.proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait()
        except ProcessLookupError:
            c.proc.wait()
        self._exited(c, c.proc.returncode)

    def _kill_all(self, grace: float) -> None:
        threads = [
            threading.Thread(target=self._kill, args=(c, grace)) for c in self.ctrs if c.proc
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in self.ctrs:
            c.done = True

    def _finish(self) -> None:
        """Stop containers; if the pod is being deleted, do the kubelet's final delete."""
        if self.stopping.is_set() and not self.deleting.is_set():
            self._kill_all(grace=5.0)
            return
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        self._kill_all(grace=float(grace))
        if not self.gone.is_set():
            try:
                self._report()
                self.agent.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    grace_period_seconds=0,
                    body=client.V1DeleteOptions(
                        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)
                    ),
                )
            except ApiException as e:
                if e.status not in (404, 409):
                    log.warning("pod %s: final delete failed: %s", self.key, e.reason)
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("pod %s: removed", self.key)

    # ---------------------------------------------------------------- status
    def _report(self, init: bool = False) -> None:
        status = pod_status(
            self.ctrs,
            initialized=self.initialized,
            volumes_ready=self.volumes_ready,
            init=init,
            start_time=self.start_time,
        )
        if self._sent == status:
            return
        body = json.loads(json.dumps(status))
        stamp = now()
        for c in body["conditions"]:
            c["lastTransitionTime"] = self._transition(c, stamp)
        try:
            self.agent.core.patch_namespaced_pod_status(
                self.pod["metadata"]["name"], self.pod["metadata"]["namespace"], {"status": body}
            )
            self._sent = status
        except ApiException as e:
            if e.status == 404:
                self.gone.set()
            else:
                log.warning("pod %s: status update failed: %s %s", self.key, e.status, e.reason)

    def _transition(self, cond: Json, stamp: str) -> str:
        prev = {c["type"]: c for c in (self._sent.get("conditions") or [])}.get(cond["type"])
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        if prev and prev["status"] == cond["status"] and cond["type"] in old:
            return str(old[cond["type"]].get("lastTransitionTime") or stamp)
        return stamp


def _kept_paths(venv_bin: str | None) -> list[str]:
    """Host folders a container must still see after its volumes are mounted: the project
    and its venv. An emptyDir at /tmp would otherwise hide a checkout that lives under /tmp
    (a CI clone), and with it the `certmodel` command the container runs."""
    if not venv_bin:
        return []
    venv = Path(venv_bin).resolve().parent
    return [str(venv.parent), str(venv)]
