"""A generated legacy model tree with every odd case a migration must handle.

Pure Python (safetensors written by :func:`factories.write_safetensors`); the pickle adapter is
a placeholder here and made real with ``torch.save`` by the torch test that needs it.

Layout (relative to the legacy root)::

    base_models/tiny-base/          config + weights + tokenizer
    adapters/good-v1/               adapter on tiny-base (tokenizer comes from the base)
    adapters/good-v1-copy/          byte-identical to good-v1 (a duplicate)
    adapters/good-v2/               other weights, own tokenizer, a README and a pickle to ignore
    adapters/orphan/                names a base that is not present
    adapters/truncated/             its safetensors cut short
    adapters/pickled/               only adapter_model.bin (pickle)
    merged/merged-v1/               a merged model folder derived from tiny-base
    CURRENT -> adapters/good-v2     the old pointer (or a broken link)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factories import write_safetensors

BASE = "tiny-base"
TOKENIZER = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}


@dataclass(frozen=True)
class Legacy:
    root: Path

    def __getattr__(self, name: str) -> Path:
        """``legacy.good_v1`` -> ``adapters/good-v1`` and so on."""
        paths = {
            "base": "base_models/tiny-base",
            "good_v1": "adapters/good-v1",
            "good_v1_copy": "adapters/good-v1-copy",
            "good_v2": "adapters/good-v2",
            "orphan": "adapters/orphan",
            "truncated": "adapters/truncated",
            "pickled": "adapters/pickled",
            "merged": "merged/merged-v1",
        }
        if name not in paths:
            raise AttributeError(name)
        return self.root / paths[name]

    @property
    def current(self) -> Path:
        return self.root / "CURRENT"


def adapter_config(base_path: str, r: int = 4) -> dict[str, object]:
    return {
        "peft_type": "LORA",
        "base_model_name_or_path": base_path,
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.05,
        "target_modules": ["v_proj", "q_proj"],
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }


def write_adapter(folder: Path, base_path: str, weights: list[float], *, r: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config(base_path, r)))
    write_safetensors(
        folder / "adapter_model.safetensors",
        {
            "base_model.model.q_proj.lora_A.weight": weights,
            "base_model.model.q_proj.lora_B.weight": [0.0, 1.0],
        },
    )


def write_base(folder: Path, weights: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 4}))
    write_safetensors(folder / "model.safetensors", {"w": list(weights)})
    (folder / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))


def build_legacy(root: Path, *, broken_current: bool = False, pickled: bool = True) -> Legacy:
    """Build the legacy tree under ``root`` (see the module docstring)."""
    legacy = Legacy(root)
    write_base(legacy.base)
    old_base_path = "/srv/oneseek/models/base_models/tiny-base"  # the old machine's path
    write_adapter(legacy.good_v1, old_base_path, [0.5, 0.25, 0.125])
    shutil.copytree(legacy.good_v1, legacy.good_v1_copy)
    write_adapter(legacy.good_v2, "base_models/tiny-base/", [1.5, 1.25, 1.125], r=8)
    (legacy.good_v2 / "tokenizer.json").write_text(json.dumps({**TOKENIZER, "v": 2}))
    (legacy.good_v2 / "README.md").write_text("model card\n")
    (legacy.good_v2 / "training_args.bin").write_bytes(b"\x80\x04not-loaded")
    write_adapter(legacy.orphan, "some-org/missing-base-7b", [9.0, 9.0, 9.0])
    write_adapter(legacy.truncated, old_base_path, [7.0, 7.0, 7.0])
    weights = legacy.truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-6])
    if pickled:
        legacy.pickled.mkdir(parents=True)
        (legacy.pickled / "adapter_config.json").write_text(json.dumps(adapter_config(BASE)))
        (legacy.pickled / "adapter_model.bin").write_bytes(b"\x80\x04placeholder pickle")
    write_merged(legacy.merged)
    os.symlink("adapters/gone" if broken_current else "adapters/good-v2", legacy.current)
    return legacy


def write_merged(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "tiny", "hidden_size": 4, "_name_or_path": "/old/base_models/tiny-base"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 8}))
    write_safetensors(folder / "model.safetensors", {"w": [1.1, 2.1, 3.1, 4.1]})
    (folder / "tokenizer.json").write_text(json.dumps(TOKENIZER))


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (target) under ``root``: to prove nothing changed."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def run_cli(capsys: Any, *argv: str | Path) -> tuple[int, str, str]:
    """Run ``certmodel``; return (exit code, stdout, stderr)."""
    from certmodel.runtime.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
