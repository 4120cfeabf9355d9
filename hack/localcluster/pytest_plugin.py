"""pytest fixtures for the local control plane: ``kube_cluster`` and ``kube_namespace``.

Enable with ``pytest_plugins = ["localcluster.pytest_plugin"]``. ``kube_cluster`` starts a fresh
etcd + apiserver + controller-manager + local node agent in a temporary folder once per session
and stops them at the end; with ``CERTMODEL_KUBECONFIG`` set it reuses that running cluster
(e.g. one from ``make cluster-up``) instead. Missing binaries are a failure, never a skip:
a green run must mean the cluster tests really ran.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import k8s
from localcluster.binaries import Binaries, BinariesMissingError, find_binaries
from localcluster.controlplane import ControlPlane


class KubeCluster:
    """Handle on a running cluster, as tests see it."""

    def __init__(
        self,
        kubeconfig: Path,
        server: str,
        kubectl_bin: Path,
        helm_bin: Path,
        plane: ControlPlane | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.kubectl_bin = kubectl_bin
        self.helm_bin = helm_bin
        self.plane = plane

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` with admin credentials (close it after use)."""
        return k8s.api_client(self.kubeconfig)

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise with its stderr when ``check`` fails."""
        proc = subprocess.run(
            [str(self.kubectl_bin), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.helm_bin), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        return proc

    def wait_for_job(self, name: str, namespace: str, timeout: float = 120) -> str:
        """Wait until Job ``name`` is Complete or Failed; return which."""
        from kubernetes import client

        deadline = time.monotonic() + timeout
        with self.api_client() as api:
            batch = client.BatchV1Api(api)
            while time.monotonic() < deadline:
                job = batch.read_namespaced_job(name, namespace)
                for c in (job.status and job.status.conditions) or []:
                    if c.type in ("Complete", "Failed") and c.status == "True":
                        return str(c.type)
                time.sleep(0.5)
        raise TimeoutError(
            f"job {namespace}/{name} did not finish in {timeout}s\n"
            + self.kubectl("get", "pods,jobs", "-n", namespace, "-o", "wide", check=False).stdout
        )

    def wait_pod(self, namespace: str, name: str, predicate: Any, timeout: float = 60) -> Any:
        """Poll pod ``name`` until ``predicate(pod)`` holds; fail showing its status otherwise."""
        from kubernetes import client

        deadline = time.monotonic() + timeout
        pod = None
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            while time.monotonic() < deadline:
                pod = core.read_namespaced_pod(name, namespace)
                if predicate(pod):
                    return pod
                time.sleep(0.25)
        raise AssertionError(f"pod {namespace}/{name} never got there: {pod and pod.status}")

    def job_pods(self, name: str, namespace: str) -> list[Any]:
        """The pods of Job ``name`` (by the job-name label the job controller sets)."""
        from kubernetes import client

        with self.api_client() as api:
            return list(
                client.CoreV1Api(api)
                .list_namespaced_pod(namespace, label_selector=f"job-name={name}")
                .items
            )

    def wait_for_service_account(
        self, namespace: str, name: str = "default", timeout: float = 60
    ) -> None:
        """Pods are rejected until the serviceaccount controller made the namespace's SA."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            while True:
                try:
                    core.read_namespaced_service_account(name, namespace)
                    core.read_namespaced_config_map("kube-root-ca.crt", namespace)
                    return
                except ApiException as e:
                    if e.status != 404 or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A running local cluster for the whole session (fresh, or ``$CERTMODEL_KUBECONFIG``)."""
    missing = ""
    try:
        bins = find_binaries()
    except BinariesMissingError as e:
        missing = str(e)
    if missing:
        pytest.fail(missing, pytrace=False)
    reuse = os.environ.get("CERTMODEL_KUBECONFIG")
    if reuse:
        api = k8s.api_client(reuse)
        server = str(api.configuration.host)
        api.close()
        yield KubeCluster(Path(reuse), server, bins.kubectl, bins.helm)
        return
    with running_cluster(tmp_path_factory.mktemp("localcluster"), bins) as cluster:
        yield cluster


@contextlib.contextmanager
def running_cluster(state_dir: Path, bins: Binaries, **options: Any) -> Iterator[KubeCluster]:
    """A fresh control plane in ``state_dir`` (``options`` go to :class:`ControlPlane`), stopped
    on exit; for the session cluster and for tests that need one of their own."""
    plane = ControlPlane(state_dir, binaries=bins, gpus=0, die_with_parent=True, **options)
    info = plane.start()
    try:
        yield KubeCluster(plane.kubeconfig, info.server, bins.kubectl, bins.helm, plane)
    finally:
        plane.stop()


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount ready), deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    with kube_cluster.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    kube_cluster.wait_for_service_account(name)
    yield name
    with kube_cluster.api_client() as api:
        client.CoreV1Api(api).delete_namespace(name)
