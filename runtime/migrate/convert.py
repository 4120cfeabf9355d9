"""Converting a legacy pickle adapter (``adapter_model.bin``) into safetensors.

Only on ``--allow-pickle``. Unpickling can run arbitrary code; ``torch.load(weights_only=True)``
restricts the unpickler to tensors and plain containers, which closes the known code-execution
paths but is still a parser of untrusted input -- so only files the user trusts should be
converted, and the CLI says so. After writing, the safetensors file is read back and compared
tensor by tensor with what was unpickled: the version holds the same numbers or nothing.
Torch is imported here only, inside the function, so that the rest of the migration is torch-free.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import RefusedError


def convert_pickle_adapter(source: Path, dest: Path) -> int:
    """Write the tensors of the pickle ``source`` to the safetensors ``dest``; return how many.

    Raises :class:`RefusedError` naming ``source`` when it is not a flat mapping of tensors or
    cannot be loaded with ``weights_only=True``.
    """
    try:
        import torch
        from safetensors.torch import load_file, save_file
    except ImportError:
        raise RefusedError(
            f"{source}: converting a pickle adapter needs torch and safetensors"
            " (the runtime image has them)"
        ) from None
    state = _load(torch, source)
    tensors = {name: value.detach().clone().contiguous() for name, value in state.items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest), metadata={"format": "pt"})
    written = load_file(str(dest))
    if written.keys() != tensors.keys() or not all(
        torch.equal(written[name], tensors[name]) for name in tensors
    ):
        dest.unlink(missing_ok=True)
        raise RefusedError(f"{source}: converted tensors differ from the pickle's; not migrated")
    return len(tensors)


def _load(torch: Any, source: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # protocol notes are noise next to our own report
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(str(source), map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling refusal, a corrupt file: say which, do not crash
        raise RefusedError(
            f"{source}: not loadable with torch.load(weights_only=True) ({_first_line(exc)})"
        ) from None
    if not isinstance(state, dict) or not state:
        raise RefusedError(f"{source}: not a mapping of tensor names to tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise RefusedError(f"{source}: entry {name!r} is not a named tensor")
    return state


def _first_line(exc: BaseException) -> str:
    """The informative line of torch's multi-paragraph refusal (which global was refused)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines:
        if (at := line.find("Unsupported")) >= 0:  # "Unsupported global: GLOBAL print was ..."
            return line[at:].split(". ")[0][:300]
    return lines[0][:300] if lines else type(exc).__name__
