"""The multi-GPU launcher keeps the workers' exit code (two real CPU ranks under torchrun)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from certmodel.runtime.format.store import Store
from certmodel.runtime.training.launch import exit_code_of


@pytest.mark.parametrize(
    ("codes", "expected"),
    [([2, -15], 2), ([-15, 2], 2), ([1, -15], 1), ([3], 3), ([-9, -15], 1), ([], 1)],
)
def test_the_launchers_exit_code(codes: list[int], expected: int) -> None:
    assert exit_code_of(codes) == expected


@pytest.mark.torch
@pytest.mark.reliability(
    "faults",
    "a 2-rank torchrun training (CPU, gloo) given bad input (a dataset that is not UTF-8 text)",
    "the launcher exits 2 like the workers (plain torchrun exits 1, which a Job would retry);"
    " nothing published",
)
def test_bad_input_under_torchrun_exits_2_not_1(train_store: Store, tmp_path: Path) -> None:
    data = train_store.root / "datasets" / "bad.jsonl"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(200)))  # gzip bytes named .jsonl
    config = tmp_path / "train.json"
    config.write_text(
        json.dumps(
            {
                "root": str(train_store.root),
                "base": "tiny-llama",
                "data": {"path": str(data)},
                "hyperparameters": {"max_steps": 2, "batch_size": 2, "max_seq_len": 32},
                "progress": "none",
            }
        )
    )
    worker = ["-m", "certmodel.runtime.training", "--config", str(config)]
    launcher = [sys.executable, "-m", "certmodel.runtime.training.launch"]
    rdzv = ["--standalone", "--nproc_per_node=2"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    ours = subprocess.run(
        [*launcher, *rdzv, *worker], capture_output=True, text=True, timeout=240, env=env
    )
    assert ours.returncode == 2, ours.stderr[-3000:]
    assert "UTF-8" in ours.stderr, ours.stderr[-3000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    plain = subprocess.run(
        [str(torchrun), *rdzv, *worker], capture_output=True, text=True, timeout=240, env=env
    )
    assert plain.returncode == 1, plain.stderr[-3000:]  # why the launcher exists
    assert not train_store.certified_dir.exists() or not any(train_store.certified_dir.iterdir())
