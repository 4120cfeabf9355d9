"""Recipes and DNA names.

A version's DNA is ``<base-slug>-<method>-<12 hex>``: the hex is the start of a sha256 over the
canonical JSON of its *recipe* -- everything that changes the trained bytes (base-model content
digest, dataset content digest, method settings, hyperparameters, seed, output kind, format
version) and nothing that does not (output folder, device, progress format). The DNA is known
before training, so the same recipe is never trained twice and a Job's name can derive from it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from certmodel.runtime.format import FORMAT_VERSION

Kind = Literal["adapter", "merged"]

DNA_MAX_LEN = 52
"""Longest DNA: leaves room for a ``train-`` prefix and a suffix within a 63-character name."""
HEX_LEN = 12
_BASE_SLUG_MAX = DNA_MAX_LEN - HEX_LEN - len("-lora-merged-")
DNA_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?-[a-z0-9]+(-merged)?-[0-9a-f]{12}$")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


class BaseModelRef(BaseModel):
    """The base model a version was trained on, by name and by content digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Folder name under base_models/.")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="Content digest.")


class Recipe(BaseModel):
    """Everything that determines a version's bytes. Hashed canonically into the DNA."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    base_model: BaseModelRef
    dataset_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    method: str = Field(default="lora", pattern=r"^[a-z0-9]+$")
    method_settings: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    kind: Kind = "adapter"


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` the same way on every machine: sorted keys, no spaces, UTF-8.

    Floats keep Python's shortest round-trip repr, which is platform-independent.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def slugify(name: str, *, max_len: int = _BASE_SLUG_MAX) -> str:
    """DNS-label-safe slug of a base-model name (``SmolLM2_135M`` -> ``smollm2-135m``)."""
    slug = _NON_SLUG.sub("-", name.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "model"


def recipe_hash(recipe: Recipe) -> str:
    """Full sha256 hex of the recipe's canonical JSON."""
    return hashlib.sha256(canonical_json(recipe.model_dump(mode="json"))).hexdigest()


def compute_dna(recipe: Recipe) -> str:
    """The DNA name of a recipe: ``<base-slug>-<method>[-merged]-<12 hex>``."""
    method = recipe.method if recipe.kind == "adapter" else f"{recipe.method}-merged"
    return f"{slugify(recipe.base_model.name)}-{method}-{recipe_hash(recipe)[:HEX_LEN]}"


def is_dna(value: str) -> bool:
    """Whether ``value`` has the shape of a DNA (and so is safe as a path component)."""
    return len(value) <= DNA_MAX_LEN and DNA_PATTERN.match(value) is not None
