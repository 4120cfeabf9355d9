"""Helpers for the operator tests: a handle on the namespace, the volume and the operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster.pytest_plugin import KubeCluster

from certmodel.operator.api import GROUP, VERSION
from certmodel.runtime.format.store import Store

CLAIM = "certmodel-models"


@dataclass
class OperatorEnv:
    cluster: KubeCluster
    namespace: str
    store: Store
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Every operator process started and not yet stopped (peered replicas: more than one)."""

    def apply(self, manifest: str) -> None:
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=manifest)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        from kubernetes import client

        with self.cluster.api_client() as api:
            obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        return obj

    def config_map(self, name: str) -> dict[str, Any] | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.cluster.api_client() as api:
            try:
                cm = client.CoreV1Api(api).read_namespaced_config_map(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            out: dict[str, Any] = api.sanitize_for_serialization(cm)
        return out

    def wait(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.get(plural, name)
            if predicate(obj):
                return obj
            self.check_alive()
            time.sleep(0.3)
        raise AssertionError(
            f"{plural}/{name} never got there; status: {obj.get('status')}\n"
            f"operator log tail:\n{self.log_tail()}"
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        out = self.cluster.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "jsonpath={range .items[*]}{.reason}={.type}{'\\n'}{end}",
        )
        return [tuple(line.split("=", 1)) for line in out.stdout.split()]  # type: ignore[misc]

    def start_operator(
        self, *extra_args: str, standalone: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the operator on this namespace; ``extra_args`` are more command-line flags.

        ``standalone=False`` leaves out ``--standalone`` (for peered replicas: pass
        ``--peering NAME``); ``env`` adds environment variables (``CERTMODEL_FAULTS``). Each call
        starts one more process: ``proc`` is the newest, ``procs`` all of them.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("certmodel-operator")
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(exe),
                    "--kubeconfig",
                    str(self.cluster.kubeconfig),
                    "--namespace",
                    self.namespace,
                    "--models-root",
                    str(self.store.root),
                    "--models-claim",
                    CLAIM,
                    "--trainer-image",
                    "local/runtime:test",
                    "--trainer-service-account",
                    "default",
                    "--metrics-port",
                    "0",
                    "--health-port",
                    "0",
                    "--console-port",  # tests that want the console pass their own port
                    "0",
                    *(["--standalone"] if standalone else []),
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self.proc = proc
        self.procs.append(proc)
        return proc

    def stop_operator(self) -> None:
        """Stop every operator process started here (SIGTERM, then SIGKILL after 15 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
        self.proc = None

    def kill_operator(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        """SIGKILL one operator process (default: the newest), as a node failure would."""
        proc = proc or self.proc
        assert proc is not None, "no operator process to kill"
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        self.forget(proc)

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop tracking ``proc`` (it exited on purpose: killed, or crashed by a fault point)."""
        self.procs = [p for p in self.procs if p is not proc]
        if self.proc is proc:
            self.proc = self.procs[-1] if self.procs else None

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"operator exited ({proc.returncode}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def condition(obj: dict[str, Any], kind: str = "Ready") -> tuple[str, str] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c["status"], c["reason"]
    return None


Predicate = Callable[[dict[str, Any]], bool]


def ready_on(dna: str) -> Predicate:
    """A line that serves ``dna``, is Ready, and has seen its latest spec."""

    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return (
            st.get("current") == dna
            and condition(obj) == ("True", "Ready")
            and st.get("observedGeneration") == obj["metadata"]["generation"]
        )

    return check


def phase(name: str) -> Predicate:
    """Wait for phase ``name``; fail at once if the run ends in the other terminal phase."""

    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        other = {"Succeeded": "Failed", "Failed": "Succeeded"}.get(name)
        if other and st.get("phase") == other and st.get("jobName"):
            raise AssertionError(f"ended {other} instead of {name}: {st.get('message')}")
        return st.get("phase") == name

    return check


def pointer_dna(env: OperatorEnv, line: str) -> str | None:
    """The DNA line ``line``'s pointer ConfigMap names, or None when there is none."""
    cm = env.config_map(f"{line}-pointer")
    return None if cm is None else str(json.loads(cm["data"]["pointer.json"])["target"]["dna"])


def jobs(env: OperatorEnv) -> list[dict[str, Any]]:
    """Every Job in the namespace, as JSON."""
    out = env.cluster.kubectl("get", "jobs", "-n", env.namespace, "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items
