"""Fixtures for the operator against the real local control plane.

``operator_env`` gives a namespace with the CRDs installed, a models volume (a hostPath PV and
its claim, a folder here) and the operator running as a real process, as in a cluster (only the
process runs on this machine, not in a pod).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import k8s
from localcluster.pytest_plugin import KubeCluster
from opsupport import CLAIM, OperatorEnv

from certmodel.operator.api import GROUP
from certmodel.runtime.format.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for crd in ("modeltrainings", "certifiedmodels"):
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd}.{GROUP}", "--timeout=60s"
        )


@pytest.fixture
def operator_env(
    kube_cluster: KubeCluster, kube_namespace: str, crds: None, tmp_path: Path
) -> Iterator[OperatorEnv]:
    root = tmp_path / "models"
    root.mkdir()
    root.chmod(0o777)
    pv = f"models-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=k8s.hostpath_volume(root, name=pv, namespace=kube_namespace, claim=CLAIM),
    )
    env = OperatorEnv(kube_cluster, kube_namespace, Store(root), tmp_path / "operator.log")
    env.start_operator()
    try:
        yield env
    finally:
        env.stop_operator()
        kube_cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)
