"""`certmodel migrate`: publish a legacy model folder's models as certified versions.

Dry run by default (a table of what would happen); ``--apply`` does it. Idempotent: DNAs derive
from content, so a second run finds everything migrated and does nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from certmodel.runtime.cli.common import (
    json_parent,
    print_json,
    print_table,
    root_parent,
    store_from,
)
from certmodel.runtime.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from certmodel.runtime.migrate.apply import Report

PICKLE_RISK = (
    "pickle files can execute code when loaded; torch.load(weights_only=True) restricts the"
    " unpickler to tensors, which blocks the known attacks but still parses untrusted input:"
    " convert only files you trust"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        parents=[root_parent(), json_parent()],
        help="migrate legacy model folders into the certified layout (dry run unless --apply)",
        description="Scan LEGACY (base_models/<name>/, adapter folders, merged model folders,"
        " an old CURRENT symlink) and publish each model as a certified version linked to its"
        " base model; CURRENT is carried over when the store has none. Prints what would"
        " happen unless --apply. Legacy files are never changed or deleted, except by"
        " --remove-legacy after the migrated version verified. Exit 0 when every model was"
        " migrated (or already was), 1 when any was skipped. See docs/migration.md.",
    )
    p.add_argument("--from", dest="legacy", type=Path, required=True, metavar="LEGACY")
    p.add_argument("--apply", action="store_true", help="do it (default: dry run, no writes)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="convert legacy adapter_model.bin (pickle) adapters to safetensors, loading them"
        f" with torch.load(weights_only=True). RISK: {PICKLE_RISK}",
    )
    p.add_argument(
        "--base",
        metavar="NAME",
        help="link every model to base model NAME (default: the base its config names)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip legacy folders whose path (relative to LEGACY) matches GLOB; repeatable",
    )
    p.add_argument(
        "--remove-legacy",
        action="store_true",
        help="with --apply: afterwards delete the legacy files of every version that verified"
        " (files not migrated stay; bases still needed stay)",
    )
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from certmodel.runtime.migrate.apply import migrate
    from certmodel.runtime.migrate.plan import Options

    if args.remove_legacy and not args.apply:
        raise UsageError("--remove-legacy needs --apply (a dry run removes nothing)")
    if not args.legacy.is_dir():
        raise UsageError(f"legacy folder {args.legacy} does not exist")
    store = store_from(args, must_exist=False)
    if args.apply:
        store.root.mkdir(parents=True, exist_ok=True)
    report = migrate(
        args.legacy,
        store,
        Options(allow_pickle=args.allow_pickle, base_override=args.base),
        apply=args.apply,
        remove_legacy=args.remove_legacy,
        exclude=args.exclude,
    )
    if args.json:
        print_json(
            {
                "legacy": str(report.legacy),
                "root": str(report.root),
                "applied": report.applied,
                "ok": report.ok,
                "pickle_converted": report.pickle_converted,
                "rows": [row.to_json() for row in report.rows],
            }
        )
    else:
        _print_report(report)
    return ExitCode.OK if report.ok else ExitCode.FAILED


def _print_report(report: Report) -> None:
    rows = [
        [r.subject, r.kind, r.action, r.base or "-", r.dna or "-", _mark(r.severity) + r.detail]
        for r in report.rows
    ]
    print_table(["SOURCE", "KIND", "ACTION", "BASE", "DNA", "DETAIL"], rows)
    if report.pickle_converted:
        verb = "converted" if report.applied else "would convert"
        print(
            f"\nWARNING: {verb} {report.pickle_converted} pickle adapter(s) with"
            f" torch.load(weights_only=True); {PICKLE_RISK}"
        )
    errors = sum(r.severity == "error" for r in report.rows)
    if not report.applied:
        print(f"\ndry run: nothing was written; {errors} problems. Pass --apply to migrate.")
    else:
        print(f"\nmigrated into {report.root}; {errors} problems.")


def _mark(severity: str) -> str:
    return {"error": "ERROR: ", "warning": "warning: "}.get(severity, "")
