"""Dataset loading, validation, tokenisation and sequence packing.

Why packing: padding every example to the longest one in its batch spends compute on tokens
that teach nothing (short Q&A lines waste most of a batch). Packing concatenates documents into
fixed-length blocks; `position_ids` restart at every document start, which makes transformers
build a block-diagonal causal mask, so a document never attends to its neighbour. The first
token of each document is not a training target (its predecessor belongs to another document).

Torch-free: blocks are plain lists; the trainer turns them into tensors.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import NotFoundError, UsageError

IGNORE_INDEX = -100
"""Label value that cross-entropy skips (prompt tokens, document starts, padding)."""


@dataclass(frozen=True)
class Document:
    """One training example: `prompt` is context only, `text` is what the model learns."""

    text: str
    prompt: str = ""


@dataclass(frozen=True)
class TokenizedDoc:
    ids: list[int]
    labels: list[int]


@dataclass
class PackedBlocks:
    """Fixed-length blocks ready for batching; `real` counts non-padding tokens per block."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    position_ids: list[list[int]] = field(default_factory=list)
    real: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def real_tokens(self) -> int:
        return sum(self.real)


def load_documents(path: Path, *, fmt: str = "auto", text_field: str = "text") -> list[Document]:
    """Read and validate a dataset file; every problem names the file (and line for JSONL)."""
    if not path.is_file():
        raise NotFoundError(f"dataset {path} not found")
    if fmt == "auto":
        fmt = "jsonl" if path.suffix.lower() in {".jsonl", ".json", ".ndjson"} else "text"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    docs = _parse_jsonl(path, text, text_field) if fmt == "jsonl" else _parse_text(text)
    if not docs:
        raise UsageError(f"{path}: dataset is empty (no documents)")
    return docs


def _parse_jsonl(path: Path, text: str, text_field: str) -> list[Document]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            docs.append(_parse_record(path, lineno, line, text_field))
    return docs


def _parse_record(path: Path, lineno: int, line: str, text_field: str) -> Document:
    where = f"{path}:{lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(record).__name__}")
    value = record.get(text_field)
    if isinstance(value, str):
        if not value.strip():
            raise UsageError(f"{where}: field {text_field!r} is empty")
        return Document(text=value)
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            raise UsageError(f"{where}: field 'completion' is empty")
        return Document(text=completion, prompt=prompt)
    raise UsageError(
        f"{where}: expected a string field {text_field!r}, or string fields 'prompt' and "
        "'completion'"
    )


def _parse_text(text: str) -> list[Document]:
    """Plain text: documents are separated by blank lines."""
    return [Document(text=chunk.strip()) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


def split_documents(
    docs: Sequence[Document], *, eval_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Deterministic train/eval split (same seed, same split; the split is part of the recipe).

    At least one eval document when a fraction is asked for and there are two or more
    documents, so a tiny dataset still reports an eval loss.
    """
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)  # noqa: S311 -- reproducible, not secret
    n_eval = int(len(docs) * eval_fraction)
    if eval_fraction > 0 and n_eval == 0 and len(docs) >= 2:
        n_eval = 1
    eval_docs = [docs[i] for i in order[:n_eval]]
    train_docs = [docs[i] for i in order[n_eval:]]
    return train_docs, eval_docs


def tokenize_documents(docs: Sequence[Document], tokenizer: Any) -> list[TokenizedDoc]:
    """Tokenise in batches; prompts get the tokenizer's special prefix, completions an EOS.

    The EOS at the end teaches the model to stop; prompt tokens are context, not targets.
    """
    if not docs:
        return []  # tokenizers reject an empty batch (e.g. no eval split)
    eos = tokenizer.eos_token_id
    heads = [doc.prompt if doc.prompt else doc.text for doc in docs]
    head_ids = tokenizer(heads)["input_ids"]
    tails = [doc.text for doc in docs if doc.prompt]
    tail_ids = iter(tokenizer(tails, add_special_tokens=False)["input_ids"] if tails else [])
    out = []
    for doc, head in zip(docs, head_ids, strict=True):
        ids = list(head)
        labels = [IGNORE_INDEX] * len(ids) if doc.prompt else list(ids)
        if doc.prompt:
            tail = list(next(tail_ids))
            ids += tail
            labels += tail
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
            labels.append(eos)
        if ids:
            out.append(TokenizedDoc(ids=ids, labels=labels))
    return out


def pack(docs: Sequence[TokenizedDoc], *, seq_len: int, pad_id: int) -> PackedBlocks:
    """Concatenate documents into blocks of exactly `seq_len` tokens.

    A document longer than the room left continues in the next block (positions restart
    there: each block is self-contained). Only the very last block is padded; its padding is a
    separate position segment with ignored labels, so it affects neither loss nor attention.
    """
    if seq_len < 1:
        raise UsageError("max_seq_len must be at least 1")
    blocks = PackedBlocks()
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for doc in docs:
        doc_labels = [IGNORE_INDEX, *doc.labels[1:]]
        start = 0
        while start < len(doc.ids):
            piece = doc.ids[start : start + seq_len - len(ids)]
            ids += piece
            labels += doc_labels[start : start + len(piece)]
            positions += range(len(piece))
            start += len(piece)
            if len(ids) == seq_len:
                _flush(blocks, ids, labels, positions, real=seq_len)
                ids, labels, positions = [], [], []
    if ids:
        real = len(ids)
        pad = seq_len - real
        _flush(
            blocks,
            ids + [pad_id] * pad,
            labels + [IGNORE_INDEX] * pad,
            positions + list(range(pad)),
            real=real,
        )
    return blocks


def _flush(
    blocks: PackedBlocks, ids: list[int], labels: list[int], positions: list[int], *, real: int
) -> None:
    blocks.input_ids.append(ids)
    blocks.labels.append(labels)
    blocks.position_ids.append(positions)
    blocks.real.append(real)


def prepare_blocks(
    docs: Sequence[Document], tokenizer: Any, *, seq_len: int, seed: int
) -> PackedBlocks:
    """Tokenise and pack, documents in a seeded order (so blocks mix sources, reproducibly)."""
    order = list(docs)
    random.Random(seed + 1).shuffle(order)  # noqa: S311 -- reproducible, not secret
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return pack(tokenize_documents(order, tokenizer), seq_len=seq_len, pad_id=pad_id)
