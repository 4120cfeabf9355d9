"""Kubernetes I/O: the only module of the operator that talks to the API server.

Thin, typed wrappers over the official client that return plain dicts (camelCase, as the API
serves them), turn 404 into None and 409 into what the caller needs: adopting an object that
already exists, or reporting a lost compare-and-swap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certmodel.operator import metrics
from certmodel.operator.api import GROUP, VERSION
from certmodel.operator.decisions.line import Event

log = logging.getLogger(__name__)
COMPONENT = "certmodel-operator"


def event_body(
    involved: Mapping[str, Any], event: Event, *, component: str, instance: str | None = None
) -> dict[str, Any]:
    """A core/v1 Event on ``involved`` (its message cut to the API's 1 KiB)."""
    meta = involved["metadata"]
    now = datetime.now(UTC).isoformat()
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance or component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Kube:
    """API access for the reconcilers."""

    def __init__(self, api: client.ApiClient, *, instance: str = "") -> None:
        # Typed as Any: the client's stubs want model objects, we pass and read plain dicts.
        self.api: Any = api
        self.core: Any = client.CoreV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.instance = instance
        self.writes = 0
        """API writes made (creates, patches, replaces, events): the steady-state benchmark."""

    def _wrote(self) -> None:
        self.writes += 1
        metrics.API_WRITES.inc()

    def _dict(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return out

    # -- custom resources ---------------------------------------------------------------------
    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)

    def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return list(result.get("items", []))

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch ``status`` (keys set to None are removed)."""
        self._wrote()
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}
        )

    # -- jobs, pods, config maps --------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(self.batch.read_namespaced_job(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
        return [self._dict(p) for p in pods.items]

    def ensure_config_map(self, obj: dict[str, Any]) -> None:
        """Create ``obj``; an existing one of the same name is adopted as it is."""
        try:
            self._wrote()
            self.core.create_namespaced_config_map(obj["metadata"]["namespace"], obj)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def ensure_job(self, obj: dict[str, Any]) -> bool:
        """Create the Job; False if it existed (another reconcile or replica created it)."""
        try:
            self._wrote()
            self.batch.create_namespaced_job(obj["metadata"]["namespace"], obj)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def swap_config_map(self, obj: dict[str, Any], resource_version: str | None) -> bool:
        """Compare-and-swap: create if ``resource_version`` is None, else replace only if the
        object is still at that version. False when another writer got there first."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        try:
            self._wrote()
            if resource_version is None:
                self.core.create_namespaced_config_map(ns, obj)
            else:
                body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": resource_version}}
                self.core.replace_namespaced_config_map(name, ns, body)
        except ApiException as exc:
            if exc.status in (404, 409):  # deleted or changed since it was read: re-read
                return False
            raise
        return True

    # -- events ------------------------------------------------------------------------------
    def emit(self, involved: dict[str, Any], event: Event) -> None:
        """Record a Kubernetes Event on ``involved``; failures are logged, never raised."""
        meta = involved["metadata"]
        body = event_body(involved, event, component=COMPONENT, instance=self.instance)
        try:
            self._wrote()
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:
            log.warning(
                "could not record event %s on %s: %s", event.reason, meta["name"], exc.reason
            )
