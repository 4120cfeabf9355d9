"""The plane's versions and the local node as the API sees them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from localcluster.binaries import read_versions
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster


def test_versions_and_local_node(kube_cluster: KubeCluster) -> None:
    pinned = read_versions()["KUBE_VERSION"]
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["minor"] == pinned.split(".")[1]
    with kube_cluster.api_client() as api:
        nodes: list[Any] = client.CoreV1Api(api).list_node().items
    (node,) = nodes
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    alloc = node.status.allocatable
    assert int(alloc["cpu"]) >= 1 and alloc["memory"].endswith("Ki")
    assert alloc.get("nvidia.com/gpu", "0") == "0"
    assert node.status.node_info.kubelet_version == pinned
    assert node.metadata.labels["certmodel.dev/local-node-agent"] == "true"
