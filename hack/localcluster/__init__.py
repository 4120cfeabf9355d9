"""Local Kubernetes control plane for certmodel's tests and demo (test/dev infrastructure).

A real etcd, kube-apiserver and kube-controller-manager (built from their Go modules by
``hack/kube/build.sh``) run on loopback, plus a *local node agent*: a tiny stand-in for a kubelet
and a scheduler that runs Pods as local processes. Nothing here is meant for production; it exists
so that Jobs really run through the job controller and RBAC really applies, without Docker.

Entry points:

* ``python -m localcluster up|down|status|env`` (used by ``make cluster-up`` etc.);
* ``localcluster.pytest_plugin`` (the ``kube_cluster`` session fixture);
* ``python -m localcluster.nodeagent --kubeconfig ...`` (the node agent alone).
"""

from __future__ import annotations

from localcluster.binaries import Binaries, BinariesMissingError, find_binaries
from localcluster.controlplane import ControlPlane

__all__ = ["Binaries", "BinariesMissingError", "ControlPlane", "find_binaries"]
