"""Helpers for the operator tests: a handle on the namespace, the volume and the operator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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

    def start_operator(self, *extra_args: str) -> None:
        """Start the operator on this namespace; ``extra_args`` are more command-line flags."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        exe = Path(sys.executable).with_name("certmodel-operator")
        self.proc = subprocess.Popen(
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
                "--standalone",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop_operator(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.log_tail()}")

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
