"""Every error hone raises on purpose is a HoneError: the CLI prints it as one line.

The children say whose fault it is, which decides the exit code and the candidate status:
InputError (the user's input, exit 2), MissingDependency and Unsupported (a backend that
cannot run this model here: candidate status `unsupported`), UnsafeModel (a file we refuse
to load without an explicit opt-in), HarnessError (hone's own fault, exit 3: its eager control
failed against its own reference).
"""

from __future__ import annotations


class HoneError(Exception):
    """Base of every error hone raises deliberately. `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(HoneError):
    """Bad input from the user: unknown model, missing file, wrong shapes or dtypes."""

    exit_code = 2


class UnsafeModel(InputError):
    """A model file that would execute code on load (pickle) without --trust-pickle."""


class Unsupported(HoneError):
    """This recipe cannot run on this model or machine; the reason names what is missing."""


class MissingDependency(Unsupported):
    """An optional package is not installed."""

    def __init__(self, package: str, extra: str | None = None, cause: str | None = None):
        install = f"pip install 'hone[{extra}]'" if extra else f"pip install {package}"
        message = f"{package} is not installed" + (f" ({cause})" if cause else "")
        super().__init__(message, hint=install)
        self.package = package
        self.extra = extra


class StoreError(HoneError):
    """The run store cannot be opened or is from an incompatible version."""


class HarnessError(HoneError):
    """hone judged its own control wrong: eager fp32 in a worker disagrees with eager fp32 here.
    Every verdict of that run is suspect, so the run stops and nothing is selected."""

    exit_code = 3


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, CUDA's OutOfMemoryError, or a backend's RuntimeError saying it ran out."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())
