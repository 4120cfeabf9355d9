"""Loading certified versions into torch: base models once, adapters beside them, merged models
on their own.

Only safetensors and JSON are read (``use_safetensors=True``; a verified version holds nothing
else), never with ``trust_remote_code``, never from the network (the CLI sets
``HF_HUB_OFFLINE``). The tokenizer always comes from the version's own ``tokenizer/`` folder.

Sharing: every adapter version built on the same base (same content digest) lives as one named
adapter in one :class:`ModelSlot` -- one ``PeftModel`` wrapping one copy of the base weights.
A merged version, or an adapter on another base, gets a slot of its own beside the others.
Mutating a slot that is serving (adding or deleting an adapter) runs on the engine's worker
thread, between two requests (see engine.py); building a new slot does not need to.
"""

from __future__ import annotations

import gc
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.targets import check_base

log = logging.getLogger(__name__)
RunOnWorker = Callable[[Callable[[], None]], None]
WarmUp = Callable[["VersionModel"], object]


@dataclass(eq=False)
class ModelSlot:
    """One torch model object; for a base model, the ``PeftModel`` holding its adapters."""

    key: str
    model: Any
    adapters: set[str] = field(default_factory=set)
    active_adapter: str | None = None


@dataclass(eq=False)
class VersionModel:
    """What the engine needs to run one version: its slot, adapter name and tokenizer."""

    dna: str
    slot: ModelSlot
    adapter: str | None
    tokenizer: Any
    device: Any
    max_positions: int

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def activate(self) -> Any:
        """The model to call, with this version's adapter active. Worker thread only."""
        slot = self.slot
        if self.adapter is not None and slot.active_adapter != self.adapter:
            slot.model.set_adapter(self.adapter, inference_mode=True)
            slot.active_adapter = self.adapter
        return slot.model


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class ModelLoader:
    """Builds :class:`VersionModel` objects and tears them down; owns the slots.

    Called from the reloader thread only (one load at a time); ``run_on_worker`` executes a
    function on the engine's worker and waits for it, which is how a serving slot is mutated.
    """

    def __init__(self, store: Store, *, device: str = "auto", dtype: str = "auto") -> None:
        self.store = store
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._slots: dict[str, ModelSlot] = {}
        self._lock = threading.Lock()

    def load(self, manifest: Manifest, run_on_worker: RunOnWorker, warm_up: WarmUp) -> VersionModel:
        """Load ``manifest``'s version (already verified) beside whatever is loaded, warmed up.

        Adding an adapter to a serving slot and warming it up run as *one* worker job: two jobs
        would let a request slip in between and double the pause. A new slot is private until
        registered, so it loads and warms up on the caller's thread while requests keep flowing.
        """
        version_dir = self.store.version_path(manifest.dna)
        tokenizer = load_tokenizer(version_dir / "tokenizer")
        name = manifest.dna
        if manifest.kind == "merged":
            slot = ModelSlot(key=f"merged:{name}", model=self._causal_lm(version_dir / "model"))
            version = self._version(name, slot, None, tokenizer)
            warm_up(version)
        else:
            key = f"base:{manifest.base_model.digest}"
            with self._lock:
                shared = self._slots.get(key)
            if shared is not None:
                version = self._version(name, shared, name, tokenizer)
                run_on_worker(
                    partial(self._add_and_warm, version, version_dir / "adapter", warm_up)
                )
            else:
                slot = self._new_base_slot(manifest, key, version_dir / "adapter")
                version = self._version(name, slot, name, tokenizer)
                warm_up(version)
        with self._lock:
            self._slots[version.slot.key] = version.slot
        return version

    def unload(self, version: VersionModel) -> None:
        """Free a version. Worker thread only: it may mutate a slot that is serving."""
        slot = version.slot
        if version.adapter is not None:
            slot.adapters.discard(version.adapter)
            if slot.adapters:
                slot.model.delete_adapter(version.adapter)
                slot.active_adapter = None
                return
        with self._lock:
            self._slots.pop(slot.key, None)
        slot.model = None
        _free_memory(self.device)

    def slot_count(self) -> int:
        with self._lock:
            return len(self._slots)

    def _version(self, dna: str, slot: ModelSlot, adapter: str | None, tok: Any) -> VersionModel:
        positions = int(getattr(slot.model.config, "max_position_embeddings", 0) or 1 << 20)
        return VersionModel(dna, slot, adapter, tok, self.device, positions)

    def _new_base_slot(self, manifest: Manifest, key: str, adapter_dir: Path) -> ModelSlot:
        from peft import PeftModel

        base = self._causal_lm(check_base(self.store, manifest))
        name = manifest.dna
        model = PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=name)
        model.eval()
        return ModelSlot(key=key, model=model, adapters={name}, active_adapter=name)

    def _add_and_warm(self, version: VersionModel, adapter_dir: Path, warm_up: WarmUp) -> None:
        """Worker job: inject the adapter into the shared base, warm it up, undo on failure."""
        slot, name = version.slot, version.dna
        slot.model.load_adapter(str(adapter_dir), adapter_name=name, low_cpu_mem_usage=True)
        slot.model.eval()
        slot.adapters.add(name)
        slot.active_adapter = None  # whatever peft left active, the next request sets its own
        try:
            warm_up(version)
        except BaseException:
            self.unload(version)
            raise

    def _causal_lm(self, path: Path) -> Any:
        from transformers import AutoModelForCausalLM

        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path),
            dtype=self.dtype,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
        )
        return model.to(self.device).eval()


def load_tokenizer(path: Path) -> Any:
    """The version's own tokenizer (fast tokenizers only: a ``tokenizer.json``, no code)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(path), trust_remote_code=False, local_files_only=True
    )
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quiet_library_noise() -> None:
    """Progress bars and a deprecation warning that peft triggers in transformers would flood a
    server's log at every swap. Process-wide: call once, at server start."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
