"""The typed training configuration: what `certmodel train` flags and the operator's mounted
config file both resolve to.

One model serves three readers: the CLI (flags override a `--config` file), the operator (it
writes the resolved config as JSON into a ConfigMap mounted into the Job, and can compute the
DNA from it without torch), and the trainer. Every field says whether it reaches the DNA; the
rule is simple: anything that changes the trained bytes does (see `plan.py`), anything about
where or how the run is observed does not.

This module is torch-free on purpose: the operator image imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from certmodel.runtime.errors import UsageError

Precision = Literal["auto", "bf16", "fp32"]
Schedule = Literal["constant", "linear", "cosine"]
DataFormat = Literal["auto", "jsonl", "text"]
ProgressMode = Literal["auto", "bar", "json", "none"]
Device = Literal["auto", "cpu", "cuda"]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a mounted config must not silently train defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(_Strict):
    """LoRA method settings. All of them reach the DNA (`method_settings`)."""

    r: int = Field(default=8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(default=16.0, gt=0, description="LoRA scaling numerator (alpha / r).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: tuple[str, ...] | None = Field(
        default=None,
        description="Module name suffixes to adapt; None = the base architecture's default "
        "(resolved before the DNA is computed, so the DNA records the real list).",
    )


class Hyperparameters(_Strict):
    """Optimisation settings. All of them reach the DNA (`hyperparameters`), seed separately."""

    epochs: int = Field(default=1, ge=1, description="Passes over the data (if max_steps unset).")
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps; overrides epochs when set."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1.0)
    schedule: Schedule = Field(default="cosine", description="Learning-rate schedule.")
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, ge=0.0, description="0 disables clipping.")
    batch_size: int = Field(default=8, ge=1, description="Packed sequences per micro-batch.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_seq_len: int = Field(default=512, ge=1, le=131072, description="Packed block length.")
    seed: int = Field(default=42, ge=0, lt=2**32)
    precision: Precision = Field(
        default="auto",
        description="Weights dtype: auto = bf16 on a CUDA device that supports it, else fp32. "
        "The requested value reaches the DNA, the device does not.",
    )
    eval_fraction: float = Field(
        default=0.1, ge=0.0, lt=0.5, description="Share of documents held out for eval loss."
    )


class DataSettings(_Strict):
    """Where the dataset is and how to read it. Path is not in the DNA (its digest is)."""

    path: str = Field(description="JSONL ({text} or {prompt, completion}) or plain text file.")
    format: DataFormat = Field(
        default="auto", description="auto = by suffix: .jsonl/.json -> jsonl, else text."
    )
    text_field: str = Field(default="text", min_length=1)


class TrainConfig(_Strict):
    """A complete, resolved training request (the file the operator mounts into the Job)."""

    root: str = Field(description="Certified directory root (base_models/, certified/, .staging/).")
    base: str = Field(min_length=1, description="Base model: a name under base_models/ or a path.")
    data: DataSettings
    lora: LoraSettings = LoraSettings()
    hyperparameters: Hyperparameters = Hyperparameters()
    merge: bool = Field(default=False, description="Option B: publish a merged full model.")
    checkpoint_every: int = Field(default=50, ge=1, description="Steps between checkpoints.")
    progress: ProgressMode = "auto"
    device: Device = "auto"
    confine_paths: bool = Field(
        default=False,
        description="Refuse a dataset or base model that resolves (through symbolic links)"
        " outside the root: set in the configs the operator writes for training Jobs.",
    )
    signing_key: str | None = Field(
        default=None,
        description="EC private key (PEM) that signs the version at publication"
        " (certified.sig, docs/signing.md). Never part of the recipe or the DNA: a signed and"
        " an unsigned run of one recipe publish the same version.",
    )

    @model_validator(mode="after")
    def _check_warmup(self) -> TrainConfig:
        """A warmup longer than the run is almost always a units mistake; say so early."""
        hp = self.hyperparameters
        if hp.max_steps is not None and hp.warmup_steps > hp.max_steps:
            raise ValueError(f"warmup_steps ({hp.warmup_steps}) exceeds max_steps ({hp.max_steps})")
        return self


def describe_validation_error(exc: ValidationError) -> str:
    """One line a user can act on, e.g. `hyperparameters.max_seq_len: Input should be >= 1`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "config"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid training config: {where}: {first['msg']}{extra}"


def parse_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a config mapping, turning pydantic's report into one `UsageError`."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc)) from None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON (or, when PyYAML is installed, YAML) config file into a plain mapping.

    Returned unvalidated so that CLI flags can be merged on top before validation.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    if path.suffix in {".yaml", ".yml"}:
        loaded = _load_yaml(path, text)
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: a training config must be a mapping")
    return loaded


def _load_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError(f"{path}: YAML configs need PyYAML; use JSON instead") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `base`, skipping None (a flag that was not given)."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        elif isinstance(value, dict):
            merged[key] = merge_overrides({}, value)
        else:
            merged[key] = value
    return merged
