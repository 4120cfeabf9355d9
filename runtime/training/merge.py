"""Writing the trained result into the version layout (`adapter/` or `model/`, `tokenizer/`).

Option A (adapter): PEFT's adapter_config.json + adapter_model.safetensors. PEFT also writes a
README.md model card; a version may hold only safetensors/JSON/tokenizer text, so it goes.
The adapter's `base_model_name_or_path` is set to the store-relative base path, not to the
absolute path of the machine that trained it: the same recipe then yields the same bytes on
every machine, and the path means something to a server mounting the same store.

Option B (merged): LoRA folded into the base weights (`merge_and_unload`), saved as a full
model under `model/`. Its outputs equal base+adapter up to floating-point rounding.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
)
"""Tokenizer files copied byte for byte from the base (re-saving could change them)."""

_MODEL_FILES = {".json", ".safetensors"}


def export_adapter(peft_model: Any, version_dir: Path, *, base_path: str) -> Path:
    """Save the LoRA adapter under `version_dir/adapter`."""
    out = version_dir / "adapter"
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base_path
    # save_embedding_layers=False: embeddings are not trained, and "auto" makes PEFT look the
    # base up by name -- on a model hub when the relative path does not resolve locally.
    peft_model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    _keep_only(out, _MODEL_FILES)
    return out


def export_merged(peft_model: Any, version_dir: Path) -> Path:
    """Fold the adapter into the base weights and save the full model under `model/`."""
    out = version_dir / "model"
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    _keep_only(out, _MODEL_FILES)
    return out


def copy_tokenizer(base_dir: Path, version_dir: Path) -> Path:
    """Copy the base model's tokenizer files into `version_dir/tokenizer`."""
    out = version_dir / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        source = base_dir / name
        if source.is_file():
            shutil.copyfile(source, out / name)
    return out


def _keep_only(folder: Path, suffixes: set[str]) -> None:
    """Drop what a library wrote beside the weights that a version may not hold."""
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in suffixes:
            path.unlink()
