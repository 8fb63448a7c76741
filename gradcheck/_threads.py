"""Threads a target leaves running, which would keep the process from ever exiting.

Python waits for every non-daemon thread before a process ends: a target that starts one that
never returns (a polling loop, a server, a queue consumer) lets pytest print its summary and
write its reports, and then the CI job hangs until its own limit, with nothing naming the
cause. :class:`LeftThreads` notes the non-daemon threads each item leaves alive; where some
still run when the session is over, :meth:`LeftThreads.end_process` names them and ends the
process with a failing status instead.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

__all__ = ["LeftThreads"]


class LeftThreads:
    """The non-daemon threads started while :meth:`watching` a named item and alive after it."""

    def __init__(self) -> None:
        self._left: list[tuple[str, threading.Thread]] = []

    @contextmanager
    def watching(self, name: str) -> Iterator[None]:
        """Note the non-daemon threads that the block starts and leaves running."""
        before = set(threading.enumerate())
        try:
            yield
        finally:
            self._left += [(name, thread) for thread in threading.enumerate()
                           if thread not in before and not thread.daemon and thread.is_alive()]

    def still_running(self) -> list[str]:
        """``"thread 'T' started by ITEM"`` for each noted thread that is still alive."""
        return [f"thread {thread.name!r} started by {name}" for name, thread in self._left
                if thread.is_alive()]

    def end_process(self, status: int, before: Callable[[], None] = lambda: None) -> None:
        """Where noted threads still run: call ``before`` (lift output capture), name them on
        standard error and end the process at once, with ``status`` or 1 where that is 0 (the
        run would otherwise have hung: a failure, not a pass). Returns where none run."""
        running = self.still_running()
        if not running:
            return
        before()
        message = (f"\ngradcheck: {'; '.join(running)} still runs after the session: Python "
                   "waits for a non-daemon thread before it exits, so this process would never "
                   "end on its own, and was ended here: stop the thread, or start it with "
                   "daemon=True\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: the message goes to fd 2 anyway
                pass
        os.write(2, message.encode())
        os._exit(status or 1)
