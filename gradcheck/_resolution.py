"""Does the float64 reference resolve its input finer than the checked dtype?

The numerical reference of a float16, bfloat16 or float32 target is its float64 twin: the
same code run in float64, whose finite differences are ~1e-10 accurate at the step
``eps64^(1/3)``. Code that casts to float32 inside (``tf.cast(x, tf.float32)`` to compute a
softplus or an RMS norm "in full precision", the mixed-precision pattern) computes in float32
whatever dtype it is called in: its float64 twin's output moves in float32 steps, and its
differences at float64's step are noise of ``eps32 |F| / h``, a hundred times float64's
bound (a correct softplus read 0.583 against its derivative 0.580 +- 1.6e-6, "a wrong
formula"). Such a twin is a reference of float32's precision: its steps and rounding are
float32's, and a float32 target is its own reference instead, as one that does not run in
float64 is.

The test, once per target object (its function or layer: the code, not the input, decides
it): the twin at the input moved by ``2^-30 |x|`` per entry, half that at every other one
(below float32's ulp, far above float64's; entries at 0 stay; uneven, or a scale-invariant
output such as an RMS norm's stays put in float64 too) gives bitwise the same output, while
the same move times ``2^10`` (above float32's ulp) changes it where float64 would have shown
the smaller move too (the change, scaled down by 2^10, beyond 16 roundings of the output). The
input is first rounded to float32 (a value next to a midpoint would round across it); an
all-zero input, which no relative move moves, is asked at 0.75 everywhere instead (a fuzz
run's first input: a float64 cosine layer computed in float32 inside was judged at float64's
precision there, two float32 ulps read as a wrong gradient). A flat function, or one
whose change under the smaller move hides in float64's rounding anyway (sigmoid at 1e-8),
tells nothing: it keeps its float64 reference, and the next check asks again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _f64
from ._numerics import machine_eps

__all__ = ["finer_than_float32"]

#: Moves below and above float32's relative ulp (2^-23), both far above float64's (2^-52).
_BELOW, _ABOVE = 2.0 ** -30, 2.0 ** -20

#: Where an all-zero input is asked instead (the code, not the input, decides; float32 holds
#: it exactly): a target undefined there gives NaN, which tells nothing, as before.
_STAND_IN = 0.75

# id(owner) -> (owner, resolves): owners are the target's function or layer; bounded like
# the mode traces' cache (a fuzz session builds a layer per feature shape).
_SEEN: OrderedDict[int, tuple[Any, bool]] = OrderedDict()
_SEEN_SIZE = 64


def finer_than_float32(tgt: Any, args: Sequence[tf.Tensor],
                       found: tuple[Any, list, tf.Tensor]) -> bool:
    """Whether the float64 twin ``found`` (``Target.float64_reference``'s ``(twin, weights,
    output)``) computes finer than float32 (module docstring)."""
    owner = tgt.layer if getattr(tgt, "layer", None) is not None else tgt.fn
    seen = _SEEN.get(id(owner))
    if seen is not None and seen[0] is owner:
        return seen[1]
    resolves = _resolves(found[0], args, found[2])
    if resolves is None:  # this input cannot tell: float64's, and asked again next time
        return True
    _SEEN[id(owner)] = (owner, resolves)
    while len(_SEEN) > _SEEN_SIZE:
        _SEEN.popitem(last=False)
    return resolves


def _resolves(ref: Any, args: Sequence[tf.Tensor], y: tf.Tensor) -> bool | None:
    at = next((i for i, a in enumerate(args) if a.dtype.is_floating), None)
    if at is None:
        return True
    wide = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in args]
    x = _f64(args[at])
    # From the input rounded to float32 (where it holds it): a float64 value within 2^-30 of
    # a midpoint between float32 values (one entry in 64) rounds across it under the small
    # move, and the twin's change then "resolved" a move float32 cannot hold.
    with np.errstate(over="ignore"):
        rounded = x.astype(np.float32).astype(np.float64)
    x = np.where(np.isfinite(rounded), rounded, x)
    # Relative (float32 holds a move of 2^-30 next to 0 itself), and half as far at every other
    # entry: a uniform relative move leaves a scale-invariant output (an RMS norm, x / |x|)
    # where it was, in float64 too, and told nothing.
    if not x.any():  # all zeros (a fuzz run's first input): no relative move moves them
        x = np.full(x.shape, _STAND_IN)
    scale = np.abs(x) * (1.0 - 0.5 * (np.arange(x.size) % 2)).reshape(x.shape)
    if not scale.any():
        return None  # no entries: nothing to tell by, ask again

    def moved(by: float) -> np.ndarray | None:
        inputs = list(wide)
        inputs[at] = tf.constant(x + by * scale, tf.float64)
        try:
            return _f64(ref(inputs))
        except Exception:  # noqa: BLE001 - the reference's own failure: keep it, as before
            return None

    y0 = moved(0.0) if not np.array_equal(x, _f64(args[at])) else _f64(y)
    if y0 is None:
        return True
    below = moved(_BELOW)
    if below is None or below.shape != y0.shape or not np.array_equal(below, y0, equal_nan=True):
        return True
    above = moved(_ABOVE)
    if above is None or above.shape != y0.shape:
        return None
    # Unmoved below float32's ulp tells only where float64 would have shown that move: the
    # change above, scaled down to it, beyond float64's rounding of the output (sigmoid at
    # 1e-8 moves by 2e-18 there, under its ulp at 0.5: no evidence either way).
    with np.errstate(invalid="ignore", over="ignore"):
        change = np.abs(above - y0)
        shown = change * (_BELOW / _ABOVE) > 16 * machine_eps("float64") * (
            np.maximum(np.abs(y0), np.finfo(np.float64).tiny))
        # A relative change 2^10 times the relative move (a condition number past the ratio
        # of the two moves) is a step crossed (floor at 2.9999998), not a slope.
        shown &= change <= (_ABOVE / _BELOW) * _ABOVE * np.maximum(np.abs(y0), 1.0)
    return False if (shown & np.isfinite(above)).any() else None
