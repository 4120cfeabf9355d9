"""Builders for tests: tiny safetensors files, base models and published versions.

Pure Python (no torch, no numpy), so the format and CLI tests run in the torch-free core.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from certmodel.runtime.format.dna import BaseModelRef, Kind, Recipe
from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.store import Store


def write_safetensors(path: Path, tensors: dict[str, list[float]]) -> None:
    """Write 1-D float32 tensors in the safetensors layout (header length, JSON, data)."""
    header: dict[str, Any] = {}
    data = b""
    for name, values in sorted(tensors.items()):
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {
            "dtype": "F32",
            "shape": [len(values)],
            "data_offsets": [len(data), len(data) + len(blob)],
        }
        data += blob
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def make_base(store: Store, name: str = "tiny-base") -> Path:
    """A fake base model folder under ``base_models/`` (config + weights + tokenizer)."""
    path = store.base_models_dir / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 4}))
    write_safetensors(path / "model.safetensors", {"w": [1.0, 2.0, 3.0, 4.0]})
    (path / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    return path


def make_recipe(
    store: Store,
    *,
    base: str = "tiny-base",
    seed: int = 0,
    kind: Kind = "adapter",
    lr: float = 1e-3,
) -> Recipe:
    info = store.base_model_info(base)
    return Recipe(
        base_model=BaseModelRef(name=info.name, digest=info.digest),
        dataset_digest="sha256:" + "ab" * 32,
        method_settings={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q", "v"]},
        hyperparameters={"learning_rate": lr, "max_steps": 10, "batch_size": 2},
        seed=seed,
        kind=kind,
    )


def write_version_files(folder: Path, *, seed: int = 0) -> None:
    """The files of an adapter version: adapter config + weights, tokenizer."""
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4, "seed": seed}))
    write_safetensors(
        folder / "adapter" / "adapter_model.safetensors",
        {"lora_A": [float(seed), 0.5, 0.25], "lora_B": [0.0, 1.0]},
    )
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer" / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))


def make_version(
    store: Store, *, seed: int = 0, base: str = "tiny-base", eval_loss: float = 1.5
) -> Manifest:
    """Publish a small adapter version (creating its base model if needed)."""
    if not (store.base_models_dir / base).is_dir():
        make_base(store, base)
    recipe = make_recipe(store, base=base, seed=seed)
    from certmodel.runtime.format.dna import compute_dna

    work = store.staging_path(compute_dna(recipe)) / "version"
    write_version_files(work, seed=seed)
    return store.publish(
        recipe=recipe,
        base_model=store.base_model_info(base),
        source_dir=work,
        metrics={"train_loss": eval_loss + 0.1, "eval_loss": eval_loss, "steps": 10},
    )
