"""RBAC really applies to what a pod does with its mounted ServiceAccount token."""

from __future__ import annotations

import json

import pytest
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster

MANIFESTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmap-reader}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-configmaps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
subjects:
- {kind: ServiceAccount, name: reader}
---
apiVersion: v1
kind: Pod
metadata: {name: probe-rbac}
spec:
  serviceAccountName: reader
  restartPolicy: Never
  containers:
  - name: main
    image: ignored
    command: [python, -c]
    args:
    - |
      import json, pathlib, time
      from kubernetes import client, config
      from kubernetes.client.exceptions import ApiException
      config.load_incluster_config()  # token + ca.crt at the standard path, KUBERNETES_SERVICE_*
      core = client.CoreV1Api()
      sa = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
      ns = (sa / "namespace").read_text()
      out = {"namespace": ns}
      def status(fn, *a):
          try:
              fn(*a)
              return 200
          except ApiException as e:
              return e.status
      # The RoleBinding was created a moment ago: allow the authorizer's cache to catch up.
      for _ in range(40):
          out["list_configmaps"] = status(core.list_namespaced_config_map, ns)
          if out["list_configmaps"] != 403:
              break
          time.sleep(0.25)
      out["create_configmap"] = status(core.create_namespaced_config_map, ns,
                                       {"metadata": {"name": "nope"}})
      out["list_secrets"] = status(core.list_namespaced_secret, ns)
      pathlib.Path("/dev/termination-log").write_text(json.dumps(out))
"""


def test_pod_service_account_is_subject_to_rbac(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=MANIFESTS)
    pod = kube_cluster.wait_pod(
        kube_namespace,
        "probe-rbac",
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        timeout=90,
    )
    term = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded", term
    result = json.loads(term.message)
    assert result == {
        "namespace": kube_namespace,
        "list_configmaps": 200,
        "create_configmap": 403,
        "list_secrets": 403,
    }
