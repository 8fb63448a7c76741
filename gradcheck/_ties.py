"""A gradient wrong at the input alone, where autodiff meets a tie of kinked pieces.

Smooth functions are written from kinked pieces: the stable softplus ``max(x, 0) +
log1p(exp(-|x|))``, its log-sigmoid, Keras' ``celu`` (``max(x, 0) + min(0, a (exp(x / a) -
1))``). At the tie (x = 0) autodiff gives each piece one side's slope or 0 (a tie in
``tf.maximum`` sends the whole gradient to one argument, ``sign(0)`` is 0): the stable
softplus gets 1 where its derivative is 1/2, celu 2 where it is 1. Right at every other input,
wrong at the tie itself, which training meets only at an exact 0: a kink of the graph, not of
the function, and kinks are not bugs. The core's kink rule does not see it (the function's
second differences show no kink), so here, for the elements the per-element route still
rejects: the target's own gradient a few ulps to either side of the input (the same cotangent)
must pass against the numerical derivative there, and the value at the input must lie
between 0, the two sides' values and their sum, as the kink rule allows. A gradient wrong
over any interval is wrong at the neighbours too, and stays a finding.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._arrays import _backward, _f64, _smallest_normal
from ._numerics import machine_eps
from ._records import ForwardBackward

__all__ = ["ties_of_pieces"]

#: How far the neighbours are: this many ulps of the input's dtype (16 smallest normals at
#: 0, where TensorFlow reads a subnormal as 0).
_ULPS = 4


def ties_of_pieces(fb: ForwardBackward, k: int, s: np.ndarray, analytic: np.ndarray,
                   numerical: np.ndarray, bound: np.ndarray, rejected: np.ndarray
                   ) -> np.ndarray:
    """Of the ``rejected`` elements of input param ``k`` (per element, along ``s``:
    ``analytic`` the gradient there, ``numerical`` +- ``bound`` the derivative), those the
    module docstring passes."""
    p = fb.params[k]
    if p.is_weight or not rejected.any():
        return np.zeros(np.shape(rejected), dtype=bool)
    step = np.maximum(np.abs(p.value) * _ULPS * machine_eps(p.dtype.name),
                      16 * _smallest_normal(p.dtype))
    sides = []
    for side in (-1.0, 1.0):
        moved = np.where(rejected, p.value + side * step, p.value)
        try:
            sides.append(_gradient(fb, k, moved) * s)
        except Exception:  # noqa: BLE001 - the target fails there: nothing passed
            return np.zeros(np.shape(rejected), dtype=bool)
    left, right = sides
    with np.errstate(invalid="ignore", over="ignore"):
        both = (np.abs(left - numerical) <= bound) & (np.abs(right - numerical) <= bound)
        hull = np.stack([np.zeros_like(left), left, right, left + right])
        slack = bound + np.abs(numerical) * _ULPS * machine_eps(p.dtype.name)
        inside = ((analytic >= hull.min(axis=0) - slack)
                  & (analytic <= hull.max(axis=0) + slack))
    return rejected & both & inside


def _gradient(fb: ForwardBackward, k: int, moved: np.ndarray) -> np.ndarray:
    """The target's gradient for input param ``k`` at ``moved`` (its dtype, ``fb.v``)."""
    p = fb.params[k]
    args = list(fb.args)
    args[p.arg_index] = tf.cast(tf.constant(moved, tf.float64), p.dtype)
    with tf.GradientTape() as tape:
        tape.watch(args[p.arg_index])
        y = tf.convert_to_tensor(fb.target(args))
    grad = _backward(tape, y, [args[p.arg_index]], tf.constant(fb.v, y.dtype))[0]
    return np.full(np.shape(moved), np.nan) if grad is None else _f64(grad)
