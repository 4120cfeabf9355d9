"""`train(config)`: plan -> dedupe -> prepare data -> train (resuming) -> export -> publish.

The order matters for the guarantees:
- the DNA is computed first, from files only, and an existing version ends the run at once
  (exit 0, nothing trained): the same recipe is never trained twice;
- every input is validated (dataset, tokenizer, target modules) before anything is written,
  so a bad input leaves no trace; nothing reaches `certified/` except through the store's
  atomic publication;
- checkpoints live in `.staging/<dna>/checkpoints/`, a folder named by the DNA, so a retried
  Job of the same recipe finds them and resumes where the killed one left off.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from certmodel.runtime import faults
from certmodel.runtime.errors import UsageError
from certmodel.runtime.training import distributed
from certmodel.runtime.training.checkpoint import load_latest, restore, save_checkpoint
from certmodel.runtime.training.config import TrainConfig
from certmodel.runtime.training.data import (
    PackedBlocks,
    load_documents,
    prepare_blocks,
    split_documents,
)
from certmodel.runtime.training.distributed import Runtime
from certmodel.runtime.training.loop import (
    BatchSchedule,
    MaskStyle,
    build_optimizer,
    build_scheduler,
    evaluate,
    make_batch,
    train_step,
)
from certmodel.runtime.training.lora import check_targets
from certmodel.runtime.training.merge import copy_tokenizer, export_adapter, export_merged
from certmodel.runtime.training.plan import TrainingPlan, plan_training
from certmodel.runtime.training.progress import (
    PROGRESS_FILE,
    ProgressCallback,
    ProgressEvent,
    ProgressFile,
    eta_seconds,
    fan_out,
)
from certmodel.runtime.training.result import TrainResult

CHECKPOINT_FAULT = "train.after-checkpoint"
"""Fault point (see runtime/faults.py) right after a checkpoint is saved: the resume tests."""
_LOSS_WINDOW = 10


@dataclass
class LoopState:
    """Counters carried across steps -- and across a kill, inside each checkpoint."""

    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    first_loss: float | None = None
    recent_losses: list[float] = field(default_factory=list)
    eval_loss_before: float | None = None

    def record(self, loss: float, tokens: int) -> None:
        self.step += 1
        self.tokens += tokens
        if self.first_loss is None:
            self.first_loss = loss
        self.recent_losses = [*self.recent_losses, loss][-_LOSS_WINDOW:]

    @property
    def train_loss(self) -> float | None:
        losses = self.recent_losses
        return sum(losses) / len(losses) if losses else None


@dataclass(frozen=True)
class Prepared:
    """The tokenised data of a run."""

    train: PackedBlocks
    eval: PackedBlocks
    documents: tuple[int, int]


def train(config: TrainConfig, *, callback: ProgressCallback | None = None) -> TrainResult:
    """Train the recipe `config` describes, or report the version when it already exists."""
    plan = plan_training(config)
    if plan.store.exists(plan.dna):
        # Checkpoints of a run killed after its publication are of no use any more.
        plan.store.clean_staging(plan.dna)
        return _existing(plan)
    check_signing_key(config.signing_key)  # a bad key must fail now, not after the training
    quiet_libraries()
    runtime = distributed.start(config.device, config.hyperparameters.precision)
    try:
        progress_file = ProgressFile(plan.store.staging_path(plan.dna) / PROGRESS_FILE)
        emit = fan_out(callback, progress_file) if runtime.is_main else fan_out()
        return _train(plan, runtime, emit)
    finally:
        distributed.stop(runtime)


def check_signing_key(path: str | None) -> None:
    """Refuse (as bad input) a signing key that cannot sign -- before anything is trained."""
    if path is not None:
        from certmodel.runtime.format.signing import check_key

        check_key(Path(path), private=True)


def _existing(plan: TrainingPlan) -> TrainResult:
    manifest = plan.store.read_manifest(plan.dna)
    return TrainResult.from_manifest(
        manifest, path=plan.store.version_path(plan.dna), status="exists"
    )


def _train(plan: TrainingPlan, runtime: Runtime, emit: ProgressCallback) -> TrainResult:
    hp = plan.config.hyperparameters
    emit(ProgressEvent("prepare", 0, 0, message=f"dna {plan.dna} on {runtime.device}"))
    data = prepare_data(plan, load_tokenizer(plan))
    torch.manual_seed(hp.seed)  # LoRA init and dropout masks: part of the recipe
    model = load_model(plan, runtime)
    schedule = BatchSchedule(
        n_blocks=len(data.train),
        batch_size=hp.batch_size,
        grad_accum=hp.grad_accum,
        seed=hp.seed,
        rank=runtime.rank,
        world=runtime.world,
    )
    total = schedule.total_steps(epochs=hp.epochs, max_steps=hp.max_steps)
    optimizer = build_optimizer(model, learning_rate=hp.learning_rate, weight_decay=hp.weight_decay)
    run = Run(
        plan=plan,
        runtime=runtime,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(
            optimizer, schedule=hp.schedule, warmup_steps=hp.warmup_steps, total_steps=total
        ),
        data=data,
        schedule=schedule,
        total=total,
        emit=emit,
    )
    resumed = run.resume_or_start()
    run.train_steps()
    emit(ProgressEvent("eval", total, total, message="final eval"))
    eval_loss = run.evaluate(data.eval)
    return run.publish(run.metrics(eval_loss, resumed), resumed)


def quiet_libraries() -> None:
    """Never reach for a model hub, and keep library progress bars out of the Job's log
    (ours are the ones that speak for the run)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_tokenizer(plan: TrainingPlan) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(plan.base_dir), local_files_only=True)


