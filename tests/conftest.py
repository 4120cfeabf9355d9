"""Suite-wide fixtures. The local control plane fixtures come from hack/localcluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from certmodel.runtime.format.store import Store

pytest_plugins = ["localcluster.pytest_plugin", "reliability"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store under a temporary root."""
    root = tmp_path / "models"
    root.mkdir()
    return Store(root)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is not a passing test: fail the run loudly if anything was skipped.

    Every test here needs only what `make test` installs or builds (torch, the local control
    plane, helm); a skip means a setup step is missing, and CI must not go green on it.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"FAILED: {len(skipped)} test(s) were skipped; skips are not allowed in this suite"
            " (a missing dependency must be installed by `make test`, not skipped):",
            red=True,
            bold=True,
        )
        for report in skipped[:20]:
            reporter.write_line(f"  {report.nodeid}: {report.longrepr}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
