"""Generation: one worker thread owns every model; requests and model changes queue for it.

Why one worker: peft's active adapter is state of the shared ``PeftModel`` (``set_adapter``
is not thread-safe), and adding or deleting an adapter mutates modules a forward pass is
iterating. With a single thread touching models, a request's whole generation runs with its
own version's adapter set, and a load or an unload happens *between* two requests, never
inside one. Control jobs (load, warm-up, unload) jump the queue so a swap is not delayed by a
backlog of requests. On a CPU or a single GPU this costs no throughput: generations of one
model would contend for the same cores anyway.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from certmodel.runtime.serving.models import VersionModel

log = logging.getLogger(__name__)
T = TypeVar("T")
FinishReason = Literal["stop", "length"]
CONTROL, REQUEST = 0, 1


class QueueFullError(Exception):
    """More requests are waiting than ``max_queue``; the client should retry later."""


class PromptTooLongError(ValueError):
    """Prompt plus ``max_tokens`` exceed what the model can attend to."""


@dataclass(frozen=True)
class GenerationRequest:
    """One or more prompts (already chat-templated), decoded with the same settings."""

    prompts: list[str]
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    echo: bool = False


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: FinishReason
    prompt_index: int


@dataclass(frozen=True)
class GenerationResult:
    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int


class Engine:
    """The worker thread and its priority queue."""

    def __init__(self, *, max_queue: int = 256, threads: int | None = None) -> None:
        self.max_queue = max_queue
        self.threads = threads
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put((REQUEST + 1, next(self._seq), None))  # after everything queued
        self._thread.join(timeout)

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the worker ahead of queued requests (model loads, unloads)."""
        return self._submit(fn, CONTROL)

    def run(self, fn: Callable[[], T]) -> T:
        """:meth:`call` and wait: the reloader mutates serving slots this way."""
        return self.call(fn).result()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue a request's work (it calls :func:`generate_on`); 503 material when full."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise QueueFullError(f"{self._pending} requests waiting; retry later")
        return self._submit(fn, REQUEST)

    def _submit(self, fn: Callable[[], T], priority: int) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread, which reports it
                future.set_exception(exc)

        with self._lock:
            self._pending += 1
        self._queue.put((priority, next(self._seq), job))
        return future

    def _work(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._pending -= 1
            with torch.inference_mode():
                job()


def generate_on(version: VersionModel, request: GenerationRequest) -> GenerationResult:
    """Run ``request`` on ``version``. Worker thread only (activates the version's adapter)."""
    import torch

    model = version.activate()
    tokenizer = version.tokenizer
    if request.seed is not None:
        torch.manual_seed(request.seed)
    choices: list[Choice] = []
    prompt_tokens = completion_tokens = 0
    for index, prompt in enumerate(request.prompts):
        encoded = tokenizer(prompt, return_tensors="pt")
        input_ids = encoded["input_ids"].to(version.device)
        length = int(input_ids.shape[1])
        if length + request.max_tokens > version.max_positions:
            raise PromptTooLongError(
                f"prompt has {length} tokens; with max_tokens {request.max_tokens} that exceeds"
                f" the model's {version.max_positions} positions"
            )
        prompt_tokens += length
        for _ in range(request.n):
            output = model.generate(
                input_ids=input_ids,
                attention_mask=encoded["attention_mask"].to(version.device),
                **_decoding(request, tokenizer),
            )
            new_ids = output[0, length:].tolist()
            completion_tokens += len(new_ids)
            text, reason = _finish(tokenizer, new_ids, request.stop)
            choices.append(Choice((prompt if request.echo else "") + text, reason, index))
    return GenerationResult(choices, prompt_tokens, completion_tokens)


def _decoding(request: GenerationRequest, tokenizer: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": request.max_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if request.temperature > 0:
        kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if request.stop:  # stop early; _finish still cuts the text at the stop string
        kwargs.update(stop_strings=request.stop, tokenizer=tokenizer)
    return kwargs


def _finish(tokenizer: Any, new_ids: list[int], stop: list[str]) -> tuple[str, FinishReason]:
    """Decoded text cut at the first stop string (excluded, as OpenAI does), and why it ended."""
    eos = tokenizer.eos_token_id
    ended = bool(new_ids) and new_ids[-1] == eos
    text = str(tokenizer.decode(new_ids, skip_special_tokens=True))
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if cuts:
        return text[: min(cuts)], "stop"
    return text, "stop" if ended else "length"
