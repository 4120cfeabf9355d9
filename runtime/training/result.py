"""The result of a training run, as printed on stdout and left in the termination message.

The operator reads the termination message of the Job's pod (Kubernetes keeps at most 4096
bytes of it), so the message is the compact JSON of the result, shedding detail -- extra
metrics first, then everything but the identity of the version -- until it fits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from certmodel.runtime.format.manifest import Manifest

TERMINATION_ENV = "CERTMODEL_TERMINATION_MESSAGE_PATH"
DEFAULT_TERMINATION_PATH = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096
_CORE_METRICS = ("train_loss", "eval_loss", "tokens", "steps", "duration_s")


class TrainResult(BaseModel):
    """What a run produced. `status` is `trained`, or `exists` when the DNA was already there."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["trained", "exists"]
    dna: str
    kind: Literal["adapter", "merged"]
    path: str
    content_digest: str
    base_model: dict[str, str]
    metrics: dict[str, Any]
    resumed_from_step: int | None = None

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        *,
        path: Path,
        status: Literal["trained", "exists"],
        resumed_from_step: int | None = None,
    ) -> TrainResult:
        return cls(
            status=status,
            dna=manifest.dna,
            kind=manifest.kind,
            path=str(path),
            content_digest=manifest.content_digest,
            base_model=manifest.base_model.model_dump(mode="json"),
            metrics=manifest.metrics.model_dump(mode="json", exclude_none=True),
            resumed_from_step=resumed_from_step,
        )

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent, sort_keys=True)


def termination_message(result: TrainResult, *, limit: int = TERMINATION_LIMIT) -> str:
    """Compact JSON under `limit` bytes (the kubelet truncates longer messages)."""
    data = result.model_dump(mode="json")
    candidates = [
        data,
        {**data, "metrics": {k: v for k, v in data["metrics"].items() if k in _CORE_METRICS}},
        {k: data[k] for k in ("status", "dna", "kind", "content_digest")},
    ]
    for candidate in candidates:
        text = json.dumps(candidate, sort_keys=True, separators=(",", ":"))
        if len(text.encode("utf-8")) <= limit:
            return text
    return text[:limit]  # only reachable with an absurd limit; never exceed it


def termination_path() -> Path | None:
    """Where to write the message: `$CERTMODEL_TERMINATION_MESSAGE_PATH`, else
    /dev/termination-log but only inside a pod (a root shell on a laptop can write /dev too,
    and should not find a stray file there)."""
    explicit = os.environ.get(TERMINATION_ENV)
    if explicit:
        return Path(explicit)
    in_pod = "KUBERNETES_SERVICE_HOST" in os.environ
    parent = DEFAULT_TERMINATION_PATH.parent
    if in_pod and parent.is_dir() and os.access(parent, os.W_OK):
        return DEFAULT_TERMINATION_PATH
    return None


def failure_message(error: str, *, limit: int = TERMINATION_LIMIT) -> str:
    """The message of a failed run: what went wrong, in the words the user would see."""
    text = json.dumps({"status": "failed", "error": error}, separators=(",", ":"))
    while len(text.encode("utf-8")) > limit:
        error = error[: len(error) * 3 // 4] + "..."
        text = json.dumps({"status": "failed", "error": error}, separators=(",", ":"))
    return text


def write_termination_message(message: str) -> Path | None:
    """Best effort: a failure to write it must not turn a good run into a failed one."""
    path = termination_path()
    if path is None:
        return None
    try:
        path.write_text(message, encoding="utf-8")
    except OSError:
        return None
    return path
