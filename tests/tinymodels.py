"""Tiny real models for tests: a 2-layer Llama with a byte-level BPE tokenizer, built offline.

Random weights, real architecture: transformers loads it, peft adapts it, the trainer trains
it in seconds on a CPU. Built once per session by the fixtures that need it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SUBJECTS = ["the operator", "a version", "the trainer", "the server", "a pointer", "the store"]
VERBS = ["publishes", "verifies", "trains", "serves", "promotes", "records"]
OBJECTS = ["an adapter", "the manifest", "a digest", "the base model", "a new dna", "metrics"]


def corpus(n: int = 80, *, seed: int = 0) -> list[dict[str, str]]:
    """Short, regular question/answer pairs: easy to learn, so the loss falls in a few steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        subject, verb, obj = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        rows.append(
            {"prompt": f"Q: what does {subject} do?\nA:", "completion": f" {subject} {verb} {obj}."}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tiny_llama(folder: Path) -> Path:
    """Write a tiny Llama (config.json, model.safetensors) and its tokenizer into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([r["prompt"] + r["completion"] for r in corpus(200)], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=0,
        pad_token_id=0,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    for extra in folder.iterdir():  # keep to what a base model may hold
        if extra.suffix not in {".json", ".safetensors"}:
            extra.unlink()
    return folder
