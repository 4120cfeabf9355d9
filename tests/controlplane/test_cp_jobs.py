"""Jobs run through the real job controller, as local processes, to Succeeded or Failed."""

from __future__ import annotations

import json

import pytest
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster

SUCCEEDING = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: batch/v1
kind: Job
metadata: {name: ok}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {app: cptest}}
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ignored.local/python:3
        command: [python, -c]
        args:
        - |
          import json, os, sys
          out = {k: os.environ.get(k) for k in ("GREETING", "PASSWORD", "POD_NAME", "POD_NS",
                 "APP", "PLAIN", "KUBERNETES_SERVICE_HOST")}
          out["python"] = sys.executable
          with open("/dev/termination-log", "w") as f:
              json.dump(out, f)
        env:
        - {name: PLAIN, value: "x-$(GREETING)"}
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: creds, key: password}}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NS
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: APP
          valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
"""

FAILING = """
apiVersion: batch/v1
kind: Job
metadata: {name: boom}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ignored
        command: [python, -c, "import sys; print('it went wrong', file=sys.stderr); sys.exit(3)"]
        terminationMessagePolicy: FallbackToLogsOnError
"""


def test_job_succeeds_with_termination_message(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=SUCCEEDING)
    assert kube_cluster.wait_for_job("ok", kube_namespace) == "Complete"
    (pod,) = kube_cluster.job_pods("ok", kube_namespace)
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == "local-node"
    assert pod.status.pod_ip == "127.0.0.1"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    msg = json.loads(term.message)
    assert msg["GREETING"] == "hello"
    assert msg["PASSWORD"] == "s3cret"
    assert msg["POD_NAME"] == pod.metadata.name
    assert msg["POD_NS"] == kube_namespace
    assert msg["APP"] == "cptest"
    assert msg["PLAIN"] == "x-$(GREETING)"  # defined later in the list: not expanded
    assert msg["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert msg["python"].endswith("/.venv/bin/python")
    conds = {c.type: c.status for c in pod.status.conditions}
    assert conds["PodScheduled"] == "True" and conds["Initialized"] == "True"
    assert conds["Ready"] == "False"


def test_job_failing_is_failed(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=FAILING)
    assert kube_cluster.wait_for_job("boom", kube_namespace) == "Failed"
    (pod,) = kube_cluster.job_pods("boom", kube_namespace)
    assert pod.status.phase == "Failed"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 3 and term.reason == "Error"
    assert "it went wrong" in term.message  # FallbackToLogsOnError
