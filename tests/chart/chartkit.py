"""Helpers of the chart tests: find helm, render the chart, walk the rendered objects.

The helm and kubectl binaries live in the shared cache (``$CERTMODEL_CACHE/tools``), put there
by ``make kube-bins``. A missing binary fails the test with that command: a green run must
mean the chart really was linted and rendered.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "certmodel"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
TOOLS_HINT = "make kube-bins"
RELEASE = "demo"
NAMESPACE = "certmodel-system"

Obj = dict[str, Any]

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
"""Kinds whose spec.template is a pod template (CronJob is not rendered by this chart)."""


def tool(name: str) -> Path:
    """Absolute path of the cached ``helm`` or ``kubectl``; fail naming the make target."""
    env = os.environ.get("CERTMODEL_CACHE")
    cache = Path(env) if env else Path.home() / ".cache" / "certmodel"
    path = cache / "tools" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing; run: {TOOLS_HINT}", pytrace=False)
    return path


def helm(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the cached helm (``env`` adds variables); raise with its output on failure."""
    proc = subprocess.run(
        [str(tool("helm")), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def render(*values_args: str, crds: bool = True) -> list[Obj]:
    """``helm template`` the chart with extra ``-f``/``--set`` arguments; the parsed objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args]
    if crds:
        args.append("--include-crds")
    docs = yaml.safe_load_all(helm(*args).stdout)
    return [d for d in docs if d]


def of_kind(objs: Sequence[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Sequence[Obj], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_templates(objs: Sequence[Obj]) -> Iterator[tuple[str, Obj]]:
    """(kind/name, pod spec) of every workload."""
    for o in objs:
        if o["kind"] in POD_TEMPLATE_KINDS:
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def containers(pod_spec: Obj) -> list[Obj]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def selectors(obj: Obj) -> list[dict[str, str]]:
    """Every label selector an object carries (workload, Service, ServiceMonitor)."""
    spec = obj.get("spec", {})
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ServiceMonitor"):
        return [spec["selector"].get("matchLabels", {})]
    if kind == "Service":
        return [spec.get("selector", {})]
    return []
