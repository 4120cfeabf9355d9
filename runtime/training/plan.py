"""From a `TrainConfig` to a recipe and its DNA, without torch.

This is the part of training the operator runs too: it must name the Job (and find out that
the version already exists) before anything is scheduled. So it reads only files -- the base
model folder's digest and `config.json`, the dataset's digest -- and never imports torch.

What reaches the recipe (and so the DNA), and why:
- base model content digest (and name, for the DNA's slug); dataset content digest;
- every LoRA setting, with the target modules *resolved* (the architecture default written out,
  so a future change of defaults cannot silently reuse an old DNA);
- every hyperparameter, including `precision` as requested ("auto" stays "auto": the device is
  deliberately not part of the recipe, so a GPU and a CPU run of one recipe share a DNA);
- the resolved dataset format and text field (they decide which tokens are trained);
- `trainer_version`: bumped when the trainer's semantics change (packing, loss weighting);
- seed and kind (adapter / merged).
What does not: the store root, dataset path, checkpoint interval, progress mode, device,
signing key (a signature vouches for a version; it does not change its bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import NotFoundError, UsageError
from certmodel.runtime.format.digest import data_digest
from certmodel.runtime.format.dna import BaseModelRef, Recipe, compute_dna
from certmodel.runtime.format.manifest import BaseModelInfo
from certmodel.runtime.format.store import Store
from certmodel.runtime.training.config import TrainConfig
from certmodel.runtime.training.lora import read_model_type, resolve_targets

TRAINER_VERSION = 1
"""Semantics version of the training loop; part of every recipe."""

REFUSED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided before training starts."""

    config: TrainConfig
    store: Store
    base: BaseModelInfo
    base_dir: Path
    data_path: Path
    data_format: str
    model_type: str
    targets: tuple[str, ...]
    recipe: Recipe
    dna: str


def plan_training(config: TrainConfig) -> TrainingPlan:
    """Resolve the base model and dataset, build the recipe and compute the DNA."""
    store = Store(config.root)
    base_dir = resolve_base_dir(store, config.base)
    check_base_dir(base_dir)
    base = store.base_model_info(base_dir.name)
    data_path = Path(config.data.path)
    if config.confine_paths:
        check_inside(store.root, data_path, what="dataset")
        check_inside(store.root, base_dir, what="base model")
    if not data_path.is_file():
        raise NotFoundError(f"dataset {data_path} not found")
    data_format = resolve_data_format(data_path, config.data.format)
    model_type = read_model_type(base_dir)
    targets = resolve_targets(config.lora.target_modules, model_type)
    recipe = build_recipe(
        config,
        base=base,
        dataset_digest=data_digest(data_path),
        data_format=data_format,
        targets=targets,
    )
    return TrainingPlan(
        config=config,
        store=store,
        base=base,
        base_dir=base_dir,
        data_path=data_path,
        data_format=data_format,
        model_type=model_type,
        targets=targets,
        recipe=recipe,
        dna=compute_dna(recipe),
    )


def check_inside(root: Path, path: Path, *, what: str) -> None:
    """Refuse ``path`` if it resolves (symbolic links followed) outside ``root``."""
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root):
        raise UsageError(f"{what} {path} resolves outside the models volume {root}; refused")


def resolve_base_dir(store: Store, base: str) -> Path:
    """`base` is a name under base_models/, or a path to a folder there.

    A path elsewhere is refused rather than referenced: an adapter version points at its base
    by a root-relative path, so the base must live in the store (prepare-base copies it in).
    """
    candidate = Path(base)
    if "/" not in base and base not in {".", ".."}:
        return store.base_model_path(base)
    if not candidate.is_dir():
        raise NotFoundError(f"base model folder {candidate} not found")
    resolved = candidate.resolve()
    if resolved.parent != store.base_models_dir.resolve():
        raise UsageError(
            f"base model {candidate} is outside {store.base_models_dir}; copy it in first with "
            f"`certmodel prepare-base --from-dir {candidate} NAME --root {store.root}`"
        )
    return store.base_models_dir / resolved.name


def check_base_dir(base_dir: Path) -> None:
    """A loadable base: config.json, safetensors weights, a fast tokenizer; never pickle."""
    names = [p.name for p in base_dir.iterdir()]
    pickles = [n for n in names if n.endswith(REFUSED_WEIGHTS)]
    if pickles:
        raise UsageError(
            f"base model {base_dir} holds pickle weights ({', '.join(sorted(pickles))}); "
            "only safetensors are loaded"
        )
    for required in ("config.json", "tokenizer.json"):
        if required not in names:
            raise UsageError(f"base model {base_dir} has no {required}")
    if not any(n.endswith(".safetensors") for n in names):
        raise UsageError(f"base model {base_dir} has no .safetensors weights")


def resolve_data_format(path: Path, requested: str) -> str:
    """`auto` by suffix: .jsonl/.json/.ndjson are JSON lines, anything else plain text."""
    if requested != "auto":
        return requested
    return "jsonl" if path.suffix.lower() in {".jsonl", ".json", ".ndjson"} else "text"


def build_recipe(
    config: TrainConfig,
    *,
    base: BaseModelInfo,
    dataset_digest: str,
    data_format: str,
    targets: tuple[str, ...],
) -> Recipe:
    """The recipe: exactly the inputs that change the trained bytes (see module docstring)."""
    hp = config.hyperparameters
    hyperparameters: dict[str, Any] = hp.model_dump(mode="json", exclude={"seed"})
    hyperparameters.update(
        data_format=data_format,
        text_field=config.data.text_field if data_format == "jsonl" else None,
        trainer_version=TRAINER_VERSION,
    )
    method_settings: dict[str, Any] = {
        "r": config.lora.r,
        "alpha": config.lora.alpha,
        "dropout": config.lora.dropout,
        "target_modules": list(targets),
        "bias": "none",
    }
    return Recipe(
        base_model=BaseModelRef(name=base.name, digest=base.digest),
        dataset_digest=dataset_digest,
        method="lora",
        method_settings=method_settings,
        hyperparameters=hyperparameters,
        seed=hp.seed,
        kind="merged" if config.merge else "adapter",
    )
