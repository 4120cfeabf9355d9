"""What the inference pods of a line serve: found by label, asked over HTTP.

Inference pods may only read their pointer ConfigMap (least privilege), so they do not report
to the API; the operator asks each ready pod's ``GET /v1/status`` instead (a short timeout, and
a pod that does not answer counts as not converged).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from certmodel.operator.api.certifiedmodel import CertifiedModelSpec
from certmodel.operator.decisions.line import PodServing

STATUS_PATH = "/v1/status"
DEFAULT_PORT = 8000
TIMEOUT_S = 1.0


@dataclass(frozen=True)
class PodReport:
    dna: str | None
    refused: tuple[str, ...] = ()
    error: str = ""


def selector(name: str, spec: CertifiedModelSpec) -> str:
    """Label selector of the line's inference pods (training pods carry the label too)."""
    if spec.serving_selector:
        return ",".join(f"{k}={v}" for k, v in sorted(spec.serving_selector.items()))
    return f"certmodel.io/model={name},app.kubernetes.io/component!=training"


def serving_pods(
    pods: list[dict[str, Any]], poll: Callable[[dict[str, Any]], PodReport]
) -> list[PodServing]:
    """What each of the line's inference pods serves (unready pods are not asked)."""
    out = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = _is_ready(pod)
        report = poll(pod) if ready else PodReport(None)
        out.append(
            PodServing(
                name=pod["metadata"]["name"],
                ready=ready,
                dna=report.dna,
                refused=report.refused,
                error=report.error,
            )
        )
    return out


def poll_pod(pod: dict[str, Any]) -> PodReport:
    """Ask one pod what it serves."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return PodReport(None, error="no pod IP")
    url = f"http://{ip}:{_port(pod)}{STATUS_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            data = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return PodReport(None, error=f"{url}: {exc}")
    refused = tuple(
        f"{r.get('dna')}: {r.get('reason')}"
        for r in data.get("refused") or []
        if isinstance(r, dict)
    )
    return PodReport(data.get("dna"), refused[-3:])


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _port(pod: dict[str, Any]) -> int:
    for container in pod["spec"].get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return DEFAULT_PORT


def is_serving_pod(labels: Any, line: str, spec: CertifiedModelSpec) -> bool:
    """Whether a pod with ``labels`` serves ``line`` (the selector above, evaluated locally)."""
    if spec.serving_selector:
        return all(labels.get(k) == v for k, v in spec.serving_selector.items())
    return bool(
        labels.get("certmodel.io/model") == line
        and labels.get("app.kubernetes.io/component") != "training"
    )
