"""Training throughput: certmodel's trainer against a plain transformers `Trainer` + peft.

Both train the same LoRA (same rank, alpha, dropout, target modules, learning rate, precision)
on the same base model and dataset for the same number of optimizer steps, each in a fresh
subprocess (so peak RSS is its own). The measure is *useful* tokens per second: non-padding
tokens the model trained on, divided by the time from the end of the first optimizer step to
the end of the last (model loading, one-time warm-up and evaluation excluded on both sides).

The baseline is the usual recipe: one example per row, tokenised and truncated to the sequence
length, padded per batch to its longest row (DataCollatorForLanguageModeling). To compare like
with like, the baseline runs twice by default: with as many useful tokens per step as ours on
average (`auto`), and with as many rows as ours has blocks (`8`, what a user would type);
ours packs whole blocks of `--seq-len` tokens with no padding.

    python benchmarks/bench_training.py                       # tiny random Llama, seconds
    python benchmarks/bench_training.py --model ROOT/base_models/smollm2-135m --steps 6

It prints a markdown section (the table and the command that produced it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "examples" / "data" / "certmodel_qa.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def main() -> int:
    args = parse_args()
    if args.worker:
        result = run_ours(args) if args.worker == "ours" else run_baseline(args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        model = Path(args.model) if args.model else build_tiny_model(Path(tmp), Path(args.data))
        batches = [
            auto_baseline_batch(args, model) if b == "auto" else int(b)
            for b in args.baseline_batch.split(",")
        ]
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {("ours", args.batch_size): []}
        runs.update({("baseline", b): [] for b in batches})
        for _ in range(args.repeats):  # interleaved, so all see the same machine weather
            for (name, batch), found in runs.items():
                found.append(run_worker(name, args, model, batch))
        results = {key: max(r, key=lambda x: x["tokens_per_s"]) for key, r in runs.items()}
    print(render(args, model, results))
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="base model folder (safetensors); default: a tiny Llama")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8, help="our packed blocks per step")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument(
        "--baseline-batch",
        default="auto,8",
        help="comma-separated rows per baseline step; auto = the useful tokens of our step",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per trainer; the best counts")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per worker; 1 keeps timings stable on a shared machine",
    )
    p.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    return p.parse_args()


def run_worker(name: str, args: argparse.Namespace, model: Path, batch: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--model-dir",
        str(model),
        "--data",
        args.data,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--seq-len",
        str(args.seq_len),
        "--baseline-batch",
        str(batch),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(args.threads),
    }
    out = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from certmodel.runtime.format.store import Store
    from certmodel.runtime.training.base_models import prepare_from_dir
    from certmodel.runtime.training.config import parse_config
    from certmodel.runtime.training.progress import ProgressEvent
    from certmodel.runtime.training.trainer import train

    marks: list[tuple[float, float, int]] = []

    def record(event: ProgressEvent) -> None:
        if event.phase == "train" and event.tokens is not None:
            marks.append((time.monotonic(), time.process_time(), event.tokens))

    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        store = Store(Path(tmp) / "models")
        prepare_from_dir(store, Path(args.model_dir), "bench")
        config = parse_config(
            {
                "root": str(store.root),
                "base": "bench",
                "data": {"path": args.data},
                "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": TARGETS},
                "hyperparameters": {
                    "max_steps": args.steps,
                    "batch_size": args.batch_size,
                    "max_seq_len": args.seq_len,
                    "learning_rate": 2e-4,
                    "precision": "fp32",
                    "eval_fraction": 0.0,
                    "schedule": "linear",
                },
                "progress": "none",
            }
        )
        train(config, callback=record)
    return steady(marks, padding=0)


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = tokenize_rows(tokenizer, Path(args.data), args.seq_len)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    seen = {"real": 0, "padding": 0}

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        """Tokens the model really processes (the data loader may fetch a batch ahead)."""
        mask = kwargs.get("attention_mask")
        if mask is not None and torch.is_grad_enabled():
            seen["real"] += int(mask.sum())
            seen["padding"] += mask.numel() - int(mask.sum())

    model.register_forward_pre_hook(count, with_kwargs=True)
    marks: list[tuple[float, float, int]] = []

    class Marks(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_: Any, **__: Any) -> None:
            marks.append((time.monotonic(), time.process_time(), seen["real"]))

    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            max_steps=args.steps,
            per_device_train_batch_size=int(args.baseline_batch),
            learning_rate=2e-4,
            lr_scheduler_type="linear",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            seed=42,
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
        )
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=rows,
            data_collator=collator,
            callbacks=[Marks()],
        )
        trainer.train()
    padding_share = seen["padding"] / max(seen["real"] + seen["padding"], 1)
    return steady(marks, padding=padding_share)


def steady(marks: list[tuple[float, float, int]], *, padding: float) -> dict[str, Any]:
    """Throughput from the end of step 1 to the end of the last step: one-time setup (first
    batch, optimizer state allocation, library warm-up) is left out on both sides.

    Also per CPU-second of the process: on a shared machine wall time depends on the
    neighbours, CPU time much less (both sides run the same number of threads)."""
    (wall0, cpu0, n0), (wall1, cpu1, n1) = marks[0], marks[-1]
    tokens = n1 - n0
    return {
        "tokens": tokens,
        "seconds": wall1 - wall0,
        "cpu_seconds": cpu1 - cpu0,
        "tokens_per_s": tokens / (wall1 - wall0),
        "tokens_per_cpu_s": tokens / (cpu1 - cpu0),
        "padding": padding,
    }


def tokenize_rows(tokenizer: Any, data: Path, seq_len: int) -> list[dict[str, list[int]]]:
    rows = []
    for line in data.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        text = record.get("text") or record["prompt"] + record["completion"]
        ids = tokenizer(text + (tokenizer.eos_token or ""), truncation=True, max_length=seq_len)
        rows.append({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})
    return rows


def auto_baseline_batch(args: argparse.Namespace, model: Path) -> int:
    """Rows per step carrying, on average, the useful tokens of one packed step of ours."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = tokenize_rows(tokenizer, Path(args.data), args.seq_len)
    mean = sum(len(r["input_ids"]) for r in rows) / len(rows)
    return max(1, round(args.batch_size * args.seq_len / mean))


