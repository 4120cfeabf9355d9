"""torchrun that keeps the workers' exit code: ``python -m certmodel.runtime.training.launch``.

Plain torchrun exits 1 whenever a worker fails, so a bad-input failure (exit 2) on a multi-GPU
Job would look like a crash and be retried, where the Job's podFailurePolicy fails it at once
on a single GPU. This launcher takes torchrun's arguments unchanged and exits with the
workers' own code: 2 if any worker said bad input, else the first positive code, else 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from certmodel.runtime.errors import ExitCode


def exit_code_of(worker_codes: Iterable[int]) -> int:
    """The launcher's exit code for the failed workers' codes (negative: killed by a signal)."""
    codes = list(worker_codes)
    if int(ExitCode.USAGE) in codes:
        return int(ExitCode.USAGE)
    return next((c for c in codes if c > 0), 1)


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(list(sys.argv[1:] if argv is None else argv))
    except ChildFailedError as exc:
        by_rank = sorted(exc.failures.items())
        return exit_code_of(failure.exitcode for _, failure in by_rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
