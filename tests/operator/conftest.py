"""Fixtures for the operator against the real local control plane (see tests/opfixtures.py,
shared with tests/faults/)."""

from __future__ import annotations

from opfixtures import crds, operator_env  # noqa: F401 -- fixtures, found by name
