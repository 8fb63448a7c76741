"""A time limit on fuzzing one target, so that a hanging target cannot stall a CI job.

:func:`time_limit` arms ``SIGALRM`` (POSIX, main thread) for the given number of seconds; when
it fires, :class:`TimeLimitExceeded` is raised wherever Python code was running, which is the
target's own code or the first Python line after a TensorFlow op returns (``time.sleep`` and
other blocking calls are interrupted). It is a ``BaseException``: neither ``check()``'s handling
of the target's errors nor Hypothesis (which shrinks ``Exception``s) mistakes it for a finding.

It works with a timer already armed, as pytest-timeout's signal method arms one: the shorter
of the two limits applies, ours fires a little before theirs so that the report names the
input, and their handler and remaining time are put back afterwards. Where no ``SIGALRM`` can
be armed (Windows, a thread other than the main one) there is no limit. A target that ignores
or blocks SIGALRM, or waits in a call that never returns to Python, is not stopped by it: a
watchdog thread ends the process where the block still runs long after the limit.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

__all__ = ["DEFAULT_TIMEOUT_S", "TimeLimitExceeded", "can_limit", "on_process_end",
           "outer_limit", "time_limit"]

#: Seconds one target may fuzz in one dtype before it is stopped. The slowest example item
#: (a Dense layer with PReLU, 100 examples) takes about 5 s on a 2-core CI machine: 300 s leaves
#: a factor 60 for slower machines, bigger layers and more examples, and stops a hang long
#: before a CI job's own limit (GitHub Actions: 6 h).
DEFAULT_TIMEOUT_S = 300.0

#: How much earlier than an outer timer (pytest-timeout) ours fires: long enough for Python to
#: unwind and the report to be written, short against any timeout a user sets.
_OUTER_MARGIN_S = 1.0

#: Where the block still runs this long after the limit (at least, or as long as the limit),
#: SIGALRM has not stopped it: the target ignores or blocks the signal, or waits in a call that
#: never returns to Python. Then the process is ended (as pytest-timeout's thread method
#: does): under pytest the item is reported crashed, and xdist starts a new worker.
_GRACE_S = 10.0

#: After it fires, the limit fires again this often until the block is left: an exception
#: raised where Python discards it (a garbage-collector callback such as Hypothesis' own, a
#: ``__del__``) would otherwise leave a loop that allocates running for ever.
_REPEAT_S = 1.0


#: Called with the watchdog's message before it ends the process (the pytest plugin records it
#: as the running item's reason and rewrites its report): what a killed process leaves is true.
_LAST_WORDS: list[Callable[[str], None]] = []


def on_process_end(callback: Callable[[str], None] | None) -> None:
    """Have ``callback(message)`` called before the watchdog ends the process (one at a
    time: a session's replaces the last; None: none)."""
    _LAST_WORDS[:] = [] if callback is None else [callback]


class TimeLimitExceeded(BaseException):
    """The time limit fired; ``seconds`` is the limit that applied."""

    def __init__(self, seconds: float):
        super().__init__(f"time limit of {seconds:g} s exceeded")
        self.seconds = seconds


def can_limit() -> bool:
    """Whether :func:`time_limit` can stop this thread (SIGALRM, main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None, name: str = "") -> Iterator[float | None]:
    """Raise :class:`TimeLimitExceeded` in this block after ``seconds`` (None or 0: no limit);
    end the process where that has not stopped it :data:`_GRACE_S` later (``name``: what
    ran, for the message).

    Yields the limit that applies (shortened to fit an outer timer), or None when none does.
    """
    if not seconds or not can_limit():
        yield None
        return
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    limit = float(seconds)
    if outer_left > 0:
        limit = min(limit, max(outer_left - _OUTER_MARGIN_S, outer_left / 2))

    inside = [True]  # False once the block is left: a late signal then raises nothing

    def expire(signum: int, frame: object) -> None:
        if inside[0]:
            raise TimeLimitExceeded(limit)

    def end_process() -> None:  # in a thread: the signal did not stop the block
        if inside[0]:
            message = (f"{name or 'the target'} ran {limit + grace:g} s, past its time limit "
                       f"of {limit:g} s, which did not stop it (SIGALRM ignored or blocked, or "
                       "a call that never returns to Python): the process was ended")
            for callback in _LAST_WORDS:  # first: pytest's plugin lifts its capture of fd 2
                try:
                    callback(message)
                except Exception:  # noqa: BLE001 - ending the process matters more
                    pass
            os.write(2, f"\ngradcheck: {message}\n".encode())
            os._exit(1)

    started = time.monotonic()
    grace = max(_GRACE_S, limit)
    watchdog = threading.Timer(limit + grace, end_process)
    watchdog.daemon = True
    signal.signal(signal.SIGALRM, expire)
    try:  # armed inside: a limit that fires at once (1e-9 s) still reaches the disarming
        signal.setitimer(signal.ITIMER_REAL, limit, _REPEAT_S)
        watchdog.start()
        yield limit
    finally:
        inside[0] = False
        watchdog.cancel()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left > 0:  # the outer timer goes on with what it had left
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer_left - (time.monotonic() - started), 1e-3))


def outer_limit(item: Any, seconds: float | None) -> float | None:
    """``seconds`` for a pytest item, made shorter than pytest-timeout's limit where that is
    set for the item and shorter, so that ours fires first and the report names the input.
    pytest-timeout's signal method arms SIGALRM, which :func:`time_limit` also sees and puts
    back; its thread method kills the process, so only a shorter limit of ours helps there.
    The settings are read as pytest-timeout documents them: marker, --timeout,
    PYTEST_TIMEOUT, ini ``timeout``."""
    if not item.config.pluginmanager.hasplugin("timeout"):
        return seconds
    marker = item.get_closest_marker("timeout")
    theirs: Any = None
    if marker is not None:
        theirs = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
    if theirs is None:
        theirs = item.config.getoption("timeout", None) or os.environ.get("PYTEST_TIMEOUT")
    if theirs is None:
        try:
            theirs = item.config.getini("timeout") or None
        except ValueError:
            theirs = None
    try:
        theirs = float(theirs) if theirs is not None else 0.0
    except (TypeError, ValueError):
        return seconds
    if theirs <= 0:
        return seconds
    margin = max(1.0, 0.05 * theirs)  # room to unwind and write the report first
    ours = max(theirs - margin, theirs / 2)
    return ours if not seconds else min(seconds, ours)
