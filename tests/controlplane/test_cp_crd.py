"""The local apiserver serves CRDs with real OpenAPI schema validation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.cptest.certmodel.dev
spec:
  group: cptest.certmodel.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
"""


def test_crd_schema_accepts_valid_and_rejects_invalid(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input=CRD)
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.cptest.certmodel.dev"
    )
    with kube_cluster.api_client() as api:
        objs = client.CustomObjectsApi(api)
        args = ("cptest.certmodel.dev", "v1", kube_namespace, "widgets")
        body = {
            "apiVersion": "cptest.certmodel.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "ok"},
            "spec": {"size": 3, "color": "red"},
        }
        for attempt in range(50):  # discovery of a just-established CRD can lag a moment
            try:
                objs.create_namespaced_custom_object(*args, body)
                break
            except ApiException as e:
                if e.status != 404 or attempt == 49:
                    raise
                time.sleep(0.2)
        got: Any = objs.get_namespaced_custom_object(*args, "ok")
        assert got["spec"] == {"size": 3, "color": "red"}

        bad = dict(body, metadata={"name": "bad"}, spec={"size": 0, "color": "green"})
        with pytest.raises(ApiException) as err:
            objs.create_namespaced_custom_object(*args, bad)
        assert err.value.status == 422
        assert "spec.size" in str(err.value.body) and "spec.color" in str(err.value.body)

        missing = dict(body, metadata={"name": "missing"}, spec={"color": "blue"})
        with pytest.raises(ApiException) as err:
            objs.create_namespaced_custom_object(*args, missing)
        assert err.value.status == 422
        assert "spec.size: Required value" in str(err.value.body)
    # kubectl's view of the same object
    out = kube_cluster.kubectl("get", "widgets", "-n", kube_namespace, "-o", "name").stdout
    assert out.split() == ["widget.cptest.certmodel.dev/ok"]
    kube_cluster.kubectl("delete", "crd", "widgets.cptest.certmodel.dev", "--wait=false")