def build_tiny_model(tmp: Path, data: Path) -> Path:
    """A random 4-layer Llama (hidden 256) with a BPE tokenizer trained on the dataset."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp / "tiny-llama"
    folder.mkdir()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = data.read_text(encoding="utf-8").splitlines()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    special = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=special, pad_token=special)
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        eos_token_id=0,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def render(
    args: argparse.Namespace, model: Path, results: dict[tuple[str, int], dict[str, Any]]
) -> str:
    ours = results[("ours", args.batch_size)]
    name = "tiny random Llama (4 layers, hidden 256)" if not args.model else model.name
    command = "python benchmarks/bench_training.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    lines = [
        "### Training throughput (LoRA, useful tokens per second)",
        "",
        f"Model: {name}; data: `{Path(args.data).name}`; {args.steps} optimizer steps, timed "
        "from the end of step 1 to the end of the last; fp32; "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} torch thread(s)"
        f"{', CUDA' if _cuda() else ''}. "
        f"Best of {args.repeats} interleaved runs each.",
        "",
        "| trainer | batch | useful tokens | padding | seconds | useful tok/s | "
        "useful tok/CPU-s | speed vs ours | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        _row("certmodel (packed)", f"{args.batch_size} x {args.seq_len} packed", ours, ours),
    ]
    for (kind, batch), result in results.items():
        if kind == "baseline":
            label = "transformers Trainer + peft"
            lines.append(_row(label, f"{batch} rows, padded", result, ours))
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def _row(label: str, batch: str, r: dict[str, Any], ours: dict[str, Any]) -> str:
    relative = r["tokens_per_s"] / ours["tokens_per_s"]
    return (
        f"| {label} | {batch} | {r['tokens']:,} | {r['padding']:.0%} | {r['seconds']:.1f} | "
        f"{r['tokens_per_s']:,.0f} | {r['tokens_per_cpu_s']:,.0f} | {relative:.2f}x | "
        f"{r['peak_rss_mib']:,.0f} MiB |"
    )


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    sys.exit(main())
