"""Is an infinite value at an input TensorFlow reads as zero the target's true value there?

TensorFlow's CPU kernels read subnormal inputs as zero (denormals-are-zero), and at zero many
correct functions are infinite: ``log`` (-inf), the derivative of ``sqrt``, ``x ** 0.5`` or
``asinh(x) ** (1/3)``. There an Inf output or gradient behind a finite output is the true value
(the limit toward the point), or that of the zero a subnormal input is read as, and no dtype
can hold it: by the rule every check follows, overflow of the true value is not a bug. A bug
that makes an Inf at zero where the function is finite (a custom gradient ``dy / x`` for a
function smooth at 0) shows in the same test as not diverging.

The same holds at an end of a declared domain, where ``asin``'s derivative or ``atanh`` is
infinite (``asin`` at 1, domain (-1, 1)). The test, per entry: the target (in its own dtype) at
the point (0, or the end) moved by ``h`` toward the inside of the domain, for ``h = 10^-1,
10^-2, ...`` down to 16 times the dtype's smallest normal number, or its ulp at the end (at
least three steps: 3 in float16 at 0, 8 in the wider dtypes). The output's magnitude (for an
infinite output) or the difference quotient's ``|y(x + h) - y(x)| / h`` (for an infinite
gradient) must rise at every step, and its last rise be at least half its largest: a
divergence rises by constant amounts (``log``, ``ln 10`` a step) or growing ones (``sqrt``'s
quotient by ``10^(1/2)`` times more each step, ``x^0.98``'s by 1.047 times), while a
quotient that converges rises by shrinking amounts (``x - x^2``'s tenfold less each step,
``x - x^1.1``'s, 1 - h^0.1, by 0.79: over seven rises a quarter), whatever it grows by in all
(``x - x^1.1``'s fourfold). Only inputs of the output's shape (one output entry per input
entry) are followed, each entry moved alone in the same call as the others (an
elementwise target computes each as a call on it alone would).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _smallest_normal
from ._numerics import ANALYTIC_ULPS, machine_eps

__all__ = ["diverging_at_singular_points", "finite_limit", "infinite_slopes",
           "nan_where_defined", "read_as_zero"]

# How much the last rise may fall short of the largest and still tell a divergence from a
# converging quotient (above).
_SHRINK = 2.0


def read_as_zero(values: np.ndarray, dtype: tf.DType) -> np.ndarray:
    """Where ``values`` of ``dtype`` are zero or subnormal: what TensorFlow reads as zero."""
    return np.abs(values) < _smallest_normal(dtype)


def diverging_at_singular_points(run: Any, k: int, entries: np.ndarray,
                                 gradient: bool, depth: int = 8,
                                 twin_at_zero: bool = False) -> np.ndarray:
    """Of ``entries`` (bool, of input param ``k``'s shape, the output's), those read as zero,
    or at an end of the declared domain (``asin`` at 1, ``atanh`` at -1), where the target
    diverges toward the input from inside the domain (module docstring): its output, or with
    ``gradient`` its difference quotient, at steps down to ``10^-depth``, at 0 too in the
    float64 twin where ``twin_at_zero`` (a low dtype's steps stop early: float16's at 1e-3,
    where any slope past 1e3 rises as 1 / h). All False where that cannot be followed."""
    p = run.params[k]
    found = np.zeros(np.shape(entries), dtype=bool)
    if p.is_weight or p.value.shape != run.y64.shape:
        return found
    points = [(0.0, entries & read_as_zero(p.value, p.dtype), (1.0, -1.0))]
    domain = getattr(run, "domain", None)
    if domain is not None:
        for end, inward in ((domain[0], 1.0), (domain[1], -1.0)):
            at = float(np.asarray(end, dtype=p.dtype.as_numpy_dtype))  # as the dtype holds it
            if at != 0.0:
                points.append((at, entries & (p.value == at), (inward,)))
    twin = None
    for point, at, sides in points:
        if at.any():
            in_twin = point != 0.0 or twin_at_zero
            if in_twin and twin is None:
                twin = _float64_twin(run)
            found |= _diverging(run, k, at, point, sides, domain, gradient,
                                twin if in_twin else None, depth)
    return found


def infinite_slopes(run: Any) -> Callable[[int, np.ndarray], np.ndarray]:
    """Step 3's ``Evaluations.diverging`` for ``run``: of the entries of input param ``k``
    that a comparison rejects, those where the difference quotient diverges toward 0 or a
    declared end (:func:`diverging_at_singular_points`). The true derivative is infinite
    there, and whatever finite value the code gives (``x log x`` written with a double
    ``tf.where``: 0; a square root's gradient clamped at 1e-30: 5e14) is a convention no
    finite difference can judge: not a finding, and ``meta["skipped"]`` says so."""
    def diverging(k: int, entries: np.ndarray) -> np.ndarray:
        # Down to 1e-16: a ramp narrower than 1e-8 (tanh(x / 2e-9), a finite slope of 5e8)
        # rises as 1 / h at every longer step, as a jump or a divergence does.
        found = diverging_at_singular_points(run, k, entries, True, depth=16,
                                             twin_at_zero=True)
        if found.any():
            run.skip(f"{run.params[k].label}: at {int(found.sum())} / {found.size} entries "
                     "the input is 0, subnormal (read as 0) or an end of the declared domain, "
                     "and the function's slope grows without bound toward it: the true "
                     "derivative is infinite there; the gradient's finite value there is not "
                     "compared")
        return found

    return diverging


def _float64_twin(run: Any) -> tuple[Any, np.ndarray] | bool:
    """The target's float64 twin and its output at the input, to follow a low dtype's
    Inf toward a domain end its own dtype cannot step to (float16 resolves 0.016 next to 1:
    two steps, asin's derivative there could not be told); False where there is none."""
    if run.dtype == tf.float64:
        return False
    weights = [p.weight for p in run.params if p.is_weight]
    try:
        found = run.tgt.float64_reference(run.args, weights)
    except Exception:  # noqa: BLE001 - followed in the target's own dtype then
        return False
    return False if found is None else (found[0], _f64(found[2]))


def _diverging(run: Any, k: int, entries: np.ndarray, point: float, sides: tuple,
               domain: Any, gradient: bool, twin: Any = None, depth: int = 8) -> np.ndarray:
    """The test of the module docstring for ``entries``, all at ``point``, from each of
    ``sides`` (+1: above it) until one can be followed inside the domain; in ``twin`` (the
    float64 twin and its output, :func:`_float64_twin`) where there is one."""
    p = run.params[k]
    dtype = tf.float64 if twin else p.dtype
    # Steps the dtype resolves from the point: at least 16 of its smallest normals or of its
    # ulps there, so that the moved value's own rounding is within 1/16 of the step.
    floor = 16 * max(_smallest_normal(dtype), machine_eps(dtype.name) * abs(point))
    steps = [10.0 ** -j for j in range(1, depth + 1) if 10.0 ** -j >= floor]
    for side in sides:
        if len(steps) < 3 or (domain is not None and not all(
                domain[0] <= point + side * h <= domain[1] for h in (steps[0], steps[-1]))):
            continue
        try:
            sizes = np.stack([_size(run, k, entries, point + side * h, h, gradient, twin)
                              for h in steps])
        except Exception:  # noqa: BLE001 - the target fails there: not followed
            continue
        if not np.isfinite(sizes[:, entries]).all():
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # entries not followed: NaN
            rises = np.diff(sizes, axis=0)
            # the last rise against the largest, not the first: a ramp narrower than the
            # longer steps rises tenfold at each of those, then less once steps resolve it
            grows = np.all(rises > 0, axis=0) & (rises[-1] >= np.max(rises, axis=0) / _SHRINK)
        return entries & grows
    return np.zeros(np.shape(entries), dtype=bool)


def _size(run: Any, k: int, entries: np.ndarray, value: float, h: float,
          gradient: bool, twin: Any = None) -> np.ndarray:
    """|y| at the input with ``entries`` moved to ``value`` (``gradient``: |y - y(x)| / h),
    in the float64 ``twin`` where one is given."""
    p = run.params[k]
    moved = np.where(entries, value, p.value)
    args = list(run.args)
    if twin:
        args = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in args]
    args[p.arg_index] = tf.constant(moved, tf.float64 if twin else p.dtype)
    y = _f64(tf.convert_to_tensor((twin[0] if twin else run.tgt)(args)))
    if gradient:
        return np.abs(y - (twin[1] if twin else run.y64)) / h
    return np.abs(y)


#: Steps toward a NaN output's input, relative to max(1, |x|), at which the reference is
#: followed (``finite_limit``): from 1e-2, near enough to be the value's own neighbourhood,
#: to 1e-7, where float64's rounding of a unit-sized value (2e-16) is still 1e-9 of the step,
#: so the changes between steps are the function's, not rounding.
_LIMIT_STEPS = tuple(10.0 ** -j for j in range(2, 8))


def finite_limit(run: Any, k: int, entries: np.ndarray) -> np.ndarray:
    """Of ``entries`` (bool, of input param ``k``'s shape, the output's) whose output is NaN,
    those where the function has one finite limit: followed in the reference at the steps
    :data:`_LIMIT_STEPS` from both sides (from inside only at an end of the declared
    domain), every value is finite, each side's changes shrink by more than half from the
    first step to the last (or vanish), and the two sides end within those changes and a
    few roundings of each other. A NaN there is a 0/0 or an Inf - Inf of the formula
    (``sin(x) / x`` at 0, ``x log x`` at 0 over (0, 1)), not a value outside the function's
    domain: ``log`` at -1 has no finite neighbour, ``x / |x|`` at 0 two limits."""
    p = run.params[k]
    found = np.zeros(np.shape(entries), dtype=bool)
    if p.is_weight or p.value.shape != run.y64.shape or not entries.any():
        return found
    scale = np.where(entries, np.maximum(np.abs(p.value), 1.0), 0.0)
    domain = getattr(run, "domain", None)
    limits, changes, followed = [], [], []
    for side in (1.0, -1.0):
        try:
            values = np.stack([run.evaluate({k: side * scale}, h) for h in _LIMIT_STEPS])
        except Exception:  # noqa: BLE001 - the target fails there: not followed
            values = np.full((len(_LIMIT_STEPS), *np.shape(entries)), np.nan)
        with np.errstate(invalid="ignore", over="ignore"):
            rises = np.abs(np.diff(values, axis=0))
            converges = np.isfinite(values).all(axis=0) & (
                (rises[-1] == 0) | (rises[-1] < rises[0] / _SHRINK))
        limits.append(values[-1])
        changes.append(np.where(np.isfinite(rises[-1]), rises[-1], np.inf))
        followed.append(converges)
    inward = np.zeros(np.shape(entries), dtype=bool), np.zeros(np.shape(entries), dtype=bool)
    if domain is not None:  # at an end only the inside is the function's
        inward = (p.value == np.asarray(domain[0], p.value.dtype),
                  p.value == np.asarray(domain[1], p.value.dtype))
    with np.errstate(invalid="ignore", over="ignore"):
        # Each side's last value is a chain of the formula's roundings, as the analytic one.
        rounding = ANALYTIC_ULPS * machine_eps("float64") * np.maximum(1.0, np.abs(limits[0]))
        agree = np.abs(limits[0] - limits[1]) <= changes[0] + changes[1] + rounding
    both = followed[0] & followed[1] & agree
    return entries & (both | (inward[0] & followed[0]) | (inward[1] & followed[1]))


def nan_where_defined(run: Any, both: np.ndarray) -> np.ndarray:
    """Of the entries ``both`` where the output and its wider reference are NaN, those inside
    a declared domain (its ends excluded), and, for a declared elementwise target of one
    input, those where the function has a finite limit (:func:`finite_limit`: sin(x) / x at
    0): a NaN there is no value outside the function's domain but the formula's, which the
    wider reference shares."""
    found = np.zeros(np.shape(both), dtype=bool)
    if not both.any():
        return found
    domain = getattr(run, "domain", None)
    inputs = [k for k, p in enumerate(run.params) if not p.is_weight]
    if domain is not None and inputs and run.params[inputs[0]].value.shape == both.shape:
        x = run.params[inputs[0]].value
        found |= both & (x > domain[0]) & (x < domain[1])
    # A limit is followed per entry along its one input: only for a declared elementwise
    # target of one input. Along one input of several (x / y at (0, 0): 0 along y, +-inf
    # along x), or all entries moved together (x / sum(x) at a row of zeros), a constant
    # seen is no limit.
    if getattr(run, "elementwise", None) is True and len(inputs) == 1 \
            and run.params[inputs[0]].value.shape == both.shape:
        found |= finite_limit(run, inputs[0], both & ~found)
    return found
