"""LOCAL NODE AGENT: test/dev infrastructure standing in for a kubelet and a scheduler.

It registers one Node (Ready, with cpu/memory and optionally ``nvidia.com/gpu`` allocatable),
keeps its Lease fresh, binds unscheduled pods to itself through the pods/binding subresource
(there is no kube-scheduler in the local plane) and runs the pods bound to it as local processes
(see ``podrunner``). It talks to the API as ``system:node:<name>``, so the Node authorizer and the
NodeRestriction admission plugin limit it exactly as they would limit a kubelet; its scheduling
half uses separate credentials (``system:kube-scheduler`` in the local plane), as a real
scheduler would, because a node may only see pods already bound to it.

Run alone with ``python -m localcluster.nodeagent --kubeconfig node.kubeconfig ...``.
Not a container runtime: images are ignored and commands run on the host (see ``nsexec``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster import k8s
from localcluster.binaries import read_versions
from localcluster.podrunner import AgentContext, PodWorker
from localcluster.podspec import Json

log = logging.getLogger("localcluster.nodeagent")
LEASE_S = 40
TERMINAL = ("Succeeded", "Failed")


def _micro_now() -> datetime:
    return datetime.now(UTC)


class NodeAgent:
    def __init__(
        self,
        api: Any,
        sched_api: Any,
        node_name: str,
        state_dir: Path,
        api_port: int,
        gpus: int | None,
        venv_bin: str | None,
    ) -> None:
        self.api: Any = api
        self.sched_api: Any = sched_api or api
        self.core: Any = client.CoreV1Api(api)
        self.name = node_name
        self.state_dir = state_dir
        self.gpus = gpus
        self.stop_event = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.node = self._node_object()
        self.ctx = AgentContext(self.core, self.node, state_dir, api_port, venv_bin)

    # ---------------------------------------------------------------- the Node
    def _node_object(self) -> Json:
        cpus = os.cpu_count() or 1
        mem_kib = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        capacity = {
            "cpu": str(cpus),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        if self.gpus is not None:
            capacity["nvidia.com/gpu"] = str(self.gpus)
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        version = read_versions().get("KUBE_VERSION", "v0.0.0")
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "certmodel.dev/local-node-agent": "true",
                },
            },
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kernelVersion": platform.release(),
                    "osImage": "certmodel local node agent",
                    "containerRuntimeVersion": "local://0",
                    "kubeletVersion": version,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": arch,
                },
            },
        }

    def _conditions(self) -> list[Json]:
        stamp = _micro_now().strftime("%Y-%m-%dT%H:%M:%SZ")
        out = [
            {"type": t, "status": "False", "reason": f"KubeletHasNo{t}", "lastHeartbeatTime": stamp}
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        out.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "certmodel local node agent is posting ready status",
                "lastHeartbeatTime": stamp,
            }
        )
        return out

    def register(self) -> None:
        try:
            self.core.create_node(self.node)
        except ApiException as e:
            if e.status != 409:
                raise
        self.post_status()

    def post_status(self) -> None:
        status = dict(self.node["status"], conditions=self._conditions())
        self.core.patch_node_status(self.name, {"status": status})

    def heartbeat(self) -> None:
        """Renew the node Lease every 10s and post status every 40s (as a kubelet would)."""
        coord: Any = client.CoordinationV1Api(self.api)
        last_status = time.monotonic()
        while not self.stop_event.wait(10):
            try:
                self._renew_lease(coord)
                if time.monotonic() - last_status > 40:
                    self.post_status()
                    last_status = time.monotonic()
            except Exception as e:
                log.warning("heartbeat failed: %s", e)

    def _renew_lease(self, coord: Any) -> None:
        body = {
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_S,
                "renewTime": _micro_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        try:
            coord.patch_namespaced_lease(self.name, "kube-node-lease", body)
        except ApiException as e:
            if e.status != 404:
                raise
            coord.create_namespaced_lease("kube-node-lease", body)

    # ---------------------------------------------------------------- scheduling
    def scheduler(self) -> None:
        """Bind pending pods with no nodeName to this node (a trivial kube-scheduler)."""
        self._watch_loop(self.sched_api, "spec.nodeName=,status.phase=Pending", self._maybe_bind)

    def _maybe_bind(self, kind: str, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if kind == "DELETED" or spec.get("nodeName") or meta.get("deletionTimestamp"):
            return
        if spec.get("schedulerName") not in (None, "", "default-scheduler"):
            return
        labels = self.node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            log.info(
                "pod %s/%s: nodeSelector does not match, left pending",
                meta["namespace"],
                meta["name"],
            )
            return
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=meta["name"], uid=meta["uid"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.name),
        )
        try:  # _preload_content=False: the client cannot deserialize this endpoint's answer
            client.CoreV1Api(self.sched_api).create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
            log.info("pod %s/%s: bound to %s", meta["namespace"], meta["name"], self.name)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning(
                    "binding %s/%s failed: %s %s",
                    meta["namespace"],
                    meta["name"],
                    e.status,
                    e.reason,
                )

    # ---------------------------------------------------------------- pods on this node
    def pods(self) -> None:
        self._watch_loop(self.api, f"spec.nodeName={self.name}", self._on_pod, self._on_relist)

    def _on_relist(self, pods: list[Json]) -> None:
        live = {p["metadata"]["uid"] for p in pods}
        with self.lock:
            for uid, w in list(self.workers.items()):
                if uid not in live:
                    w.gone.set()
        for p in pods:
            self._on_pod("ADDED", p)

    def _on_pod(self, kind: str, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            for u, w in list(self.workers.items()):
                if not w.is_alive():
                    del self.workers[u]
            existing = self.workers.get(uid)
            if kind == "DELETED":
                if existing:
                    existing.gone.set()
                return
            if existing:
                existing.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if phase in TERMINAL:  # finished before this agent (re)started: only clean up
                if pod["metadata"].get("deletionTimestamp"):
                    self._final_delete(pod)
                return
            w = PodWorker(self.ctx, pod)
            w.update(pod)
            self.workers[uid] = w
            w.start()

    def _final_delete(self, pod: Json) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("delete %s/%s failed: %s", meta["namespace"], meta["name"], e.reason)

    # ---------------------------------------------------------------- watch plumbing
    def _watch_loop(self, api: Any, selector: str, on_event: Any, on_list: Any = None) -> None:
        """List then watch pods matching ``selector``; re-list after any error."""
        core: Any = client.CoreV1Api(api)
        while not self.stop_event.is_set():
            try:
                lst: Any = core.list_pod_for_all_namespaces(field_selector=selector)
                items = [api.sanitize_for_serialization(p) for p in lst.items]
                if on_list:
                    on_list(items)
                else:
                    for p in items:
                        on_event("ADDED", p)
                rv = lst.metadata.resource_version
                while not self.stop_event.is_set():
                    w = k8s.new_watch()
                    for ev in w.stream(
                        core.list_pod_for_all_namespaces,
                        field_selector=selector,
                        resource_version=rv,
                        timeout_seconds=60,
                        allow_watch_bookmarks=True,
                    ):
                        if self.stop_event.is_set():
                            w.stop()
                            break
                        obj = ev["object"]
                        if ev["type"] == "ERROR":
                            raise RuntimeError(f"watch error: {ev.get('raw_object')}")
                        rv = obj.metadata.resource_version
                        if ev["type"] != "BOOKMARK":
                            on_event(ev["type"], api.sanitize_for_serialization(obj))
            except Exception as e:
                if not self.stop_event.is_set():
                    log.warning("watch %r: %s; re-listing", selector, e)
                    self.stop_event.wait(1.0)

    # ---------------------------------------------------------------- run/stop
    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.register()
                break
            except Exception as e:
                log.warning("node registration failed: %s; retrying", e)
                self.stop_event.wait(1.0)
        for target in (self.heartbeat, self.scheduler, self.pods):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        log.info("node %s registered and ready", self.name)
        self.stop_event.wait()
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every container (SIGTERM, then SIGKILL) before exiting."""
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stopping.set()
        for w in workers:
            w.join(timeout=15)
        log.info("node agent stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.nodeagent", description=__doc__)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument(
        "--scheduler-kubeconfig",
        help="credentials for binding pods (e.g. system:kube-scheduler); default: --kubeconfig",
    )
    ap.add_argument("--node-name", default="local-node")
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--api-port", type=int, default=0, help="default: the kubeconfig's port")
    ap.add_argument("--gpus", type=int, default=None, help="advertise nvidia.com/gpu: N (fake)")
    ap.add_argument(
        "--venv-bin",
        default=str(Path(sys.executable).parent),
        help="folder put first on containers' PATH (default: this Python's bin)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s"
    )
    api = k8s.api_client(args.kubeconfig)
    port = args.api_port or int(urlparse(api.configuration.host).port or 443)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    sched = k8s.api_client(args.scheduler_kubeconfig) if args.scheduler_kubeconfig else None
    agent = NodeAgent(
        api, sched, args.node_name, args.state_dir.resolve(), port, args.gpus, args.venv_bin
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop_event.set())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
