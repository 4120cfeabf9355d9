"""Start and stop a local etcd + kube-apiserver + kube-controller-manager + node agent.

Every process runs detached in its own session with a pid file, so ``make cluster-up`` can exit
and leave the plane running, and ``make cluster-down`` (or a pytest teardown) can stop exactly
what was started, nothing else. Ports are chosen free at start; the state directory holds the
PKI, kubeconfigs, etcd's data, logs and ``cluster.json`` (what ``down``/``status`` read back).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from localcluster import k8s, pki, procs
from localcluster.binaries import HACK_DIR, Binaries, find_binaries

NODE_NAME = "local-node"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "nodeagent")
_MARK = {c: c for c in COMPONENTS} | {"nodeagent": "localcluster.nodeagent"}


@dataclass
class ClusterInfo:
    """What a running cluster is: persisted as ``cluster.json`` in its state directory."""

    state_dir: str
    server: str
    kubeconfig: str
    node_name: str
    ports: dict[str, int]
    pids: dict[str, int]
    kube_version: str
    etcd_version: str
    start_to_ready_s: float = 0.0
    started_at: float = 0.0  # epoch seconds; recorded pids older than this are not ours


class ControlPlane:
    """One local cluster rooted at ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        node_name: str = NODE_NAME,
        gpus: int | None = None,
        binaries: Binaries | None = None,
        die_with_parent: bool = False,
    ) -> None:
        """``die_with_parent``: components get SIGTERM if this process dies without stopping
        them (pytest killed hard), instead of running on as strays."""
        self.state_dir = state_dir.resolve()
        self.die_with_parent = die_with_parent
        self.node_name = node_name
        self.gpus = gpus
        self._binaries = binaries
        self.info: ClusterInfo | None = None
        self._argv: dict[str, list[str]] = {}  # how each component was started (restarts)

    # ------------------------------------------------------------------ paths
    @property
    def info_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane:
        """Attach to the cluster described by ``state_dir/cluster.json`` (if any)."""
        cp = cls(state_dir)
        if cp.info_file.exists():
            cp.info = ClusterInfo(**json.loads(cp.info_file.read_text()))
            cp.node_name = cp.info.node_name
        return cp

    def running(self) -> dict[str, bool]:
        """Which recorded components are alive."""
        if self.info is None:
            return {}
        since = self.info.started_at
        return {
            name: procs.alive(pid) and procs.ours(pid, since, _MARK[name])
            for name, pid in self.info.pids.items()
        }

    def start(self, timeout: float = 180.0) -> ClusterInfo:
        """Start everything and return once the API, controllers and node are usable."""
        bins = self._binaries or find_binaries()
        t0 = time.monotonic()
        started_at = time.time()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        for sub in ("pki", "logs", "etcd", "node"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        ports = {
            "etcd": procs.free_port(),
            "etcd_peer": procs.free_port(),
            "apiserver": procs.free_port(),
            "controller_manager": procs.free_port(),
        }
        server = f"https://127.0.0.1:{ports['apiserver']}"
        creds = pki.generate(self.state_dir / "pki", self.node_name)
        pki.kubeconfig(self.kubeconfig, server, creds.ca.cert, creds.admin, "admin")
        cm_kc = pki.kubeconfig(
            self.state_dir / "controller-manager.kubeconfig",
            server,
            creds.ca.cert,
            creds.controller_manager,
            "system:kube-controller-manager",
        )
        node_kc = pki.kubeconfig(
            self.state_dir / "node.kubeconfig",
            server,
            creds.ca.cert,
            creds.node,
            f"system:node:{self.node_name}",
        )
        sched_kc = pki.kubeconfig(
            self.state_dir / "scheduler.kubeconfig",
            server,
            creds.ca.cert,
            creds.scheduler,
            "system:kube-scheduler",
        )
        self.info = ClusterInfo(
            state_dir=str(self.state_dir),
            server=server,
            kubeconfig=str(self.kubeconfig),
            node_name=self.node_name,
            ports=ports,
            pids={},
            kube_version=bins.kube_version,
            etcd_version=bins.etcd_version,
            started_at=started_at,
        )
        try:
            etcd_url = f"http://127.0.0.1:{ports['etcd']}"
            peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
            self._spawn(
                "etcd",
                [
                    str(bins.etcd),
                    "--name=local",
                    f"--data-dir={self.state_dir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=local={peer_url}",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                    "--listen-metrics-urls=",
                ],
            )
            self._wait(lambda: procs.http_ok(f"{etcd_url}/health"), "etcd", timeout)
            p = creds
            self._spawn(
                "kube-apiserver",
                [
                    str(bins.kube_apiserver),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={ports['apiserver']}",
                    f"--cert-dir={self.state_dir / 'pki'}",
                    f"--tls-cert-file={p.apiserver.cert}",
                    f"--tls-private-key-file={p.apiserver.key}",
                    f"--client-ca-file={p.ca.cert}",
                    # Aggregation-layer front proxy; set so delegated authentication
                    # (controller-manager) finds a complete extension-apiserver-authentication.
                    f"--requestheader-client-ca-file={p.ca.cert}",
                    "--requestheader-allowed-names=front-proxy-client",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NodeRestriction",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={p.sa_pub}",
                    f"--service-account-signing-key-file={p.sa_key}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=true",
                    "--profiling=false",
                    "--v=0",
                ],
            )
            self._wait(self._apiserver_ready, "kube-apiserver", timeout)
            self._spawn(
                "kube-controller-manager",
                [
                    str(bins.kube_controller_manager),
                    f"--kubeconfig={cm_kc}",
                    f"--authentication-kubeconfig={cm_kc}",
                    f"--authorization-kubeconfig={cm_kc}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports['controller_manager']}",
                    f"--cert-dir={self.state_dir / 'pki' / 'cm'}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    "--controllers=*",
                    f"--service-account-private-key-file={p.sa_key}",
                    f"--root-ca-file={p.ca.cert}",
                    f"--cluster-signing-cert-file={p.ca.cert}",
                    f"--cluster-signing-key-file={p.ca.key}",
                    "--profiling=false",
                    "--v=0",
                ],
            )
            agent = [
                sys.executable,
                "-m",
                "localcluster.nodeagent",
                f"--kubeconfig={node_kc}",
                f"--scheduler-kubeconfig={sched_kc}",
                f"--node-name={self.node_name}",
                f"--state-dir={self.state_dir / 'node'}",
                f"--api-port={ports['apiserver']}",
            ]
            if self.gpus is not None:
                agent.append(f"--gpus={self.gpus}")
            self._spawn("nodeagent", agent)
            self._wait(self._workloads_ready, "controller-manager and node agent", timeout)
        except BaseException:
            self.stop()
            raise
        self.info.start_to_ready_s = round(time.monotonic() - t0, 2)
        self._save()
        return self.info

    def stop(self) -> None:
        """Stop every recorded component (node agent first: it stops its containers)."""
        if self.info is None:
            return
        since = self.info.started_at
        for name in reversed(COMPONENTS):
            pid = self.info.pids.get(name)
            if pid and procs.ours(pid, since, _MARK[name]):
                procs.stop_pid(pid, grace=15.0 if name == "nodeagent" else 10.0)
        # Belt and braces: containers whose agent died before cleaning up.
        for pidfile in (self.state_dir / "node").glob("pods/*/*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                if procs.ours(pid, since):
                    procs.stop_pid(pid, grace=2.0)
        self.info.pids = {}
        self._save()

    def restart_apiserver(self, *, grace: float = 10.0, timeout: float = 120.0) -> float:
        """Stop kube-apiserver and start it again with the same port, certificates and etcd,
        as an upgrade or a crash-restart would: every client sees its connections and watches
        drop, then the same server come back. Only for a plane started by this object.

        ``grace``: seconds between SIGTERM and SIGKILL (the apiserver stops listening at once
        on SIGTERM but may take longer than that to exit). Returns the seconds the API was
        unavailable."""
        assert self.info is not None and "kube-apiserver" in self._argv, "start() this plane first"
        t0 = time.monotonic()
        pid = self.info.pids["kube-apiserver"]
        if procs.ours(pid, self.info.started_at, _MARK["kube-apiserver"]):
            procs.stop_pid(pid, grace=grace)
        self._spawn("kube-apiserver", self._argv["kube-apiserver"])
        self._wait(self._apiserver_ready, "kube-apiserver (restarted)", timeout)
        return round(time.monotonic() - t0, 2)

    # ------------------------------------------------------------------ helpers
    def _save(self) -> None:
        assert self.info is not None
        self.info_file.write_text(json.dumps(asdict(self.info), indent=2) + "\n")

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.info is not None
        log = (self.log_dir / f"{name}.log").open("ab")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HACK_DIR), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("KUBECONFIG", None)
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=self.state_dir,
            preexec_fn=procs.pdeathsig if self.die_with_parent else None,
        )
        log.close()
        self._argv[name] = argv
        self.info.pids[name] = proc.pid
        (self.state_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        self._save()

    def _wait(self, check: Any, what: str, timeout: float) -> None:
        assert self.info is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, pid in self.info.pids.items() if not procs.alive(pid)]
            if dead:
                raise RuntimeError(
                    f"{', '.join(dead)} exited while waiting for {what}\n" + self.log_tails(dead)
                )
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - not ready yet; retried until the deadline
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"{what} not ready after {timeout:.0f}s\n" + self.log_tails(list(self.info.pids))
        )

    def log_tails(self, names: list[str], lines: int = 25) -> str:
        out = []
        for n in names:
            f = self.log_dir / f"{n}.log"
            if f.exists():
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {f} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def ssl_context(self) -> ssl.SSLContext:
        pk = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pk / "ca.crt"))
        ctx.load_cert_chain(str(pk / "admin.crt"), str(pk / "admin.key"))
        return ctx

    def _apiserver_ready(self) -> bool:
        assert self.info is not None
        return procs.http_ok(f"{self.info.server}/readyz", self.ssl_context())

    def api_client(self) -> Any:
        """A kubernetes ``ApiClient`` with admin credentials."""
        return k8s.api_client(self.kubeconfig)

    def _workloads_ready(self) -> bool:
        """Ready for workloads: node Ready, default ServiceAccount and root CA published."""
        from kubernetes import client

        assert self.info is not None
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            node = core.read_node(self.node_name)
            ready = any(
                c.type == "Ready" and c.status == "True"
                for c in ((node.status and node.status.conditions) or [])
            )
            core.read_namespaced_service_account("default", "default")
            core.read_namespaced_config_map("kube-root-ca.crt", "default")
            return ready
