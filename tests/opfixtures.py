"""Fixtures for the operator against the real local control plane, shared by tests/operator/
and tests/faults/ (each conftest imports them: ``from opfixtures import crds, operator_env``).

``operator_env`` gives a namespace with the CRDs installed, a models volume (a hostPath PV and
its claim, a folder here) and the operator running as a real process, as in a cluster (only the
process runs on this machine, not in a pod). :func:`operator_env_on` builds the same on any
cluster (a dedicated control plane, say), optionally without starting the operator.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import k8s
from localcluster.pytest_plugin import KubeCluster
from opsupport import CLAIM, OperatorEnv

from certmodel.operator.api import GROUP
from certmodel.runtime.format.store import Store

ROOT = Path(__file__).resolve().parents[1]


def install_crds(cluster: KubeCluster) -> None:
    """Apply the committed CRDs and wait until the API server serves them."""
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for crd in ("modeltrainings", "certifiedmodels"):
        # Right after the apply the CRD may have no conditions yet, and `kubectl wait` then
        # fails at once ("accessor error") instead of waiting: poll until it can wait.
        deadline = time.monotonic() + 60
        while True:
            done = cluster.kubectl(
                "wait",
                "--for=condition=Established",
                f"crd/{crd}.{GROUP}",
                "--timeout=60s",
                check=False,
            )
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {crd} never became Established: {done.stderr}")
            time.sleep(0.5)


@contextlib.contextmanager
def operator_env_on(
    cluster: KubeCluster, namespace: str, tmp_path: Path, *, start: bool = True
) -> Iterator[OperatorEnv]:
    """A models volume in ``namespace`` and (``start``) a standalone operator watching it."""
    root = tmp_path / "models"
    root.mkdir()
    root.chmod(0o777)
    pv = f"models-{uuid.uuid4().hex[:8]}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=k8s.hostpath_volume(root, name=pv, namespace=namespace, claim=CLAIM),
    )
    env = OperatorEnv(cluster, namespace, Store(root), tmp_path / "operator.log")
    if start:
        env.start_operator()
    try:
        yield env
    finally:
        env.stop_operator()
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> None:
    install_crds(kube_cluster)


@pytest.fixture
def operator_env(
    kube_cluster: KubeCluster, kube_namespace: str, crds: None, tmp_path: Path
) -> Iterator[OperatorEnv]:
    with operator_env_on(kube_cluster, kube_namespace, tmp_path) as env:
        yield env
