"""User-facing errors and the exit codes that scripts can rely on.

Every error a user can cause (a missing version, a corrupt file, a bad flag) is raised as a
:class:`CertmodelError`; the CLI prints its message as one line and exits with its code.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``certmodel`` CLI (documented in the README)."""

    OK = 0
    FAILED = 1  # the command ran and found a problem (verification failed, training failed)
    USAGE = 2  # bad flags or bad input (argparse uses 2 as well)
    NOT_FOUND = 3  # the named version, base model, file or pointer does not exist
    REFUSED = 4  # the operation was refused to keep a good state (e.g. promote of a bad version)
    CONFLICT = 5  # someone else changed the state concurrently; retrying may succeed


class CertmodelError(Exception):
    """An error a user can act on; ``str(err)`` is the one line the CLI prints."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CertmodelError):
    """Bad input: a flag, a config file, a dataset line."""

    exit_code = ExitCode.USAGE


class NotFoundError(CertmodelError):
    """The named thing does not exist."""

    exit_code = ExitCode.NOT_FOUND


class VerificationError(CertmodelError):
    """A version failed verification (digest, size, missing or unexpected file)."""

    exit_code = ExitCode.FAILED


class RefusedError(CertmodelError):
    """The operation would leave a worse state than the current one, so it was not done."""

    exit_code = ExitCode.REFUSED


class ConflictError(CertmodelError):
    """A concurrent writer won a compare-and-swap; the caller may re-read and retry."""

    exit_code = ExitCode.CONFLICT


class NoSpaceError(CertmodelError):
    """The volume is full (or the user's quota is spent): free space and retry.

    Exit code 1, so a training Job retries (and resumes from its checkpoint) rather than
    failing at once as it does for bad input.
    """

    exit_code = ExitCode.FAILED


_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXTS = (f"os error {errno.ENOSPC})", f"os error {errno.EDQUOT})")  # Rust io::Error


def no_space_error(exc: BaseException) -> NoSpaceError | None:
    """``exc`` (or what caused it) as a :class:`NoSpaceError` when it says the disk is full.

    An ``OSError`` carries the errno; libraries in Rust (safetensors) raise their own type whose
    text ends in ``(os error 28)``. Anything else gives None: it is not a full disk.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the exception, then what caused it
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE_ERRNOS:
            where = f" writing {seen.filename}" if seen.filename else ""
            return NoSpaceError(f"no space left on the device{where}: {_ADVICE}")
        if any(text in str(seen) for text in _NO_SPACE_TEXTS):
            return NoSpaceError(f"no space left on the device ({seen}): {_ADVICE}")
        seen = seen.__cause__ or seen.__context__
    return None


_ADVICE = "free space on the volume (or grow it) and run the command again"
