"""Fixtures for the fault-injection tests on the control-plane side.

The operator fixtures are the ones tests/operator/ uses (tests/opfixtures.py). Added here:
Kopf's peering CRDs for peered replicas, a bare environment (volume, no operator yet), and a
dedicated control plane for the test that restarts its API server, so the session's shared
cluster is never disturbed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster.binaries import find_binaries
from localcluster.pytest_plugin import KubeCluster, running_cluster
from opfixtures import ROOT, crds, install_crds, operator_env, operator_env_on  # noqa: F401
from opsupport import OperatorEnv
from tinymodels import build_tiny_llama


@pytest.fixture(scope="session")
def peering_crds(kube_cluster: KubeCluster) -> None:
    """Kopf's peering CRDs, as the chart ships them (charts/certmodel/crds/kopf)."""
    kube_cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "charts" / "certmodel" / "crds" / "kopf"),
    )
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s"
    )


@pytest.fixture
def bare_env(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    crds: None,  # noqa: F811 -- the fixture imported above, requested by name
    tmp_path: Path,
) -> Iterator[OperatorEnv]:
    """Namespace, CRDs and models volume; the test starts the operator(s) itself."""
    with operator_env_on(kube_cluster, kube_namespace, tmp_path, start=False) as env:
        yield env


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A control plane of this test's own (etcd, API server, controller manager, node agent):
    restarting its API server disturbs nobody else. About ten seconds to start."""
    state = tmp_path_factory.mktemp("own-plane")
    with running_cluster(state, find_binaries(), node_name="faults-node") as cluster:
        yield cluster


@pytest.fixture
def own_env(own_cluster: KubeCluster, tmp_path: Path) -> Iterator[OperatorEnv]:
    """The operator, CRDs and a models volume on :func:`own_cluster`."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    own_cluster.kubectl("create", "namespace", namespace)
    install_crds(own_cluster)
    with operator_env_on(own_cluster, namespace, tmp_path) as env:
        yield env


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with its tokenizer (real architecture: the trainer trains it)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")
