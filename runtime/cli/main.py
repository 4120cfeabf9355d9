"""Entry point of the ``certmodel`` command.

Sub-commands live in small modules that each expose ``register(subparsers)``; heavy imports
(torch, transformers) happen inside their handlers, so read commands stay fast and torch-free.
A :class:`CertmodelError` -- or a full disk -- becomes one line on stderr and its exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from certmodel import __version__
from certmodel.runtime.errors import CertmodelError, ExitCode, no_space_error

COMMAND_MODULES = [
    "certmodel.runtime.cli.store_cmd",
    "certmodel.runtime.cli.sign_cmd",
    "certmodel.runtime.cli.train_cmd",
    "certmodel.runtime.cli.base_cmd",
    "certmodel.runtime.cli.serve_cmd",
    "certmodel.runtime.cli.migrate_cmd",
    "certmodel.runtime.cli.validate_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certmodel",
        description="Certified, DNA-named model versions: train, verify, promote, serve.",
    )
    parser.add_argument("--version", action="version", version=f"certmodel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CertmodelError as exc:
        print(f"certmodel: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("certmodel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:
        if (full := no_space_error(exc)) is None:
            raise
        print(f"certmodel: error: {full}", file=sys.stderr)  # a full disk is no bug
        return int(full.exit_code)


if __name__ == "__main__":
    sys.exit(main())
