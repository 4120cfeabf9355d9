"""Locate the control plane's binaries built by ``hack/kube/build.sh``.

The versions live in ``hack/kube/versions.env`` (one source of truth for the shell build and
for Python); the binaries live in the user's cache, never in the repository. A missing binary is
an error that names the command that builds it: tests must fail loudly, never skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
VERSIONS_FILE = HACK_DIR / "kube" / "versions.env"
BUILD_HINT = "make kube-bins   (or: hack/kube/build.sh)"


class BinariesMissingError(RuntimeError):
    """Raised when a control-plane binary has not been built yet."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines of versions.env (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"')
    return out


def cache_dir() -> Path:
    """``$CERTMODEL_CACHE`` or ``~/.cache/certmodel`` (same rule as build.sh)."""
    env = os.environ.get("CERTMODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "certmodel"


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every binary the local cluster uses."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path
    kube_version: str
    etcd_version: str


def find_binaries(cache: Path | None = None) -> Binaries:
    """Return the built binaries or raise :class:`BinariesMissingError` naming the build command."""
    versions = read_versions()
    root = cache or cache_dir()
    kube_version = versions["KUBE_VERSION"]
    bin_dir = root / "kube" / kube_version / "bin"
    tools = root / "tools"
    found = Binaries(
        etcd=bin_dir / "etcd",
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        kubectl=tools / "kubectl",
        helm=tools / "helm",
        kube_version=kube_version,
        etcd_version=versions["ETCD_VERSION"],
    )
    missing = [
        str(p)
        for p in (found.etcd, found.kube_apiserver, found.kube_controller_manager, found.kubectl)
        if not os.access(p, os.X_OK)
    ]
    if missing:
        raise BinariesMissingError(
            "local control plane binaries are missing: "
            + ", ".join(missing)
            + f"\nbuild them with: {BUILD_HINT}"
        )
    return found
