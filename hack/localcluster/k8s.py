"""Thin, typed entry points into the ``kubernetes`` client (whose helpers are untyped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def api_client(kubeconfig: str | Path) -> Any:
    """A new ``kubernetes.client.ApiClient`` for ``kubeconfig`` (close it when done)."""
    from kubernetes import config

    cfg: Any = config
    return cfg.new_client_from_config(config_file=str(kubeconfig))


def parse_quantity(value: str | int | float) -> Any:
    """``kubernetes.utils.parse_quantity`` (a Decimal): '500m' -> 0.5, '1Gi' -> 1073741824."""
    from kubernetes.utils import quantity

    q: Any = quantity
    return q.parse_quantity(value)


def new_watch() -> Any:
    """A ``kubernetes.watch.Watch``."""
    from kubernetes import watch

    w: Any = watch
    return w.Watch()
