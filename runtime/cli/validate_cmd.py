"""`certmodel validate`: check a whole store (versions, base models, CURRENT, .staging)."""

from __future__ import annotations

import argparse

from certmodel.runtime.cli.common import (
    json_parent,
    print_json,
    print_table,
    root_parent,
    store_from,
)
from certmodel.runtime.errors import ExitCode


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        parents=[root_parent(), json_parent()],
        help="check every version, its base model, CURRENT and .staging",
        description="Check a whole store: every version against its manifest (digests, schema,"
        " DNA), each adapter's base model present with the digest it was trained on, CURRENT"
        " naming a version that verifies with the recorded content digest, and no"
        " half-published version under .staging. Exit 0 when nothing is broken, 1 otherwise"
        " (warnings do not fail).",
    )
    p.add_argument(
        "--shallow",
        action="store_true",
        help="check sizes and types only, without re-hashing every file (faster, weaker)",
    )
    p.add_argument(
        "--require-current",
        action="store_true",
        help="fail when there is no CURRENT pointer (by default that is a warning)",
    )
    p.add_argument(
        "--no-pointer",
        action="store_true",
        help="skip the CURRENT checks (in a cluster the pointer is a ConfigMap)",
    )
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from certmodel.runtime.validate import validate_store

    store = store_from(args)
    report = validate_store(
        store,
        deep=not args.shallow,
        check_pointer=not args.no_pointer,
        require_current=args.require_current,
    )
    if args.json:
        print_json(report.to_json())
        return ExitCode.OK if report.ok else ExitCode.FAILED
    failed = {f.subject for f in report.findings if f.severity == "error"}
    rows = [
        ["ok", v.dna, "version", f"{v.kind} on {v.base_model}"]
        for v in report.versions
        if v.dna not in failed
    ]
    if report.current and "CURRENT" not in failed:
        rows.append(["ok", "CURRENT", "pointer", f"-> {report.current}"])
    rows += [[f.severity, f.subject, f.kind, f"{f.path}: {f.detail}"] for f in report.findings]
    print_table(["STATUS", "SUBJECT", "CHECK", "DETAIL"], rows)
    warnings = len(report.findings) - len(report.errors)
    print(
        f"\n{len(report.versions)} versions, {len(report.errors)} errors, {warnings} warnings"
        f" under {store.root}"
    )
    return ExitCode.OK if report.ok else ExitCode.FAILED
