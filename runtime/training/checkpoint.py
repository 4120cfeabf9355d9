"""Checkpoints under `.staging/<dna>/checkpoints/`: how a killed Job resumes, not restarts.

A checkpoint is a folder `step-<n>/` with two files and no pickle:
- `tensors.safetensors`: the trainable (LoRA) weights, every optimizer state tensor and the
  torch RNG states (CPU, and CUDA when present);
- `state.json`: the step, the loop's counters, the optimizer's param groups, the LR
  scheduler's state and the DNA it belongs to.
It is written to a temporary folder, fsynced and renamed into place, so a kill during a save
leaves the previous checkpoint as the latest; older checkpoints are deleted after the rename.
Restoring weights, optimizer, scheduler, RNG and step makes a resumed run follow the same
trajectory as an uninterrupted one (same batches, same dropout masks).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from certmodel.runtime.format.fsutil import fsync_dir, fsync_tree

STATE_FILE = "state.json"
TENSOR_FILE = "tensors.safetensors"
_PREFIX = "step-"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint, ready to be applied to a fresh model/optimizer/scheduler."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


def save_checkpoint(
    directory: Path,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loop_state: dict[str, Any],
    dna: str,
) -> Path:
    """Write checkpoint `step` atomically and drop the older ones."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{_PREFIX}{step:08d}"
    work = directory / f".tmp-{step:08d}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    tensors, opt_state = _optimizer_split(optimizer)
    tensors.update({f"model.{k}": v for k, v in trainable_state(model).items()})
    tensors.update(_rng_tensors())
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, work / TENSOR_FILE)
    state = {
        "dna": dna,
        "step": step,
        "loop": loop_state,
        "optimizer": opt_state,
        "scheduler": scheduler.state_dict(),
    }
    (work / STATE_FILE).write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
    fsync_tree(work)
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    fsync_dir(directory)
    for old in directory.glob(f"{_PREFIX}*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(directory: Path, *, dna: str) -> Checkpoint | None:
    """The newest complete checkpoint for `dna`, or None when there is none to resume."""
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"{_PREFIX}*"), reverse=True):
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            tensors = load_file(path / TENSOR_FILE)
        except (OSError, ValueError):
            continue  # incomplete or damaged: fall back to an older one, else start over
        if state.get("dna") == dna:
            return Checkpoint(path=path, step=int(state["step"]), tensors=tensors, state=state)
    return None


def restore(
    checkpoint: Checkpoint,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> dict[str, Any]:
    """Apply a checkpoint in place; returns the loop state saved with it."""
    tensors = checkpoint.tensors
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if key.startswith("model."):
                params[key.removeprefix("model.")].copy_(value)
    optimizer.load_state_dict(_optimizer_join(tensors, checkpoint.state["optimizer"]))
    scheduler.load_state_dict(checkpoint.state["scheduler"])
    _set_rng(tensors)
    loop: dict[str, Any] = checkpoint.state["loop"]
    return loop


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (the LoRA matrices), by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """Optimizer state as (tensors for safetensors, JSON-able rest)."""
    full = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in full["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": full["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in saved["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    return tensors


def _set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
