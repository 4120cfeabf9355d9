"""Thin, typed entry points into the ``kubernetes`` client (whose helpers are untyped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def api_client(kubeconfig: str | Path) -> Any:
    """A new ``kubernetes.client.ApiClient`` for ``kubeconfig`` (close it when done)."""
    from kubernetes import config

    cfg: Any = config
    return cfg.new_client_from_config(config_file=str(kubeconfig))


def parse_quantity(value: str | int | float) -> Any:
    """``kubernetes.utils.parse_quantity`` (a Decimal): '500m' -> 0.5, '1Gi' -> 1073741824."""
    from kubernetes.utils import quantity

    q: Any = quantity
    return q.parse_quantity(value)


def new_watch() -> Any:
    """A ``kubernetes.watch.Watch``."""
    from kubernetes import watch

    w: Any = watch
    return w.Watch()


def hostpath_volume(
    host: str | Path,
    *,
    name: str,
    namespace: str,
    claim: str,
    size: str = "10Gi",
    access: str = "ReadWriteMany",
    with_claim: bool = True,
) -> str:
    """YAML of a hostPath PersistentVolume reserved for ``namespace/claim`` (and the claim).

    The local control plane has no provisioner: a test or the demo binds a folder here to a
    claim by pre-creating the PV with a ``claimRef``; the PV binder does the rest.
    """
    pv = f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [{access}]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {{path: {host}}}
  claimRef: {{namespace: {namespace}, name: {claim}}}
"""
    if not with_claim:
        return pv
    return (
        pv
        + f"""---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {claim}, namespace: {namespace}}}
spec:
  accessModes: [{access}]
  storageClassName: ""
  resources: {{requests: {{storage: {size}}}}}
"""
    )
