"""The optimisation loop's parts: batch order, one optimizer step, evaluation.

Batch order is a pure function of (seed, epoch, step), never of iterator state, so a run
resumed at step k feeds exactly the batches an uninterrupted run would have fed from k on.
The loss of an optimizer step is the mean over *all* target tokens of its micro-batches (and
ranks), not a mean of per-batch means: short and long batches weigh what their tokens weigh.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from certmodel.runtime.training.data import IGNORE_INDEX, PackedBlocks
from certmodel.runtime.training.distributed import Runtime, all_sum

SCHEDULER_NAMES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    real_tokens: int
    attention_mask: torch.Tensor | None = None

    @property
    def targets(self) -> int:
        """Tokens that contribute to the loss (labels are shifted by one inside the model)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


class BatchSchedule:
    """Which blocks each micro-batch of each optimizer step holds, for this rank."""

    def __init__(
        self, *, n_blocks: int, batch_size: int, grad_accum: int, seed: int, rank: int, world: int
    ) -> None:
        self.n_blocks = n_blocks
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.seed = seed
        self.rank = rank
        self.world = world
        self.micro_per_epoch = math.ceil(n_blocks / (batch_size * world))
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / grad_accum)
        self._perm_cache: tuple[int, list[int]] | None = None

    def total_steps(self, *, epochs: int, max_steps: int | None) -> int:
        return max_steps if max_steps is not None else epochs * self.steps_per_epoch

    def step_blocks(self, step: int) -> list[list[int]]:
        """Block indices of each micro-batch of optimizer step `step` (0-based) on this rank."""
        epoch, local = divmod(step, self.steps_per_epoch)
        first = local * self.grad_accum
        last = min(first + self.grad_accum, self.micro_per_epoch)
        return [self._micro(epoch, m) for m in range(first, last)]

    def _micro(self, epoch: int, micro: int) -> list[int]:
        perm = self._perm(epoch)
        size = self.batch_size * self.world
        chunk = perm[micro * size : (micro + 1) * size]
        if self.world > 1 and len(chunk) < size:  # every rank needs a batch to stay in step
            chunk = chunk + [perm[i % len(perm)] for i in range(size - len(chunk))]
        return chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def _perm(self, epoch: int) -> list[int]:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            order = list(range(self.n_blocks))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)  # noqa: S311
            self._perm_cache = (epoch, order)
        return self._perm_cache[1]


@dataclass(frozen=True)
class MaskStyle:
    """How the model's attention wants a packed mask (from `config._attn_implementation`)."""

    implementation: str = "sdpa"
    dtype: torch.dtype = torch.float32


def make_batch(
    blocks: PackedBlocks, indices: Sequence[int], device: torch.device, mask: MaskStyle
) -> Batch:
    def tensor(rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor([rows[i] for i in indices], dtype=torch.long, device=device)

    position_ids = tensor(blocks.position_ids)
    return Batch(
        input_ids=tensor(blocks.input_ids),
        labels=tensor(blocks.labels),
        position_ids=position_ids,
        real_tokens=sum(blocks.real[i] for i in indices),
        attention_mask=packed_attention_mask(position_ids, mask),
    )


def packed_attention_mask(position_ids: torch.Tensor, style: MaskStyle) -> torch.Tensor | None:
    """The block-diagonal causal mask of packed blocks: a token sees earlier tokens of its own
    document only (a document starts where the position does not continue by one).

    transformers derives the same mask from position_ids alone, but that path measured 3-7x
    slower on CPU (a mask SDPA cannot run fast); built here once per batch, it costs what an
    ordinary causal mask costs. Flash-attention kernels take position_ids natively instead.
    """
    if style.implementation.startswith("flash"):
        return None
    first = position_ids[:, :1] - 1
    segment = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (segment[:, :, None] == segment[:, None, :]) & causal
    if style.implementation == "sdpa":
        return allowed[:, None]  # boolean: True = may attend
    additive = torch.zeros(allowed.shape, dtype=style.dtype, device=position_ids.device)
    return additive.masked_fill(~allowed, torch.finfo(style.dtype).min)[:, None]


def forward_loss(model: Any, batch: Batch, *, num_items: int) -> torch.Tensor:
    """Summed token loss / `num_items`, with the packed mask and per-document positions."""
    out = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=batch.attention_mask,
        labels=batch.labels,
        num_items_in_batch=num_items,
        use_cache=False,
    )
    loss: torch.Tensor = out.loss
    return loss


def train_step(
    model: Any,
    batches: Sequence[Batch],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    max_grad_norm: float,
    runtime: Runtime,
) -> tuple[float, int]:
    """One optimizer step over `batches`; returns (mean token loss, real tokens, all ranks)."""
    local_targets = sum(b.targets for b in batches)
    global_targets = max(int(all_sum(runtime, local_targets)), 1)
    loss_sum = 0.0
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        sync = nullcontext() if last or not runtime.distributed else model.no_sync()
        with sync:
            loss = forward_loss(model, batch, num_items=global_targets)
            # DDP averages gradients over ranks; undo it so the step sees the global mean.
            (loss * runtime.world).backward()  # type: ignore[no-untyped-call]
        loss_sum += float(loss.detach()) * global_targets
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], max_grad_norm
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    total_loss = all_sum(runtime, loss_sum) / global_targets
    tokens = int(all_sum(runtime, sum(b.real_tokens for b in batches)))
    return total_loss, tokens


@torch.no_grad()
def evaluate(
    model: Any, blocks: PackedBlocks, *, batch_size: int, device: torch.device, mask: MaskStyle
) -> float | None:
    """Mean token loss over the eval blocks (every rank computes it whole: it is small)."""
    if len(blocks) == 0:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        indices = range(start, min(start + batch_size, len(blocks)))
        batch = make_batch(blocks, indices, device, mask)
        if batch.targets == 0:
            continue
        total += float(forward_loss(model, batch, num_items=batch.targets)) * batch.targets
        count += batch.targets
    model.train(was_training)
    return total / count if count else None


def build_optimizer(model: Any, *, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, schedule: str, warmup_steps: int, total_steps: int
) -> Any:
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULER_NAMES[schedule],
        optimizer=optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
    )
