"""The console's Kubernetes I/O: reviews, reading lines and trainings, patching a line's spec.

Blocking calls of the official client (app.py runs them in worker threads). They run as the
operator's ServiceAccount, but only after a SubjectAccessReview allowed the *caller* the same
action (auth.py): the console never grants more than the caller's own RBAC. Writes carry the
field manager ``certmodel-console``; who asked is recorded in an annotation and an Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certmodel.operator.api import GROUP, VERSION
from certmodel.operator.console.views import FIELD_MANAGER, ConsoleError
from certmodel.operator.decisions.line import Event
from certmodel.operator.kube import event_body

log = logging.getLogger(__name__)
LINES, TRAININGS = "certifiedmodels", "modeltrainings"
TIMEOUT_S = 10


class ConsoleKube:
    """API access for the console (a :class:`~certmodel.operator.console.auth.Reviewer` too)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api: Any = api
        self.core: Any = client.CoreV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.authn: Any = client.AuthenticationV1Api(api)
        self.authz: Any = client.AuthorizationV1Api(api)

    def _dict(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return out

    # -- reviews --------------------------------------------------------------------------
    def token_review(self, token: str) -> Mapping[str, Any]:
        body = client.V1TokenReview.model_validate({"spec": {"token": token}})
        review = self.authn.create_token_review(body, _request_timeout=TIMEOUT_S)
        return self._dict(review).get("status") or {}

    def access_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        sar = client.V1SubjectAccessReview.model_validate(dict(body))
        review = self.authz.create_subject_access_review(sar, _request_timeout=TIMEOUT_S)
        return self._dict(review).get("status") or {}

    # -- model lines and trainings ----------------------------------------------------------
    def list_lines(self, namespace: str) -> list[dict[str, Any]]:
        return self._list(LINES, namespace)

    def list_trainings(self, namespace: str) -> list[dict[str, Any]]:
        return self._list(TRAININGS, namespace)

    def _list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT_S
        )
        return list(result.get("items", []))

    def get_line(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, LINES, name, _request_timeout=TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ConsoleError(404, f"model line {namespace}/{name} not found") from exc
            raise
        return dict(obj)

    def patch_line(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of the line; a stale resourceVersion in ``patch`` answers 409."""
        try:
            obj = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                LINES,
                name,
                dict(patch),
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _request_timeout=TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ConsoleError(
                    409, f"model line {name} changed meanwhile; reload and retry"
                ) from exc
            if exc.status == 404:
                raise ConsoleError(404, f"model line {namespace}/{name} not found") from exc
            if exc.status == 422:
                raise ConsoleError(422, f"the API server refused the change: {exc.body}") from exc
            raise
        return dict(obj)

    def record(self, line: Mapping[str, Any], reason: str, message: str) -> None:
        """An Event on the line saying who changed it through the console (best effort)."""
        meta = line["metadata"]
        body = event_body(line, Event("Normal", reason, message), component=FIELD_MANAGER)
        try:
            self.core.create_namespaced_event(meta["namespace"], body, _request_timeout=TIMEOUT_S)
        except ApiException as exc:
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc.reason)
