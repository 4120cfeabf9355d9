"""Training progress: one event type, three sinks.

The trainer emits a `ProgressEvent` after every optimizer step (and at phase changes). Who
listens decides what to do with it: a person at a terminal gets a one-line bar, a Job's log
gets structured JSON lines on stderr (stdout is reserved for the final result), and the
operator side -- or a test -- passes its own callable. JSON lines are rate-limited so that a
long run does not flood the pod log, but the first step of a run (the resumed one after a
restart) and the last step are always written.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

from certmodel.runtime.format.fsutil import atomic_write_bytes

Phase = Literal["prepare", "train", "eval", "publish", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a run stands. `loss` is the mean token loss of the last optimizer step; `tokens`
    counts the non-padding tokens trained so far (a resumed run counts from its checkpoint)."""

    phase: Phase
    step: int
    total: int
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    tokens: int | None = None
    message: str = ""

    def to_json(self) -> str:
        data = {k: _round(v) for k, v in asdict(self).items() if v not in (None, "")}
        return json.dumps({"event": "progress", **data}, sort_keys=True)


ProgressCallback = Callable[[ProgressEvent], None]


def _round(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value


def eta_seconds(*, done: int, total: int, elapsed_s: float) -> float | None:
    """Remaining time at the observed pace; None until there is a pace to extrapolate."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s / done * max(total - done, 0)


class JsonLines:
    """Structured progress for logs: one JSON object per line, at most every `interval_s`."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._last = float("-inf")
        self._trained = False

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        first = event.phase == "train" and not self._trained  # step 1, or the resumed step
        boundary = first or event.phase != "train" or event.step == event.total
        if not boundary and now - self._last < self.interval_s:
            return
        self._trained = self._trained or event.phase == "train"
        self._last = now
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()


class TerminalBar:
    """A single self-overwriting line for people: bar, step, loss, speed, ETA."""

    width = 24

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._open = False

    def __call__(self, event: ProgressEvent) -> None:
        if event.phase != "train":
            self._end_line()
            if event.message:
                self.stream.write(f"{event.phase}: {event.message}\n")
            self.stream.flush()
            return
        self.stream.write("\r" + render_bar(event, width=self.width))
        self._open = True
        if event.step >= event.total:
            self._end_line()
        self.stream.flush()

    def _end_line(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


PROGRESS_FILE = "progress.json"
"""File name of the progress record under `.staging/<dna>/` (the operator reads it)."""


class ProgressFile:
    """The latest event as a small JSON file, replaced atomically at most every `interval_s`.

    Written to `.staging/<dna>/progress.json` on the models volume, where the operator (which
    mounts the volume read-only) reads it into the ModelTraining's status: no API access is
    needed from the training pod, and a reader never sees a half-written file.
    """

    def __init__(self, path: Path, *, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self._last = float("-inf")

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.phase not in ("train", "eval"):
            return  # nothing to show before the first step; after publication, no staging
        final = event.phase == "eval" or event.step == event.total
        if not final and now - self._last < self.interval_s:
            return
        self._last = now
        data = {k: _round(v) for k, v in asdict(event).items() if v not in (None, "")}
        data["updated"] = time.time()
        with contextlib.suppress(OSError):  # best effort: training must not fail for progress
            atomic_write_bytes(self.path, json.dumps(data, sort_keys=True).encode())


def render_bar(event: ProgressEvent, *, width: int = 24) -> str:
    filled = int(width * event.step / event.total) if event.total else width
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {event.step}/{event.total}"]
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    if event.tokens_per_s is not None:
        parts.append(f"{event.tokens_per_s:,.0f} tok/s")
    if event.eta_s is not None:
        parts.append(f"ETA {_clock(event.eta_s)}")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def reporter_for(mode: str, stream: TextIO | None = None) -> ProgressCallback | None:
    """The sink for `--progress`: auto = bar on a terminal, JSON lines otherwise."""
    stream = stream or sys.stderr
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and stream.isatty()):
        return TerminalBar(stream)
    return JsonLines(stream)


def fan_out(*callbacks: ProgressCallback | None) -> ProgressCallback:
    """One callback calling each given one in order (None entries are skipped)."""
    active = [cb for cb in callbacks if cb is not None]

    def emit(event: ProgressEvent) -> None:
        for callback in active:
            callback(event)

    return emit
