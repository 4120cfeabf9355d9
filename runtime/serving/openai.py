"""The OpenAI-compatible request and response bodies (``/v1/completions``, chat, models).

Requests are validated by pydantic models that ignore fields we do not implement (clients send
many), but refuse settings we cannot honour rather than silently ignore them: ``stream`` and
``logprobs``. Every response body carries ``dna`` -- the version that produced it -- and
``model`` is that DNA too, the way OpenAI answers with the exact snapshot it used.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from certmodel.runtime.serving.engine import GenerationRequest, GenerationResult

MAX_N = 8


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    logprobs: Any = None

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise ValueError("streaming is not supported; send stream=false")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any) -> Any:
        if value not in (None, False, 0):
            raise ValueError("logprobs are not supported")
        return None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)[:4]


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: bool = False

    def to_generation(self, *, default_max: int, limit: int) -> GenerationRequest:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts:
            raise ValueError("prompt must not be empty")
        return GenerationRequest(
            prompts=prompts,
            max_tokens=min(self.max_tokens or default_max, limit),
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.n,
            stop=self.stops(),
            seed=self.seed,
            echo=self.echo,
        )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] = ""

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def to_generation(self, prompt: str, *, default_max: int, limit: int) -> GenerationRequest:
        wanted = self.max_completion_tokens or self.max_tokens or default_max
        return GenerationRequest(
            prompts=[prompt],
            max_tokens=min(wanted, limit),
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.n,
            stop=self.stops(),
            seed=self.seed,
        )

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


def completion_body(dna: str, result: GenerationResult) -> dict[str, Any]:
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": dna,
        "dna": dna,
        "choices": [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(result.choices)
        ],
        "usage": _usage(result),
    }


def chat_body(dna: str, result: GenerationResult) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": dna,
        "dna": dna,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(result.choices)
        ],
        "usage": _usage(result),
    }


def models_body(served_name: str, live: str | None, loaded: list[str]) -> dict[str, Any]:
    """The served name (always the live version) first, then every loaded DNA."""
    names = ([served_name] if live else []) + loaded
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "owned_by": "certmodel",
                "dna": live if name == served_name else name,
            }
            for name in names
        ],
    }


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _usage(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
