"""DNA names: deterministic across machines, different for any change of recipe."""

from __future__ import annotations

import hashlib

import pytest

from certmodel.runtime.format.dna import (
    BaseModelRef,
    Recipe,
    canonical_json,
    compute_dna,
    is_dna,
    slugify,
)

BASE = BaseModelRef(name="SmolLM2_135M", digest="sha256:" + "0" * 64)


def recipe(**changes: object) -> Recipe:
    fields: dict[str, object] = {
        "base_model": BASE,
        "dataset_digest": "sha256:" + "1" * 64,
        "method_settings": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj"]},
        "hyperparameters": {"learning_rate": 2e-4, "max_steps": 100, "batch_size": 4},
        "seed": 42,
    }
    fields.update(changes)
    return Recipe.model_validate(fields)


GOLDEN_CANONICAL = (
    '{"base_model":{"digest":"sha256:' + "0" * 64 + '","name":"SmolLM2_135M"},'
    '"dataset_digest":"sha256:' + "1" * 64 + '","format_version":1,'
    '"hyperparameters":{"batch_size":4,"learning_rate":0.0002,"max_steps":100},'
    '"kind":"adapter","method":"lora",'
    '"method_settings":{"alpha":16,"dropout":0.05,"r":8,"target_modules":["q_proj"]},"seed":42}'
)


def test_golden_dna_is_the_same_on_every_machine() -> None:
    # A fixed recipe must always hash to this name: a change here changes every DNA ever made.
    # The canonical form is spelled out, so the hash is checked against an independent input.
    assert canonical_json(recipe().model_dump(mode="json")).decode() == GOLDEN_CANONICAL
    expected_hex = hashlib.sha256(GOLDEN_CANONICAL.encode()).hexdigest()[:12]
    assert compute_dna(recipe()) == f"smollm2-135m-lora-{expected_hex}"
    assert compute_dna(recipe()) == "smollm2-135m-lora-1c43897a26a9"


def test_dna_does_not_depend_on_key_order() -> None:
    a = recipe(hyperparameters={"learning_rate": 2e-4, "max_steps": 100, "batch_size": 4})
    b = recipe(hyperparameters={"batch_size": 4, "max_steps": 100, "learning_rate": 2e-4})
    assert compute_dna(a) == compute_dna(b)


@pytest.mark.parametrize(
    "change",
    [
        {"base_model": BaseModelRef(name="SmolLM2_135M", digest="sha256:" + "2" * 64)},
        {"base_model": BaseModelRef(name="other", digest="sha256:" + "0" * 64)},
        {"dataset_digest": "sha256:" + "3" * 64},
        {"method_settings": {"r": 16, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj"]}},
        {"hyperparameters": {"learning_rate": 1e-4, "max_steps": 100, "batch_size": 4}},
        {"hyperparameters": {"learning_rate": 2e-4, "max_steps": 101, "batch_size": 4}},
        {"seed": 43},
        {"kind": "merged"},
        {"format_version": 2},
    ],
    ids=["base-digest", "base-name", "dataset", "lora-r", "lr", "steps", "seed", "kind", "format"],
)
def test_any_recipe_change_gives_a_new_dna(change: dict[str, object]) -> None:
    assert compute_dna(recipe(**change)) != compute_dna(recipe())


def test_merged_versions_say_so_in_their_name() -> None:
    dna = compute_dna(recipe(kind="merged"))
    assert dna.startswith("smollm2-135m-lora-merged-")
    assert is_dna(dna)


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == b'{"a":[1.5,"x"],"b":1}'


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"lr": float("nan")})


@pytest.mark.parametrize(
    ("name", "slug"),
    [("SmolLM2_135M", "smollm2-135m"), ("--x--", "x"), ("ÄÖ", "model"), ("a" * 80, "a" * 27)],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_long_base_names_keep_the_dna_within_a_kubernetes_name() -> None:
    long = recipe(
        base_model=BaseModelRef(name="x" * 200, digest="sha256:" + "0" * 64), kind="merged"
    )
    dna = compute_dna(long)
    assert len(dna) <= 52
    assert is_dna(dna)


@pytest.mark.parametrize(
    "value", ["../../etc", "x-lora-abc", "UPPER-lora-0123456789ab", "a/b-lora-0123456789ab", ""]
)
def test_is_dna_rejects_what_is_not_a_dna(value: str) -> None:
    assert not is_dna(value)
