"""`certmodel train`: fine-tune a base model with LoRA into a certified version.

Flags override a `--config FILE` (the resolved config the operator mounts into the Job);
unset flags leave the file's values alone. torch is imported only when a run really trains,
so `--dry-run` (print the DNA and recipe) works in a torch-free environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from certmodel.runtime.cli.common import json_parent, print_json, root_parent
from certmodel.runtime.errors import CertmodelError, ExitCode, no_space_error
from certmodel.runtime.format.store import default_root


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        parents=[root_parent(), json_parent()],
        help="fine-tune a base model with LoRA into a certified version",
        description="Train a LoRA adapter (or, with --merge, a merged model) and publish it "
        "as a certified version named by its DNA. Exits 0 without training when that "
        "version already exists.",
    )
    p.add_argument("--config", type=Path, help="training config file (JSON, or YAML)")
    p.add_argument("--base", help="base model: a name under ROOT/base_models or a path there")
    p.add_argument("--data", help="dataset: JSONL ({text} or {prompt,completion}) or text")
    p.add_argument("--data-format", choices=["auto", "jsonl", "text"])
    p.add_argument("--text-field", help="JSONL field holding the text (default: text)")
    _add_lora_flags(p)
    _add_hyper_flags(p)
    p.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="publish the merged full model (Option B) instead of an adapter",
    )
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument(
        "--progress",
        choices=["auto", "bar", "json", "none"],
        help="progress on stderr: auto = bar on a terminal, JSON lines otherwise",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--signing-key",
        type=Path,
        metavar="PRIVATE.pem",
        help="sign the version at publication with this EC private key (not part of the DNA)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the DNA and recipe, train nothing")
    p.set_defaults(func=cmd_train)


def _add_lora_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora-r", type=int, help="LoRA rank (default 8)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (default 16)")
    p.add_argument("--lora-dropout", type=float, help="LoRA dropout (default 0.05)")
    p.add_argument(
        "--target-modules",
        help="comma-separated module names "
        "(default: per architecture, e.g. q_proj,k_proj,v_proj,o_proj)",
    )


def _add_hyper_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"])
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--max-grad-norm", type=float)
    p.add_argument("--batch-size", type=int, help="packed sequences per micro-batch")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--max-seq-len", "--seq-len", type=int, dest="max_seq_len")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    p.add_argument("--eval-fraction", type=float)


_HYPER_FLAGS = (
    "epochs",
    "max_steps",
    "learning_rate",
    "schedule",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "batch_size",
    "grad_accum",
    "max_seq_len",
    "seed",
    "precision",
    "eval_fraction",
)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping the flags describe (None = not given, keeps the file's value)."""
    targets = args.target_modules.split(",") if args.target_modules else None
    return {
        "root": str(args.root) if args.root is not None else None,
        "base": args.base,
        "data": {"path": args.data, "format": args.data_format, "text_field": args.text_field},
        "lora": {
            "r": args.lora_r,
            "alpha": args.lora_alpha,
            "dropout": args.lora_dropout,
            "target_modules": targets,
        },
        "hyperparameters": {name: getattr(args, name) for name in _HYPER_FLAGS},
        "merge": args.merge,
        "checkpoint_every": args.checkpoint_every,
        "progress": args.progress,
        "device": args.device,
        "signing_key": str(args.signing_key) if args.signing_key is not None else None,
    }


def resolve_config(args: argparse.Namespace) -> Any:
    from certmodel.runtime.training.config import load_config_file, merge_overrides, parse_config

    base = load_config_file(args.config) if args.config else {}
    merged = merge_overrides(base, overrides_from(args))
    if "root" not in merged and (env_root := default_root()) is not None:  # $CERTMODEL_ROOT
        merged["root"] = str(env_root)
    return parse_config(merged)


def cmd_train(args: argparse.Namespace) -> int:
    from certmodel.runtime.training.result import failure_message, write_termination_message

    try:
        return _run(args)
    except CertmodelError as exc:
        write_termination_message(failure_message(str(exc)))
        raise
    except Exception as exc:
        full = no_space_error(exc)  # the Job's message says what to do, as main() prints it
        write_termination_message(failure_message(str(full or f"{type(exc).__name__}: {exc}")))
        raise


def _run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if args.dry_run:
        return _dry_run(config, as_json=args.json)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
    from certmodel.runtime.training.progress import reporter_for
    from certmodel.runtime.training.result import termination_message, write_termination_message
    from certmodel.runtime.training.trainer import train

    result = train(config, callback=reporter_for(config.progress))
    if os.environ.get("RANK", "0") != "0":
        return int(ExitCode.OK)  # under torchrun, rank 0 speaks for the run
    write_termination_message(termination_message(result))
    if args.json:
        print(result.to_json(indent=2))
    else:
        _print_summary(result)
    return int(ExitCode.OK)


def _dry_run(config: Any, *, as_json: bool) -> int:
    from certmodel.runtime.training.plan import plan_training

    plan = plan_training(config)
    exists = plan.store.exists(plan.dna)
    if as_json:
        print_json(
            {"dna": plan.dna, "exists": exists, "recipe": plan.recipe.model_dump(mode="json")}
        )
    else:
        print(f"{plan.dna}  ({'exists' if exists else 'would train'})")
    return int(ExitCode.OK)


def _print_summary(result: Any) -> None:
    verb = "trained" if result.status == "trained" else "already exists:"
    lines = [
        f"{verb} {result.dna} ({result.kind})",
        f"  path    {result.path}",
        f"  digest  {result.content_digest}",
    ]
    for key in ("train_loss", "eval_loss", "steps", "tokens", "duration_s"):
        if (value := result.metrics.get(key)) is not None:
            lines.append(
                f"  {key:<7} {value:.4f}" if isinstance(value, float) else f"  {key:<7} {value}"
            )
    sys.stdout.write("\n".join(lines) + "\n")
