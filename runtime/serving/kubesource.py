"""The pointer ConfigMap, watched through the Kubernetes API (the in-cluster pointer source).

Why the API and not a volume mount: a mounted ConfigMap lags a minute or more behind an update
and a ``subPath`` mount never updates at all. A watch delivers a move within milliseconds.

The loop is the informer pattern cut down to one object: *list* the ConfigMap (by
``fieldSelector=metadata.name=NAME``, which RBAC limited to that one ``resourceName`` permits),
deliver its pointer, then *watch* from the list's ``resourceVersion``. A watch the server ends
normally is resumed from the last version seen (bookmarks keep it fresh); a ``410 Gone`` or a
connection error leads to a fresh list, after a capped exponential back-off for errors, so no
move made while disconnected is missed. A deleted ConfigMap or a missing key is reported and the
server keeps serving what it has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import CertmodelError, UsageError
from certmodel.runtime.format.pointer import POINTER_KEY, PointerDocument
from certmodel.runtime.serving.sources import PointerSource

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_TIMEOUT_S = 240
CONNECT_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0


def kube_api_client(kubeconfig: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster credentials in a pod, else ``kubeconfig`` / ``$KUBECONFIG``.

    In a pod the projected ServiceAccount token is re-read when it rotates
    (``try_refresh_token``), so a long-running server keeps its access.
    """
    from kubernetes import client, config

    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise UsageError(f"no Kubernetes credentials: {exc}") from None


def default_namespace(kubeconfig: str | None = None) -> str:
    """The pod's own namespace, else the kubeconfig context's, else ``default``."""
    if SA_NAMESPACE_FILE.is_file():
        return SA_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return str(active["context"].get("namespace") or "default")
    except Exception:  # no kubeconfig at all: the API client will say so more clearly
        return "default"


class ConfigMapPointerSource(PointerSource):
    """Follows ``data[pointer.json]`` of one ConfigMap."""

    def __init__(
        self, api_client: Any, *, name: str, namespace: str, watch_timeout: int = WATCH_TIMEOUT_S
    ) -> None:
        super().__init__()
        from kubernetes import client

        self.name, self.namespace = name, namespace
        self.watch_timeout = watch_timeout
        self._core = client.CoreV1Api(api_client)
        self._watch: Any = None

    @property
    def description(self) -> str:
        return f"configmap {self.namespace}/{self.name} key {POINTER_KEY}"

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        delay = BACKOFF_MIN_S
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch_from(version)
                delay = BACKOFF_MIN_S
            except ApiException as exc:
                version = None
                if exc.status == 410:  # our resourceVersion is too old: list again at once
                    continue
                self._error(f"API error {exc.status}: {exc.reason}; retrying in {delay:.1f}s")
                delay = self._backoff(delay)
            except Exception as exc:  # connection reset, timeout, DNS: retry, never die
                version = None
                if self._stop.is_set():
                    break
                self._error(f"{type(exc).__name__}: {exc}; retrying in {delay:.1f}s")
                delay = self._backoff(delay)

    def _list(self) -> str:
        result = self._core.list_namespaced_config_map(
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            _request_timeout=(CONNECT_TIMEOUT_S, 60.0),
        )
        if result.items:
            self._deliver(result.items[0])
        else:
            self._error("ConfigMap not found; waiting for it to be created")
        return str(result.metadata.resource_version)  # type: ignore[union-attr]

    def _watch_from(self, version: str) -> str:
        """Deliver changes after ``version``; return the last version seen when it ends."""
        from kubernetes import watch

        self._watch = w = watch.Watch()  # type: ignore[no-untyped-call]
        stream = w.stream(  # type: ignore[no-untyped-call]
            self._core.list_namespaced_config_map,
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _request_timeout=(CONNECT_TIMEOUT_S, self.watch_timeout + 30.0),
        )
        for event in stream:
            if self._stop.is_set():
                break
            kind = event["type"]
            if kind in ("ADDED", "MODIFIED"):
                self._deliver(event["object"])
            elif kind == "DELETED":
                self._error("ConfigMap deleted; keeping the version being served")
        return str(w.resource_version or version)

    def _deliver(self, obj: Any) -> None:
        text = (obj.data or {}).get(POINTER_KEY)
        if text is None:
            self._error(f"ConfigMap has no {POINTER_KEY!r} key yet")
            return
        try:
            self._emit(PointerDocument.parse(text, source=self.description))
        except CertmodelError as exc:
            self._error(str(exc))

    def _backoff(self, delay: float) -> float:
        self._stop.wait(delay)
        return min(delay * 2, BACKOFF_MAX_S)

    def _interrupt(self) -> None:
        if self._watch is not None:
            self._watch.stop()
