"""Signing commands: ``certmodel sign DNA --key PRIVATE.pem``, and the ``--public-key`` option
that ``verify`` and ``promote`` take to require a valid signature (see docs/signing.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from certmodel.runtime.cli.common import json_parent, print_json, root_parent, store_from
from certmodel.runtime.errors import ExitCode, NotFoundError, VerificationError
from certmodel.runtime.format.manifest import SIGNATURE_NAME
from certmodel.runtime.format.verify import Problem

KEY_ENV_HINT = "an EC P-256 private key in PEM (e.g. a Kubernetes Secret mounted as a file)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sign",
        parents=[root_parent(), json_parent()],
        help="sign a version (writes certified.sig, covering every file and the manifest)",
    )
    p.add_argument("dna")
    p.add_argument("--key", type=Path, required=True, metavar="PRIVATE.pem", help=KEY_ENV_HINT)
    p.set_defaults(func=cmd_sign)


def add_public_key_option(parser: argparse.ArgumentParser) -> None:
    """``--public-key PUB.pem``: also require a valid signature by that key."""
    parser.add_argument(
        "--public-key",
        type=Path,
        default=None,
        metavar="PUB.pem",
        help="also require a valid signature (certified.sig) by this EC public key",
    )


def signature_problems(version_dir: Path, public_key: Path) -> list[Problem]:
    """The signature check as verification problems (empty when the signature is valid)."""
    from certmodel.runtime.format.signing import verify_signature

    try:
        verify_signature(version_dir, public_key)
    except VerificationError as exc:
        return [Problem("signature", SIGNATURE_NAME, str(exc))]
    return []


def cmd_sign(args: argparse.Namespace) -> int:
    from certmodel.runtime.format.signing import sign_version

    store = store_from(args)
    path = store.version_path(args.dna)
    if not path.is_dir():
        raise NotFoundError(f"version {args.dna} not found under {store.certified_dir}")
    sig = sign_version(path, args.key)
    if args.json:
        print_json({"dna": args.dna, "signature": str(sig)})
    else:
        print(f"signed  {args.dna}  ({sig})")
    return ExitCode.OK
