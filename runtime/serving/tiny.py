"""Tiny, random, real model lines: a Llama-shaped base model, a tokenizer and LoRA versions.

Built offline in a second, they let the serving tests, the benchmark and demos exercise the
real load → verify → hot-swap path (transformers + peft + safetensors) without downloading
anything. The adapters are initialised with non-zero random weights, so two versions of a line
produce *different* greedy text: that is what lets a test prove that a response came entirely
from one version.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from certmodel.runtime.format.dna import BaseModelRef, Kind, Recipe
from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.store import Store

WORDS = (  # noqa: SIM905 -- a sentence reads better than a column of quoted words
    "the a one two three red blue green cat dog bird sees runs eats big small model version "
    "serves swaps fast slow hello world certified digest adapter base token and or not is"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
_SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]


def build_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over :data:`WORDS` with a chat template, saved in ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    roles = ["<user>", "<assistant>", "<system>"]
    vocab = {tok: i for i, tok in enumerate([*_SPECIALS, *roles, *WORDS])}
    unk, pad, bos, eos = _SPECIALS
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, unk_token=unk, pad_token=pad, bos_token=bos, eos_token=eos
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    _drop_disallowed(folder)


SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
    # SmolLM2-135M's layer stack (~106M parameters in its blocks): realistic load and compute
    # costs for benchmarks, with the tiny vocabulary.
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3},
}  # fmt: skip


def build_base(
    store: Store, name: str = "tiny-llama", *, seed: int = 0, shape: str = "tiny"
) -> Path:
    """A random Llama under ``base_models/<name>/`` with its tokenizer beside it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = store.base_models_dir / name
    if (path / "model.safetensors").is_file():
        return path
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64, max_position_embeddings=256, bos_token_id=2, eos_token_id=3,
        pad_token_id=1, **SHAPES[shape],
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    build_tokenizer(path)
    _drop_disallowed(path)
    return path


def recipe_for(store: Store, base: str, *, seed: int, kind: Kind = "adapter") -> Recipe:
    info = store.base_model_info(base)
    return Recipe(
        base_model=BaseModelRef(name=info.name, digest=info.digest),
        dataset_digest="sha256:" + "0" * 64,
        method_settings={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        hyperparameters={"max_steps": 0, "note": "random weights for tests"},
        seed=seed,
        kind=kind,
    )


def publish_adapter(
    store: Store, base: str = "tiny-llama", *, seed: int, scale: float = 2.0
) -> Manifest:
    """Publish a random LoRA adapter on ``base`` as a certified version (seeded, reproducible)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    recipe = recipe_for(store, base, seed=seed)
    work = _work_dir(store, recipe)
    model = AutoModelForCausalLM.from_pretrained(
        store.base_model_path(base), dtype=torch.float32, use_safetensors=True
    )
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, _lora_config(LoraConfig, init=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(work / "adapter", safe_serialization=True)
    _copy_tokenizer(store.base_model_path(base), work / "tokenizer")
    return _publish(store, recipe, base, work, seed)


def publish_merged(store: Store, base: str = "tiny-llama", *, seed: int) -> Manifest:
    """Publish a merged version: a random adapter on ``base``, merged into full weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    recipe = recipe_for(store, base, seed=seed, kind="merged")
    work = _work_dir(store, recipe)
    model = AutoModelForCausalLM.from_pretrained(
        store.base_model_path(base), dtype=torch.float32, use_safetensors=True
    )
    torch.manual_seed(seed)
    merged = get_peft_model(model, _lora_config(LoraConfig, init=False)).merge_and_unload()
    merged.save_pretrained(work / "model", safe_serialization=True)
    _copy_tokenizer(store.base_model_path(base), work / "tokenizer")
    return _publish(store, recipe, base, work, seed)


def _lora_config(cls: Any, *, init: bool) -> Any:
    return cls(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=init)


def _work_dir(store: Store, recipe: Recipe) -> Path:
    from certmodel.runtime.format.dna import compute_dna

    work = store.staging_path(compute_dna(recipe)) / "version"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _copy_tokenizer(base_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, dest / name)
    for extra in base_dir.glob("chat_template.*"):
        shutil.copy2(extra, dest / extra.name)


def _publish(store: Store, recipe: Recipe, base: str, work: Path, seed: int) -> Manifest:
    _drop_disallowed(work)
    return store.publish(
        recipe=recipe,
        base_model=store.base_model_info(base),
        source_dir=work,
        metrics={"train_loss": 1.0 + seed / 100, "eval_loss": 1.0 + seed / 100},
    )


def _drop_disallowed(folder: Path) -> None:
    """Remove what save_pretrained adds but a version may not hold (README.md model cards)."""
    for path in folder.rglob("*.md"):
        path.unlink()
