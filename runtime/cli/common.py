"""Shared CLI plumbing: the ``--root``/``--json`` options, output helpers, table rendering."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import UsageError
from certmodel.runtime.format.store import ROOT_ENV, Store, default_root


def root_parent() -> argparse.ArgumentParser:
    """Parent parser adding ``--root`` (default: ``$CERTMODEL_ROOT``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"store root folder (default: ${ROOT_ENV})",
    )
    return parent


def json_parent() -> argparse.ArgumentParser:
    """Parent parser adding ``--json`` for machine-readable output."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parent


def store_from(args: argparse.Namespace, *, must_exist: bool = True) -> Store:
    """The store named by ``--root`` or ``$CERTMODEL_ROOT``; a clear error when neither is set."""
    root: Path | None = args.root or default_root()
    if root is None:
        raise UsageError(f"no store root: pass --root or set {ROOT_ENV}")
    if must_exist and not root.is_dir():
        raise UsageError(f"store root {root} does not exist")
    return Store(root)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain, aligned table (like ``kubectl get``)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        print("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def fmt_float(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
