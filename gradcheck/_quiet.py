"""Silence what is gradcheck's own noise, not the user's.

Fuzzing calls a target at many input shapes, and the mode check traces it under
``tf.function``; TensorFlow then warns "N out of the last N calls to <function ...> triggered
tf.function retracing", which reads as a problem in the user's code but is caused by the
checking itself. While a check runs (:func:`own_retracing_silenced`), a filter on TensorFlow's
logger drops exactly that warning; outside checks, the user's own retracing warnings show.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["own_retracing_silenced", "RETRACING"]

RETRACING = "triggered tf.function retracing"

_state = threading.local()


class _RetracingDuringChecks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_state, "depth", 0):
            return True
        return RETRACING not in record.getMessage()


_FILTER = _RetracingDuringChecks()


@contextmanager
def own_retracing_silenced() -> Iterator[None]:
    """Drop TensorFlow's retracing warnings raised while the body runs (in this thread)."""
    logger = logging.getLogger("tensorflow")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
