"""Running the user's own code in hone's process (a factory, the reference forward) without
letting it take hone down with it.

A factory the user names is trusted to run (that is the point of naming it), but not to behave:
  - one that forks: the copy returns into hone and would run a second sweep; it ends at once;
  - one that calls sys.exit: an InputError naming the call, not a silent exit with its code;
  - one that never returns: an InputError after `timeout_s` (SIGALRM, in the main thread);
  - one that prints megabytes: the first PASS_THROUGH_BYTES reach the terminal, the rest is
    counted and said in one line, so hone's own output stays readable.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator

from hone.errors import InputError

PASS_THROUGH_BYTES = 64 * 1024


class _Deadline(BaseException):
    """Raised into user code at its timeout (a BaseException: `except Exception` in it cannot swallow it)."""


@contextlib.contextmanager
def user_code(where: str, timeout_s: float | None = None) -> Iterator[None]:
    pid = os.getpid()
    stdout, stderr = _Capped(sys.stdout), _Capped(sys.stderr)
    # sys.stdout is one for all threads: models loaded side by side (hone.search.many, one
    # driver thread each) would restore each other's streams out of order. Capped in the main
    # thread only, as the deadline is.
    main = threading.current_thread() is threading.main_thread()
    capped = (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr)) if main else ()
    try:
        with contextlib.ExitStack() as stack:
            for context in (*capped, _deadline(timeout_s)):
                stack.enter_context(context)
            yield
    except SystemExit as exc:
        raise InputError(f"{where} called sys.exit({exc.code!r})",
                         hint="return the model instead of exiting; hone runs the function, not the file as a script") from None
    except _Deadline:
        raise InputError(f"{where} did not return within {timeout_s:g} s",
                         hint="make it faster, or raise --timeout") from None
    finally:
        if os.getpid() != pid:  # the forked copy of hone: it must not go on to a second sweep
            os._exit(0)
        for capped in (stdout, stderr):
            capped.say_dropped(where)


def _deadline(timeout_s: float | None) -> contextlib.AbstractContextManager:
    if not timeout_s or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return _Alarm(timeout_s)


class _Alarm:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expire(signum, frame):
            raise _Deadline()

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


class _Capped(io.TextIOBase):
    """Passes the first PASS_THROUGH_BYTES the user's code writes through to `target`, then only
    counts. Writes from other threads (hone's progress display refreshing meanwhile) pass
    through untouched: redirect_stdout swaps sys.stdout for every thread."""

    def __init__(self, target) -> None:
        self.target, self.passed, self.dropped = target, 0, 0
        self.owner = threading.get_ident()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if threading.get_ident() != self.owner:
            return self.target.write(text)
        room = PASS_THROUGH_BYTES - self.passed
        shown = text[:max(room, 0)]
        if shown:
            self.target.write(shown)
            self.passed += len(shown)
        self.dropped += len(text) - len(shown)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def say_dropped(self, where: str) -> None:
        if self.dropped:
            self.target.write(f"\n[hone: {where} printed {self.dropped / 1e6:.1f} MB more, not shown]\n")
            self.dropped = 0
