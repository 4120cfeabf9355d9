"""The ConfigMap pointer source against a real API server, with the RBAC a server pod gets:
get, list and watch on its one pointer ConfigMap (``resourceNames``), nothing else."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from localcluster.pytest_plugin import KubeCluster
from serving.servekit import Client, Harness

from certmodel.runtime.format.pointer import POINTER_KEY, PointerDocument, PointerTarget
from certmodel.runtime.serving.kubesource import ConfigMapPointerSource

pytestmark = pytest.mark.cluster
NAME = "line-pointer"


def doc(revision: int, dna: str = "tiny-llama-lora-0123456789ab") -> PointerDocument:
    target = PointerTarget(
        dna=dna, path=f"certified/{dna}", kind="adapter", base_model="tiny-llama",
        content_digest="sha256:" + f"{revision:x}" * 64,
    )  # fmt: skip
    return PointerDocument(revision=revision, target=target)


def configmap(d: PointerDocument) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=NAME), data={POINTER_KEY: d.to_json()}
    )


@pytest.fixture
def admin(kube_cluster: KubeCluster) -> Iterator[client.CoreV1Api]:
    with kube_cluster.api_client() as api:
        yield client.CoreV1Api(api)


@pytest.fixture
def server_api(
    kube_cluster: KubeCluster, kube_namespace: str, admin: client.CoreV1Api
) -> Iterator[Any]:
    """An API client authenticated as a ServiceAccount allowed only what a server pod gets."""
    ns = kube_namespace
    admin.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="server"))
    )
    with kube_cluster.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rule = client.V1PolicyRule(
            api_groups=[""], resources=["configmaps"], resource_names=[NAME],
            verbs=["get", "list", "watch"],
        )  # fmt: skip
        rbac.create_namespaced_role(
            ns, client.V1Role(metadata=client.V1ObjectMeta(name="server"), rules=[rule])
        )
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="server"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                          name="server"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="server", namespace=ns)],
            ),
        )  # fmt: skip
        admin_config = api.configuration
    token = admin.create_namespaced_service_account_token(
        "server", ns, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600)),
    ).status.token  # fmt: skip
    config = client.Configuration()
    config.host = admin_config.host
    config.ssl_ca_cert = admin_config.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(config)
    yield api
    api.close()


class Follower:
    def __init__(self, api: Any, namespace: str, **options: Any) -> None:
        self.seen: queue.Queue[PointerDocument | str] = queue.Queue()
        self.source = ConfigMapPointerSource(api, name=NAME, namespace=namespace, **options)
        self.source.start(self.seen.put, lambda message: self.seen.put(f"error: {message}"))

    def next_doc(self, timeout: float = 10.0) -> PointerDocument:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            item = self.seen.get(timeout=left)
            if isinstance(item, PointerDocument):
                return item
        raise AssertionError("no pointer document arrived")

    def next_error(self, timeout: float = 10.0) -> str:
        item = self.seen.get(timeout=timeout)
        assert isinstance(item, str), item
        return item


def test_follows_create_patch_delete_and_recreate(
    server_api: Any, admin: client.CoreV1Api, kube_namespace: str
) -> None:
    ns = kube_namespace
    follower = Follower(server_api, ns, watch_timeout=2)  # short watches: resumes get exercised
    try:
        assert "not found" in follower.next_error()
        admin.create_namespaced_config_map(ns, configmap(doc(1)))
        assert follower.next_doc() == doc(1)
        time.sleep(3)  # at least one watch ended and was resumed from its resourceVersion
        started = time.monotonic()
        admin.patch_namespaced_config_map(NAME, ns, {"data": {POINTER_KEY: doc(2).to_json()}})
        assert follower.next_doc() == doc(2)
        assert time.monotonic() - started < 2.0
        admin.delete_namespaced_config_map(NAME, ns)
        assert "deleted" in follower.next_error()
        admin.create_namespaced_config_map(ns, configmap(doc(3)))
        assert follower.next_doc() == doc(3)
        admin.patch_namespaced_config_map(NAME, ns, {"data": {POINTER_KEY: "{broken"}})
        assert "not a valid pointer document" in follower.next_error()
    finally:
        follower.source.stop()


def test_a_restarted_source_starts_from_the_current_state(
    server_api: Any, admin: client.CoreV1Api, kube_namespace: str
) -> None:
    ns = kube_namespace
    admin.create_namespaced_config_map(ns, configmap(doc(1)))
    first = Follower(server_api, ns)
    assert first.next_doc() == doc(1)
    started = time.monotonic()
    first.source.stop()
    assert time.monotonic() - started < 3.0  # stop interrupts the blocked watch
    admin.patch_namespaced_config_map(NAME, ns, {"data": {POINTER_KEY: doc(2).to_json()}})
    second = Follower(server_api, ns)
    try:
        assert second.next_doc() == doc(2)
    finally:
        second.source.stop()


def test_rbac_limits_the_server_to_its_configmap(server_api: Any, kube_namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(server_api)
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_config_map(kube_namespace)
    assert denied.value.status == 403
    follower = Follower(server_api, kube_namespace)  # the field-selected list is allowed
    try:
        assert "not found" in follower.next_error()
    finally:
        follower.source.stop()


@pytest.mark.torch
def test_a_server_follows_the_configmap(
    server_api: Any, admin: client.CoreV1Api, kube_namespace: str, harness: Harness
) -> None:
    """End to end: promotions written to the ConfigMap switch a real server's live version."""
    from certmodel.runtime.format import pointer
    from certmodel.runtime.serving.service import ServeConfig, ServingService

    a, b, _ = harness.line.adapters
    ns = kube_namespace
    targets = {d: PointerTarget.from_manifest(harness.store.read_manifest(d)) for d in (a, b)}
    first = pointer.promote(PointerDocument(), targets[a])
    admin.create_namespaced_config_map(ns, configmap(first))
    source = ConfigMapPointerSource(server_api, name=NAME, namespace=ns)
    service = ServingService(ServeConfig(root=harness.store.root, port=0, threads=1), source)
    harness.services.append(service)
    service.start()
    assert service.wait_ready(60)
    http = Client(service.url)
    assert http.complete()[1]["dna"] == a
    second = pointer.promote(first, targets[b])
    admin.patch_namespaced_config_map(NAME, ns, {"data": {POINTER_KEY: second.to_json()}})
    deadline = time.monotonic() + 30
    while (body := http.complete()[1])["dna"] != b:
        assert time.monotonic() < deadline, body
    status = http.get("/v1/status")[1]
    assert (status["revision"], status["converged"]) == (2, True)
    assert status["pointer_source"] == f"configmap {ns}/{NAME} key {POINTER_KEY}"
