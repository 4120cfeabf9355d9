"""``POST /v1/completions`` and ``/v1/chat/completions``: admit, bind to a version, wait.

Binding rule -- the heart of the hot swap. A request runs entirely on one version:

* a request naming a DNA (``"model": "<dna>"``) is pinned to it at admission;
* any other request is bound to the *live* version when the worker *starts* it, not when it
  was admitted. Requests still queued when the pointer moves therefore run on the new version
  (the swap reaches clients one request sooner per queued request), while the request being
  generated -- in flight -- finishes on the old one. Either way the version is held
  (:meth:`Registry.acquire`) from start to end, so it cannot be unloaded under the request.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from certmodel.runtime.serving.context import ApiError, Context, Response, json_response
from certmodel.runtime.serving.engine import (
    GenerationRequest,
    GenerationResult,
    PromptTooLongError,
    QueueFullError,
    generate_on,
)
from certmodel.runtime.serving.openai import (
    ChatRequest,
    CompletionRequest,
    chat_body,
    completion_body,
)
from certmodel.runtime.serving.registry import LoadedVersion, NotReadyError, UnknownModelError

PATHS = ("/v1/completions", "/v1/chat/completions")
Outcome = tuple[str, GenerationResult]


def handle_post(ctx: Context, path: str, raw: bytes) -> Response:
    if path not in PATHS:
        raise ApiError(HTTPStatus.NOT_FOUND, f"no route POST {path}", "not_found_error")
    chat = path == "/v1/chat/completions"
    request = _parse(raw, ChatRequest if chat else CompletionRequest)
    pinned = _admit(ctx, request.model)
    ctx.admitted(+1)
    ctx.metrics.inflight.inc()
    try:
        future = ctx.engine.submit(_job(ctx, pinned, request))
    except BaseException as exc:
        _finished(ctx, pinned)
        if isinstance(exc, QueueFullError):
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE, str(exc), "server_error", "overloaded"
            ) from None
        raise
    future.add_done_callback(lambda _: _finished(ctx, pinned))
    dna, result = _wait(ctx, future)
    ctx.metrics.prompt_tokens.labels(dna=dna).inc(result.prompt_tokens)
    ctx.metrics.completion_tokens.labels(dna=dna).inc(result.completion_tokens)
    body = (chat_body if chat else completion_body)(dna, result)
    return json_response(200, body, dna=dna)


def _parse(raw: bytes, model: type[CompletionRequest] | type[ChatRequest]) -> Any:
    try:
        request = model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ApiError(
            HTTPStatus.BAD_REQUEST, f"{where}: {first['msg']}{more}", "invalid_request_error"
        ) from None
    if isinstance(request, CompletionRequest) and not request.prompt:
        raise ApiError(HTTPStatus.BAD_REQUEST, "prompt must not be empty", "invalid_request_error")
    return request


def _admit(ctx: Context, model: str | None) -> LoadedVersion | None:
    """The version pinned now (a named DNA), or None to bind to the live one at start."""
    try:
        if model not in (None, "", ctx.served_name):
            return ctx.registry.acquire(model)
        if ctx.registry.live()[0] is None:
            raise NotReadyError("no verified model version is loaded yet")
        return None
    except NotReadyError as exc:
        raise ApiError(
            HTTPStatus.SERVICE_UNAVAILABLE, str(exc), "server_error", "not_ready"
        ) from None
    except UnknownModelError as exc:
        raise ApiError(
            HTTPStatus.NOT_FOUND, str(exc), "invalid_request_error", "model_not_found"
        ) from None


def _job(ctx: Context, pinned: LoadedVersion | None, request: Any) -> Callable[[], Outcome]:
    """The worker's part: bind (if not pinned), build the prompt, generate, unbind."""

    def run() -> Outcome:
        version = pinned or ctx.registry.acquire()
        try:
            return version.dna, generate_on(version.model, _generation(ctx, version, request))
        finally:
            if pinned is None:
                ctx.registry.release(version)

    return run


def _generation(ctx: Context, version: LoadedVersion, request: Any) -> GenerationRequest:
    sizes = {"default_max": ctx.limits.default_max_tokens, "limit": ctx.limits.max_tokens}
    if not isinstance(request, ChatRequest):
        generation: GenerationRequest = request.to_generation(**sizes)
        return generation
    if not version.model.has_chat_template:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"version {version.dna} has no chat template; use /v1/completions",
            "invalid_request_error",
        )
    prompt = version.model.tokenizer.apply_chat_template(
        request.conversation(), tokenize=False, add_generation_prompt=True
    )
    chat_generation: GenerationRequest = request.to_generation(str(prompt), **sizes)
    return chat_generation


def _finished(ctx: Context, pinned: LoadedVersion | None) -> None:
    if pinned is not None:
        ctx.registry.release(pinned)
    ctx.admitted(-1)
    ctx.metrics.inflight.dec()


def _wait(ctx: Context, future: Future[Outcome]) -> Outcome:
    try:
        return future.result(timeout=ctx.limits.request_timeout_s)
    except FutureTimeout:
        future.cancel()
        raise ApiError(HTTPStatus.GATEWAY_TIMEOUT, "generation timed out", "server_error") from None
    except PromptTooLongError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, str(exc), "invalid_request_error") from None
