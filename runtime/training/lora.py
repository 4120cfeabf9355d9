"""LoRA target modules: per-architecture defaults and the check that they exist.

The defaults are resolved from the base model's `config.json` (`model_type`) without torch,
because the resolved list reaches the DNA and the operator computes the DNA before any Job runs.
Attention projections only: that is what most LoRA recipes adapt, and it keeps adapters small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import UsageError

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj")

DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "granite": _LLAMA_LIKE,
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "phi3": ("qkv_proj", "o_proj"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
    "falcon": ("query_key_value", "dense"),
    "bloom": ("query_key_value", "dense"),
    "gptj": ("q_proj", "k_proj", "v_proj", "out_proj"),
}


def read_model_type(base_dir: Path) -> str:
    """The `model_type` from a base model folder's config.json."""
    config_path = base_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"base model {base_dir} has no config.json") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {config_path}: {exc}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise UsageError(f"{config_path} has no model_type")
    return model_type


def resolve_targets(requested: Iterable[str] | None, model_type: str) -> tuple[str, ...]:
    """The target list that goes into the DNA: the request, or the architecture default.

    Sorted and deduplicated so that `q,v` and `v,q` are the same recipe.
    """
    if requested is not None:
        targets = tuple(sorted({name.strip() for name in requested if name.strip()}))
        if not targets:
            raise UsageError("lora.target_modules is empty")
        return targets
    default = DEFAULT_TARGETS.get(model_type)
    if default is None:
        known = ", ".join(sorted(DEFAULT_TARGETS))
        raise UsageError(
            f"no default LoRA target modules for model_type {model_type!r} (known: {known}); "
            "pass --target-modules"
        )
    return tuple(sorted(default))


def check_targets(model: Any, targets: Iterable[str]) -> None:
    """Fail with one clear message when a target matches no module of the model.

    PEFT would raise too, but only for "none matched at all", and in its own words; a user who
    typed `q_prj` next to three correct names deserves to hear which one is wrong.
    """
    names = [name for name, _ in model.named_modules()]
    missing = [
        target
        for target in targets
        if not any(name == target or name.endswith("." + target) for name in names)
    ]
    if missing:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in names if "." in name})
        raise UsageError(
            f"LoRA target module(s) {', '.join(missing)} not found in the base model "
            f"(module names include: {', '.join(leaves[:20])})"
        )