def prepare_data(plan: TrainingPlan, tokenizer: Any) -> Prepared:
    """Read, split, tokenise and pack; an empty training set is a usage error."""
    hp = plan.config.hyperparameters
    docs = load_documents(
        plan.data_path, fmt=plan.data_format, text_field=plan.config.data.text_field
    )
    train_docs, eval_docs = split_documents(docs, eval_fraction=hp.eval_fraction, seed=hp.seed)
    train_blocks = prepare_blocks(train_docs, tokenizer, seq_len=hp.max_seq_len, seed=hp.seed)
    eval_blocks = prepare_blocks(eval_docs, tokenizer, seq_len=hp.max_seq_len, seed=hp.seed)
    if train_blocks.real_tokens == 0:
        raise UsageError(f"{plan.data_path}: no trainable tokens after tokenisation")
    return Prepared(train_blocks, eval_blocks, (len(train_docs), len(eval_docs)))


def load_model(plan: TrainingPlan, runtime: Runtime) -> Any:
    """The base model (safetensors only, no remote code) wrapped with fresh LoRA layers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        str(plan.base_dir),
        dtype=runtime.dtype,
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=False,
    )
    check_targets(base, plan.targets)
    lora = plan.config.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
        lora_dropout=lora.dropout,
        target_modules=list(plan.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, peft_config)
    model.to(runtime.device)
    model.train()
    return model


@dataclass
class Run:
    """One training run's live objects; methods are the phases after setup."""

    plan: TrainingPlan
    runtime: Runtime
    model: Any
    optimizer: Any
    scheduler: Any
    data: Prepared
    schedule: BatchSchedule
    total: int
    emit: ProgressCallback
    state: LoopState = field(default_factory=LoopState)

    @property
    def mask(self) -> MaskStyle:
        implementation = getattr(self.model.config, "_attn_implementation", None) or "sdpa"
        return MaskStyle(implementation=implementation, dtype=self.runtime.dtype)

    def evaluate(self, blocks: PackedBlocks) -> float | None:
        batch_size = self.plan.config.hyperparameters.batch_size
        return evaluate(
            self.model, blocks, batch_size=batch_size, device=self.runtime.device, mask=self.mask
        )

    @property
    def checkpoint_dir(self) -> Path:
        return self.plan.store.staging_path(self.plan.dna) / "checkpoints"

    def resume_or_start(self) -> int | None:
        """Restore the latest checkpoint of this DNA (returns its step), or measure the
        untrained eval loss for the metrics."""
        hp = self.plan.config.hyperparameters
        checkpoint = load_latest(self.checkpoint_dir, dna=self.plan.dna)
        if checkpoint is not None:
            loop = restore(
                checkpoint, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler
            )
            self.state = LoopState(**loop)
            message = f"resumed from checkpoint at step {checkpoint.step}"
            self.emit(ProgressEvent("prepare", checkpoint.step, self.total, message=message))
            return checkpoint.step
        self.state.eval_loss_before = self.evaluate(self.data.eval)
        torch.manual_seed(hp.seed + 1)  # the dropout stream starts here, eval or not
        return None

    def train_steps(self) -> None:
        """Optimizer steps from the current one to the last, checkpointing on the way."""
        hp = self.plan.config.hyperparameters
        model = distributed.wrap(self.model, self.runtime)
        state, mask = self.state, self.mask
        started, start_step, start_tokens = time.monotonic(), state.step, state.tokens
        elapsed_before = state.elapsed_s
        while state.step < self.total:
            batches = [
                make_batch(self.data.train, indices, self.runtime.device, mask)
                for indices in self.schedule.step_blocks(state.step)
            ]
            loss, tokens = train_step(
                model,
                batches,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                max_grad_norm=hp.max_grad_norm,
                runtime=self.runtime,
            )
            state.record(loss, tokens)
            run_s = time.monotonic() - started
            state.elapsed_s = elapsed_before + run_s
            self.emit(
                ProgressEvent(
                    "train",
                    state.step,
                    self.total,
                    loss=loss,
                    learning_rate=float(self.scheduler.get_last_lr()[0]),
                    tokens_per_s=(state.tokens - start_tokens) / run_s if run_s > 0 else None,
                    eta_s=eta_seconds(
                        done=state.step - start_step, total=self.total - start_step, elapsed_s=run_s
                    ),
                    elapsed_s=state.elapsed_s,
                    tokens=state.tokens,
                )
            )
            if state.step % self.plan.config.checkpoint_every == 0 and state.step < self.total:
                self.checkpoint()

    def checkpoint(self) -> None:
        if self.runtime.is_main:
            save_checkpoint(
                self.checkpoint_dir,
                step=self.state.step,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                loop_state=asdict(self.state),
                dna=self.plan.dna,
            )
            faults.point(CHECKPOINT_FAULT)
        distributed.barrier(self.runtime)

    def metrics(self, eval_loss: float | None, resumed: int | None) -> dict[str, Any]:
        state, runtime = self.state, self.runtime
        return {
            "train_loss": state.train_loss,
            "train_loss_first": state.first_loss,
            "eval_loss": eval_loss,
            "eval_loss_before": state.eval_loss_before,
            "tokens": state.tokens,
            "steps": state.step,
            "duration_s": round(state.elapsed_s, 3),
            "tokens_per_s": round(state.tokens / state.elapsed_s, 1) if state.elapsed_s else None,
            "train_documents": self.data.documents[0],
            "eval_documents": self.data.documents[1],
            "train_blocks": len(self.data.train),
            "device": runtime.device.type,
            "dtype": str(runtime.dtype).removeprefix("torch."),
            "world_size": runtime.world,
            "resumed_from_step": resumed,
        }

    def publish(self, metrics: dict[str, Any], resumed: int | None) -> TrainResult:
        """Rank 0 writes the version under .staging and publishes it atomically."""
        plan, steps = self.plan, metrics["steps"]
        target = plan.store.version_path(plan.dna)
        if not self.runtime.is_main:
            distributed.barrier(self.runtime)
            return _existing(plan)
        self.emit(ProgressEvent("publish", steps, steps, message=str(target)))
        version_dir = plan.store.staging_path(plan.dna) / "version"
        shutil.rmtree(version_dir, ignore_errors=True)
        version_dir.mkdir(parents=True)
        if plan.config.merge:
            export_merged(self.model, version_dir)
        else:
            export_adapter(self.model, version_dir, base_path=plan.base.path)
        copy_tokenizer(plan.base_dir, version_dir)
        key = plan.config.signing_key
        manifest = plan.store.publish(
            recipe=plan.recipe,
            base_model=plan.base,
            source_dir=version_dir,
            metrics=metrics,
            signing_key=Path(key) if key else None,
        )
        self.emit(ProgressEvent("done", steps, steps, message=manifest.dna))
        distributed.barrier(self.runtime)  # the other ranks return once the version exists
        return TrainResult.from_manifest(
            manifest, path=target, status="trained", resumed_from_step=resumed
        )
