"""Local-mode store commands: list, show, verify, promote, rollback, current."""

from __future__ import annotations

import argparse
from typing import Any

from certmodel.runtime.cli.common import (
    fmt_float,
    json_parent,
    print_json,
    print_table,
    root_parent,
    store_from,
)
from certmodel.runtime.cli.sign_cmd import add_public_key_option, signature_problems
from certmodel.runtime.errors import ExitCode, NotFoundError
from certmodel.runtime.format.pointer import PointerDocument
from certmodel.runtime.format.verify import VerifyReport, verify_version
from certmodel.runtime.localmode import promote_local, read_pointer, rollback_local


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    read = [root_parent(), json_parent()]
    p = sub.add_parser("list", parents=read, help="list the certified versions")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=read, help="show one version's manifest")
    p.add_argument("dna")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", parents=read, help="verify versions against their manifests")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("dna", nargs="?", help="the version to verify")
    target.add_argument("--all", action="store_true", help="verify every version")
    add_public_key_option(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("promote", parents=read, help="verify a version and make it CURRENT")
    p.add_argument("dna")
    p.add_argument(
        "--allow-base-change",
        action="store_true",
        help="allow a version built on another base model than the current one",
    )
    add_public_key_option(p)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", parents=read, help="return CURRENT to the previous version")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("current", parents=read, help="show CURRENT and its history")
    p.set_defaults(func=cmd_current)


def cmd_list(args: argparse.Namespace) -> int:
    store = store_from(args)
    current = read_pointer(store.root).dna
    entries = store.list_versions()
    if args.json:
        print_json(
            [
                {
                    "dna": e.dna,
                    "current": e.dna == current,
                    "manifest": e.manifest.model_dump(mode="json", exclude={"files"})
                    if e.manifest
                    else None,
                    "error": e.error,
                }
                for e in entries
            ]
        )
        return ExitCode.OK
    rows = []
    for e in entries:
        m = e.manifest
        rows.append(
            [
                ("* " if e.dna == current else "  ") + e.dna,
                m.kind if m else "?",
                m.base_model.name if m else "?",
                fmt_float(m.metrics.eval_loss) if m else "-",
                m.created.strftime("%Y-%m-%d %H:%M:%S") if m else f"unreadable: {e.error}",
            ]
        )
    print_table(["  DNA", "KIND", "BASE", "EVAL LOSS", "CREATED"], rows)
    return ExitCode.OK


def cmd_show(args: argparse.Namespace) -> int:
    store = store_from(args)
    manifest = store.read_manifest(args.dna)
    if args.json:
        print_json(manifest.model_dump(mode="json"))
        return ExitCode.OK
    print(f"dna:            {manifest.dna}")
    print(f"kind:           {manifest.kind}")
    print(f"base model:     {manifest.base_model.name} ({manifest.base_model.digest})")
    print(f"content digest: {manifest.content_digest}")
    print(f"created:        {manifest.created.isoformat()}")
    print(f"tool version:   {manifest.tool_version}")
    metrics = manifest.metrics.model_dump(exclude_none=True)
    print("metrics:        " + (", ".join(f"{k}={v}" for k, v in metrics.items()) or "-"))
    print("files:")
    for entry in manifest.files:
        print(f"  {entry.path}  {entry.size} bytes  sha256:{entry.sha256[:16]}…")
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.all:
        reports = [verify_version(e.path) for e in store.list_versions()]
    else:
        path = store.version_path(args.dna)
        if not path.is_dir():
            raise NotFoundError(f"version {args.dna} not found under {store.certified_dir}")
        reports = [verify_version(path)]
    if args.public_key is not None:
        for report in reports:
            report.problems.extend(signature_problems(report.version_dir, args.public_key))
    if args.json:
        print_json([_report_json(r) for r in reports])
    else:
        for report in reports:
            if report.ok:
                print(f"OK      {report.version_dir.name}")
            for problem in report.problems:
                print(
                    f"FAILED  {report.version_dir.name}: {report.version_dir / problem.path}:"
                    f" {problem.detail}"
                )
    return ExitCode.OK if all(r.ok for r in reports) else ExitCode.FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    store = store_from(args)
    doc = promote_local(
        store, args.dna, allow_base_change=args.allow_base_change, public_key=args.public_key
    )
    _print_pointer(doc, args.json, verb="CURRENT ->")
    return ExitCode.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    store = store_from(args)
    doc = rollback_local(store)
    _print_pointer(doc, args.json, verb="rolled back, CURRENT ->")
    return ExitCode.OK


def cmd_current(args: argparse.Namespace) -> int:
    store = store_from(args)
    doc = read_pointer(store.root)
    if args.json:
        print_json(doc.model_dump(mode="json"))
        return ExitCode.OK if doc.target else ExitCode.NOT_FOUND
    if doc.target is None:
        raise NotFoundError(f"no CURRENT pointer under {store.root}")
    print(f"{doc.target.dna}  (revision {doc.revision})")
    for move in reversed(doc.history[-10:]):
        print(
            f"  r{move.revision}  {move.at.strftime('%Y-%m-%d %H:%M:%S')}  {move.reason:<8}"
            f"  {move.from_dna or '-'} -> {move.to_dna}"
        )
    return ExitCode.OK


def _print_pointer(doc: PointerDocument, as_json: bool, *, verb: str) -> None:
    if as_json:
        print_json(doc.model_dump(mode="json"))
    else:
        print(f"{verb} {doc.dna} (revision {doc.revision})")


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "dna": report.version_dir.name,
        "ok": report.ok,
        "content_digest": report.manifest.content_digest if report.manifest else None,
        "problems": [{"kind": p.kind, "path": p.path, "detail": p.detail} for p in report.problems],
    }
