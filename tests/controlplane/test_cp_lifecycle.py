"""Long-running pods: readiness via httpGet probe, deletion with SIGTERM, restartPolicy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from localcluster.procs import free_port
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster

SERVER = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: ignored
    command: [python, -c]
    args:
    - |
      import http.server, os, signal, sys, threading, time
      class H(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              ok = self.path == "/readyz" and time.time() > START + 3
              self.send_response(200 if ok else 503)
              self.end_headers()
          def log_message(self, *a):
              pass
      START = time.time()
      srv = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
      def bye(*_):
          open(os.environ["MARK"], "w").write("sigterm")
          sys.exit(0)
      signal.signal(signal.SIGTERM, bye)
      srv.serve_forever()
    env:
    - {name: PORT, value: "%(port)d"}
    - {name: MARK, value: "%(mark)s"}
    ports: [{name: http, containerPort: %(port)d}]
    readinessProbe:
      httpGet: {path: /readyz, port: http}
      periodSeconds: 2
"""

CRASHER = """
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  restartPolicy: OnFailure
  containers:
  - name: main
    image: ignored
    command: [sh, -c]
    args: ['n=$(cat /data/n 2>/dev/null || echo 0); echo $((n+1)) > /data/n; [ "$n" -ge 1 ]']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, emptyDir: {}}]
"""

INIT = """
apiVersion: v1
kind: Pod
metadata: {name: with-init}
spec:
  restartPolicy: Never
  initContainers:
  - name: prepare
    image: ignored
    command: [sh, -c, 'echo prepared > /work/state']
    volumeMounts: [{name: w, mountPath: /work}]
  containers:
  - name: main
    image: ignored
    command: [sh, -c, 'cat /work/state > /dev/termination-log']
    volumeMounts: [{name: w, mountPath: /work}]
  volumes: [{name: w, emptyDir: {}}]
"""


def test_readiness_probe_and_graceful_deletion(
    kube_cluster: KubeCluster, kube_namespace: str, tmp_path: os.PathLike[str]
) -> None:
    mark = os.path.join(tmp_path, "terminated")
    kube_cluster.kubectl(
        "apply",
        "-n",
        kube_namespace,
        "-f",
        "-",
        input=SERVER % {"port": free_port(), "mark": mark},
    )
    pod = kube_cluster.wait_pod(kube_namespace, "web", lambda p: p.status.phase == "Running")
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "False"  # /readyz answers 503 for the first 3s
    pod = kube_cluster.wait_pod(
        kube_namespace,
        "web",
        lambda p: any(c.type == "Ready" and c.status == "True" for c in p.status.conditions),
    )
    assert pod.status.container_statuses[0].ready
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("local://"))
    assert os.path.exists(f"/proc/{pid}")

    kube_cluster.kubectl("delete", "pod", "web", "-n", kube_namespace, "--timeout=30s")
    with kube_cluster.api_client() as api:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).read_namespaced_pod("web", kube_namespace)
        assert err.value.status == 404
    assert Path(mark).read_text() == "sigterm"
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}")


def test_restart_policy_on_failure_restarts_until_success(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=CRASHER)
    pod = kube_cluster.wait_pod(
        kube_namespace, "crasher", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=60
    )
    st = pod.status.container_statuses[0]
    assert pod.status.phase == "Succeeded"
    assert st.restart_count == 1
    assert st.last_state.terminated.exit_code == 1
    assert st.state.terminated.exit_code == 0


def test_init_container_runs_before_main(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=INIT)
    pod = kube_cluster.wait_pod(
        kube_namespace, "with-init", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=60
    )
    assert pod.status.phase == "Succeeded"
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    assert pod.status.container_statuses[0].state.terminated.message == "prepared\n"
