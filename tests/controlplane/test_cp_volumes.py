"""Volumes: a PVC bound to a hostPath PV, ConfigMap/Secret/downward API files, emptyDir."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from localcluster import k8s
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster


def test_pvc_on_hostpath_pv_is_a_folder_in_the_pod(
    kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path
) -> None:
    host = tmp_path / "pv"
    host.mkdir()
    (host / "weights.txt").write_text("w=42\n")
    pv = f"cptest-{uuid.uuid4().hex[:8]}"
    manifests = (
        k8s.hostpath_volume(
            host,
            name=pv,
            namespace=kube_namespace,
            claim="models",
            size="1Gi",
            access="ReadWriteOnce",
        )
        + f"""---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg, namespace: {kube_namespace}}}
data: {{mode: fast, other: x}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec, namespace: {kube_namespace}}}
stringData: {{token: abc}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, namespace: {kube_namespace}, labels: {{tier: test}}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: models, persistentVolumeClaim: {{claimName: models}}}}
  - name: cfg
    configMap: {{name: cfg, items: [{{key: mode, path: conf/mode.txt}}]}}
  - {{name: sec, secret: {{secretName: sec}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - name: info
    downwardAPI:
      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
  containers:
  - name: main
    image: ignored
    command: [python, -c]
    args:
    - |
      import json, os, pathlib
      out = {{}}
      out["weights"] = pathlib.Path("/mnt/certmodel-models/weights.txt").read_text()
      pathlib.Path("/mnt/certmodel-models/written-by-pod.txt").write_text("hi from pod")
      out["mode"] = pathlib.Path("/etc/certmodel-cfg/conf/mode.txt").read_text()
      out["token"] = pathlib.Path("/etc/certmodel-sec/token").read_text()
      out["labels"] = pathlib.Path("/etc/certmodel-info/labels").read_text()
      pathlib.Path("/certmodel-scratch/x").write_text("y")
      out["scratch"] = os.listdir("/certmodel-scratch")
      out["sa"] = sorted(os.listdir("/var/run/secrets/kubernetes.io/serviceaccount"))
      pathlib.Path("/dev/termination-log").write_text(json.dumps(out))
    volumeMounts:
    - {{name: models, mountPath: /mnt/certmodel-models}}
    - {{name: cfg, mountPath: /etc/certmodel-cfg, readOnly: true}}
    - {{name: sec, mountPath: /etc/certmodel-sec, readOnly: true}}
    - {{name: scratch, mountPath: /certmodel-scratch}}
    - {{name: info, mountPath: /etc/certmodel-info}}
"""
    )
    try:
        kube_cluster.kubectl("apply", "-f", "-", input=manifests)
        pod = kube_cluster.wait_pod(
            kube_namespace, "vols", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=90
        )
        term = pod.status.container_statuses[0].state.terminated
        assert pod.status.phase == "Succeeded", term
        out = json.loads(term.message)
        assert out["weights"] == "w=42\n"
        assert out["mode"] == "fast"
        assert out["token"] == "abc"
        assert out["labels"] == 'tier="test"'
        assert out["scratch"] == ["x"]
        assert out["sa"] == ["ca.crt", "namespace", "token"]
        assert (host / "written-by-pod.txt").read_text() == "hi from pod"
        # The pod's absolute mountPaths existed only in its private mount namespace.
        for path in (
            "/mnt/certmodel-models",
            "/etc/certmodel-cfg",
            "/certmodel-scratch",
            "/etc/certmodel-info",
        ):
            assert not os.path.exists(path), path
    finally:
        kube_cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)
