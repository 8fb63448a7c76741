"""Is an infinite value at an input TensorFlow reads as zero the target's true value there?

TensorFlow's CPU kernels read subnormal inputs as zero (denormals-are-zero), and at zero many
correct functions are infinite: ``log`` (-inf), the derivative of ``sqrt``, ``x ** 0.5`` or
``asinh(x) ** (1/3)``. There an Inf output or gradient behind a finite output is the true value
(the limit toward the point), or that of the zero a subnormal input is read as, and no dtype
can hold it: by the rule every check follows, overflow of the true value is not a bug. A bug
that makes an Inf at zero where the function is finite (a custom gradient ``dy / x`` for a
function smooth at 0) shows in the same test as not diverging.

The test, per entry: the target (in its own dtype) at the input moved by ``h`` toward the
inside of the domain, for ``h = 10^-1, 10^-2, ...`` down to 16 times the dtype's smallest
normal number (3 steps in float16, 8 in the wider dtypes). The output's magnitude (for an
infinite output) or the difference quotient's ``|y(x + h) - y(x)| / h`` (for an infinite
gradient) must grow at every step and by at least a factor 2 over them all: ``log`` grows by
``ln 10`` a step, ``sqrt``'s quotient by ``10^(1/2)``, while a function with a finite limit
converges (``x - x^2``'s quotient 0.9, 0.99, ... grows by 1.1 in all). Only inputs of the
output's shape (one output entry per input entry) are followed, each entry moved alone in the
same call as the others (an elementwise target computes each as a call on it alone would).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _smallest_normal


__all__ = ["diverging_at_zero", "read_as_zero"]

# The growth, over all the steps, that tells divergence from a converging quotient (above).
_GROWTH = 2.0


def read_as_zero(values: np.ndarray, dtype: tf.DType) -> np.ndarray:
    """Where ``values`` of ``dtype`` are zero or subnormal: what TensorFlow reads as zero."""
    return np.abs(values) < _smallest_normal(dtype)


def diverging_at_zero(run: Any, k: int, entries: np.ndarray, gradient: bool) -> np.ndarray:
    """Of ``entries`` (bool, of input param ``k``'s shape, the output's), those read as zero
    where the target diverges toward the input (module docstring): its output, or with
    ``gradient`` its difference quotient. All False where that cannot be followed."""
    p = run.params[k]
    none = np.zeros(np.shape(entries), dtype=bool)
    if p.is_weight or p.value.shape != run.y64.shape:
        return none
    entries = entries & read_as_zero(p.value, p.dtype)
    if not entries.any():
        return none
    tiny = _smallest_normal(p.dtype)
    steps = [10.0 ** -j for j in range(1, 9) if 10.0 ** -j >= 16 * tiny]
    domain = getattr(run, "domain", None)
    for side in (1.0, -1.0):
        if domain is not None and not all(domain[0] <= side * h <= domain[1]
                                          for h in (steps[0], steps[-1])):
            continue
        try:
            sizes = [_size(run, k, entries, side * h, gradient) for h in steps]
        except Exception:  # noqa: BLE001 - the target fails there: not followed
            continue
        sizes = np.stack(sizes)
        if not np.isfinite(sizes[:, entries]).all():
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # entries not followed: NaN
            grows = np.all(np.diff(sizes, axis=0) > 0, axis=0)
            grows &= sizes[-1] >= _GROWTH * sizes[0]
        return entries & grows
    return none


def _size(run: Any, k: int, entries: np.ndarray, h: float, gradient: bool) -> np.ndarray:
    """|y| at the input with ``entries`` moved to ``h`` (``gradient``: |y - y(x)| / |h|)."""
    p = run.params[k]
    moved = np.where(entries, h, p.value)
    args = list(run.args)
    args[p.arg_index] = tf.constant(moved, p.dtype)
    y = _f64(tf.convert_to_tensor(run.tgt(args)))
    if gradient:
        return np.abs(y - run.y64) / abs(h)
    return np.abs(y)
