"""Fixtures for the training tests: a tiny real base model, a small dataset, a CLI runner.

The base model (a random 2-layer Llama, hidden 64, with a byte-level BPE tokenizer trained
here on the test corpus) is built once per session; each test copies it into its own store
with `prepare-base --from-dir`, which is itself part of what is tested.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.format.store import Store


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama + tokenizer folder (outside any store), built once per session."""
    import peft  # noqa: F401 -- a missing ML stack must fail loudly, never skip

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-src") / "tiny-llama")


@pytest.fixture
def train_store(tmp_path: Path, tiny_model_dir: Path) -> Store:
    """A store with the tiny model installed as base model `tiny-llama`."""
    from certmodel.runtime.training.base_models import prepare_from_dir

    store = Store(tmp_path / "models")
    prepare_from_dir(store, tiny_model_dir, "tiny-llama")
    return store


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data" / "qa.jsonl", corpus())


CliRunner = Callable[[Sequence[str]], int]


def run_cli(argv: Sequence[str]) -> int:
    """`certmodel` main(), returning the exit code."""
    from certmodel.runtime.cli.main import main

    return main(list(argv))


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CERTMODEL_FAULTS", raising=False)
    return run_cli


@dataclass(frozen=True)
class Trained:
    """One adapter trained with the standard test recipe, shared by a module's tests."""

    store: Store
    data: Path
    result: dict[str, Any]
    progress: list[dict[str, Any]]
    termination: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Trained:
    from certmodel.runtime.training.base_models import prepare_from_dir
    from certmodel.runtime.training.result import TERMINATION_ENV

    tmp = tmp_path_factory.mktemp("trained")
    store = Store(tmp / "models")
    prepare_from_dir(store, tiny_model_dir, "tiny-llama")
    data = write_jsonl(tmp / "data" / "qa.jsonl", corpus())
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TERMINATION_ENV, str(tmp / "termination-log"))
        patch.delenv("CERTMODEL_FAULTS", raising=False)
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        code = run_cli(_train_args(store, data, "--progress", "json"))
    assert code == 0, stderr.getvalue()
    lines = stderr.getvalue().splitlines()
    progress = [json.loads(line) for line in lines if line.startswith('{"')]
    termination = json.loads((tmp / "termination-log").read_text())
    return Trained(store, data, json.loads(stdout.getvalue()), progress, termination)


@pytest.fixture
def train_args() -> Callable[..., list[str]]:
    """`train` CLI arguments for a fast recipe on the tiny model (extra flags appended)."""
    return _train_args


@pytest.fixture
def write_rows() -> Callable[[Path, list[dict[str, str]]], Path]:
    return write_jsonl


@pytest.fixture
def rows() -> Callable[..., list[dict[str, str]]]:
    return corpus


def _train_args(store: Store, data: Path, *extra: str) -> list[str]:
    """A fast recipe on the tiny model: short blocks, a few steps."""
    return [
        "train",
        "--root", str(store.root),
        "--base", "tiny-llama",
        "--data", str(data),
        "--max-seq-len", "64",
        "--batch-size", "4",
        "--max-steps", "12",
        "--learning-rate", "3e-3",
        "--lora-r", "8",
        "--progress", "none",
        "--json",
        *extra,
    ]  # fmt: skip
