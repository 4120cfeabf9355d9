"""Suite-wide fixtures. The local control plane fixtures come from hack/localcluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from certmodel.runtime.format.store import Store

pytest_plugins = ["localcluster.pytest_plugin"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store under a temporary root."""
    root = tmp_path / "models"
    root.mkdir()
    return Store(root)
