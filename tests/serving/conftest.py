"""Fixtures for the serving tests: a tiny real model line, and servers following its CURRENT.

The line is built once per session (a random 2-layer Llama, LoRA adapters with non-zero random
weights, a merged version, an adapter on a second base) and copied per test, because tests
corrupt versions and move the pointer.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving.servekit import Harness, Line

from certmodel.runtime.format.store import Store


@pytest.fixture(scope="session")
def line_template(tmp_path_factory: pytest.TempPathFactory) -> Line:
    import peft  # noqa: F401 -- a missing ML stack must fail loudly, never skip

    from certmodel.runtime.serving import tiny

    root = tmp_path_factory.mktemp("line") / "models"
    root.mkdir()
    store = Store(root)
    with warnings.catch_warnings():  # peft trips a transformers deprecation; not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        tiny.build_base(store, "tiny-llama")
        tiny.build_base(store, "tiny-llama-b", seed=1)
        adapters = [tiny.publish_adapter(store, "tiny-llama", seed=s).dna for s in (1, 2, 3)]
        merged = tiny.publish_merged(store, "tiny-llama", seed=4).dna
        other = tiny.publish_adapter(store, "tiny-llama-b", seed=5).dna
    return Line(root, adapters, merged, other)


@pytest.fixture
def harness(line_template: Line, tmp_path: Path) -> Iterator[Harness]:
    root = tmp_path / "models"
    shutil.copytree(line_template.root, root)
    line = Line(root, line_template.adapters, line_template.merged, line_template.other_base)
    h = Harness(Store(root), line)
    yield h
    for service in h.services:
        service.stop(drain_s=5)
