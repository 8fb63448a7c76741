"""Is an infinite output an overflow of its true value, where no wider reference exists?

A float32 target is judged against its float64 twin: an Inf whose float64 value exceeds the
float32 range is not a bug. A float64 target (or one without a twin) has no wider dtype to ask,
and ``exp(800)`` is Inf in float64 because e^800 does not fit in it, not because of a bug. So
the output entry is followed along the segment ``t * x``, ``t`` from 0 to 1 (the inputs scaled
toward 0, weights kept): if it is finite at ``t = 0``, bisection finds the last finite point
before the Inf. A true value that grows past the dtype's largest number is continuous there,
so its last finite value lies within a factor 2 of that largest number (the bisection ends at
adjacent t, where a continuous function changes by far less than a factor 2: exp changes by
``x * 2**-52`` relative). An Inf reached in a jump from a value far below it is an
intermediate that overflowed (``exp(x)**2 / exp(x)`` at x = 400, true value e^400): a bug.
NaN is never the overflow of a value, and an entry that is not finite at ``t = 0`` cannot be
followed: the first is reported, the second is not (nothing shows the dtype could hold it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._conditioning import _gradients
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._singular import diverging_at_singular_points

__all__ = ["drop_true_overflows", "honest_infinities", "overflow_of_true_value",
           "true_gradient_overflows"]

# Inf entries followed per check: each costs _BISECTIONS calls. Those beyond are not claimed.
_FOLLOWED = 8
# Halvings of [0, 1]: at 2**-60 of the input, adjacent float64 values apart, nothing is left.
_BISECTIONS = 60


def drop_true_overflows(run: Any, bad: np.ndarray) -> None:
    """Clear, in ``bad``, the Inf outputs that are overflows of their true value (at most
    _FOLLOWED are followed; the rest are not claimed either way)."""
    infinite = np.flatnonzero(bad & np.isinf(run.y64))
    for j in infinite[:_FOLLOWED]:
        bad.flat[j] = not overflow_of_true_value(run, int(j))
    bad.flat[infinite[_FOLLOWED:]] = False


def overflow_of_true_value(run: Any, j: int) -> bool:
    """True when output entry ``j`` (Inf) is the overflow of a true value too large for the
    reference dtype, by the bisection of the module docstring."""
    value = run.y64.flat[j]
    if not np.isinf(value):
        return False
    inputs = {k: p.value for k, p in enumerate(run.params) if not p.is_weight}
    if not inputs:
        return False

    def at(t: float) -> float:
        return float(run.evaluate({k: -x for k, x in inputs.items()}, 1.0 - t).flat[j])

    try:
        if not np.isfinite(at(0.0)):
            return False
        lo, hi = 0.0, 1.0
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            if np.isfinite(at(mid)):
                lo = mid
            else:
                hi = mid
        last = at(lo)
    except Exception:  # noqa: BLE001 - cannot follow it: do not excuse it
        return False
    largest = float(run.ref_dtype.max)
    return bool(np.sign(last) == np.sign(value) and abs(last) >= largest / 2)


def true_gradient_overflows(run: Any, pending: Sequence[tuple[Any, np.ndarray]]) -> list[bool]:
    """For each ``(param, gradient)`` of ``pending`` (step 1's NaN/Inf gradients behind a
    finite output): whether every non-finite entry is an Inf where the true value does not
    fit the param's dtype either, as its float64 twin (the same code, same cotangent) says:
    the VJP's entry beyond the dtype's largest value (a float16 weight gradient summing
    ``dy x^2`` over |x| = 1000), or, for an input of the output's shape, the derivative
    ``VJP / dy`` itself, an intermediate of every chain rule (``log`` at ``x = 1.1e-5`` in
    float16: 1 / x = 89240 overflows though dy / x may fit). Largest, as in the sweep:
    ``max (1 - ANALYTIC_ULPS eps)``, since a value that close may round up to Inf. NaN is
    never an overflow. A float64 target has no wider twin: there an input's derivative is
    measured by a one-sided difference quotient at a step ``2^-20 |x|`` (exact), in float64
    as well, which must overflow too or exceed the limit (``1 / x`` at x = 1e-160, whose
    derivative is 1e320), with the gradient's sign; a gradient Inf where the function's
    slope is modest gives a modest quotient."""
    verdicts = [False] * len(pending)
    if not pending or any(np.isnan(g).any() for _, g in pending):
        return verdicts
    if run.dtype == tf.float64:
        return [_quotient_overflows(run, p, grad) for p, grad in pending]
    weights = [p.weight for p in run.params if p.is_weight]
    try:
        found = run.tgt.float64_reference(run.args, weights, run.y.shape, run.y)
        if found is None:
            return verdicts
        twin, twin_weights, _ = found
        exact = _gradients(twin, run.args, run.params, run.v, tf.float64, twin_weights)
    except Exception:  # noqa: BLE001 - no twin's word: nothing excused
        return verdicts
    for i, (p, grad) in enumerate(pending):
        g64 = exact[run.params.index(p)]
        if g64 is None or g64.shape != grad.shape:
            continue
        limit = float(p.dtype.max) * (1 - ANALYTIC_ULPS * machine_eps(p.dtype.name))
        size = np.abs(g64)
        if not p.is_weight and grad.shape == np.shape(run.v):
            with np.errstate(divide="ignore", invalid="ignore"):
                size = np.fmax(size, np.abs(g64 / run.v))
        bad = ~np.isfinite(grad)
        verdicts[i] = bool(np.all(np.isfinite(g64[bad]) & (size[bad] > limit)
                                  & (np.sign(grad[bad]) == np.sign(g64[bad]))))
    return verdicts


def _quotient_overflows(run: Any, p: Any, grad: np.ndarray) -> bool:
    """For a float64 input ``p`` of the output's shape: whether ``v`` times the difference
    quotient at each non-finite entry of ``grad`` (moved alone, by ``2^-20 |x|``) exceeds
    float64's range with the gradient's sign (see :func:`true_gradient_overflows`)."""
    if p.is_weight or grad.shape != run.y64.shape:
        return False
    bad = ~np.isfinite(grad)
    # A power of two: x + step is exact to float64's rounding, a relative error of 2e-10 in
    # the quotient, far below the factor past the range it is asked about.
    step = np.where(bad, np.abs(p.value) * 2.0 ** -20, 0.0)
    if not np.all(step[bad] > 0):
        return False
    args = list(run.args)
    args[p.arg_index] = tf.constant(p.value + step, tf.float64)
    try:
        moved = np.asarray(tf.convert_to_tensor(run.tgt(args)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - not followed: not excused
        return False
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = run.v * (moved - run.y64) / step
    limit = float(np.finfo(np.float64).max) * (1 - ANALYTIC_ULPS * machine_eps("float64"))
    return bool(np.all((np.abs(slope[bad]) > limit) & (np.sign(slope[bad]) == np.sign(grad[bad]))))


def honest_infinities(run: Any, pending: Sequence[tuple[Any, np.ndarray]]) -> list[str | None]:
    """For each ``(param, gradient)`` of ``pending`` (step 1's NaN/Inf gradients behind a
    finite output), a note for ``meta["skipped"]`` where its infinite entries are true values:
    an overflow (:func:`true_gradient_overflows`), or the derivative's infinite value at an
    input read as zero or at a declared end (``_singular.diverging_at_singular_points``);
    None where they are a finding."""
    notes: list[str | None] = []
    for (p, grad), overflows in zip(pending, true_gradient_overflows(run, pending)):
        bad = ~np.isfinite(grad)
        where = f"{p.label}: its gradient is Inf at {int(bad.sum())} / {bad.size} entries where"
        if overflows:
            measured = ("its difference quotient" if run.dtype == tf.float64
                        else "the same code in float64")
            notes.append(f"{where} {measured} exceeds {p.dtype.name}'s range "
                         f"({float(p.dtype.max):.6g}): the true value overflows; not compared")
        elif (np.isinf(grad[bad]).all()
              and diverging_at_singular_points(run, run.params.index(p), bad, True)[bad].all()):
            notes.append(f"{where} the input is 0, subnormal (read as 0) or an end of the "
                         f"declared domain, and the function's slope grows without bound "
                         f"toward it: the true derivative is infinite there; not compared")
        else:
            notes.append(None)
    return notes
