"""The windows of step 3's low-precision rules: inputs a low dtype cannot tell apart.

A derivative computed in a low dtype is the exact derivative at some input within the dtype's
rounding of the given one (and of its intermediates), so where finite differences reject it,
it may still be a slope the reference takes inside that window. Per element
(:func:`within_rounding_window`, the window's width from the output's rounding and slope) and
along a line (:func:`within_line_window`, ANALYTIC_ULPS roundings of every coordinate, where
a kink inside the window makes the line inconclusive). Both read the run's records, as
``_routes`` does, and evaluate the reference through its ``calls``. And the window of the
dtype's own function (:func:`kinked_in_own_dtype`): a kink its rounding of a constant moves
onto the very input.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import tensorflow as tf

from ._arrays import _f64
from ._numerics import ANALYTIC_ULPS, KINK_RELATIVE, rounding_window, within_secants
from ._records import Evaluations, ForwardBackward, Reference

__all__ = ["Line", "kinked_in_own_dtype", "line_window_ts", "within_line_window",
           "within_rounding_window"]

#: A per-element line: ``(s, phi, estimate, rho)``, see ``_routes.sample_diagonals``.
Line = tuple


def within_rounding_window(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int,
                           analytic, verdict, allowance, line: Line) -> np.ndarray:
    """Accept a low-precision derivative that equals some secant slope of the reference
    over the window of inputs indistinguishable in the low dtype (see
    :func:`rounding_window` and :func:`within_secants`)."""
    p = fb.params[k]
    width = rounding_window(fb.eps, ref.h, p.value, ref.f0,
                            np.abs(verdict.numerical / fb.v))
    both = calls.stacked({k: width}, (-1.0, 1.0))  # one call where the route allows it
    left, right = (both if both is not None
                   else (calls.evaluate({k: width}, t) for t in (-1.0, 1.0)))
    left, right = fb.v * left, fb.v * right
    s, phi, _, _ = line
    # f'' from the second difference already sampled: phi(h) - 2 phi(0) + phi(-h) =
    # v f'' (h s)^2.
    curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / (ref.h * s) ** 2
    return within_secants(analytic, fb.v * ref.f0, left, right, width,
                          verdict.numerical / s, verdict.bound / s, allowance, curvature)


def kinked_in_own_dtype(fb: ForwardBackward, k: int, analytic, allowance,
                        where: np.ndarray) -> np.ndarray:
    """Of the elements ``where`` (rejected), those where the target, in its own dtype, has a
    kink at the very input and ``analytic`` lies between its one-sided slopes.

    A constant the dtype rounds moves a kink: float16's 0.3 is 0.30005, so softshrink's
    ``|x| - 0.3`` is exactly 0 at the x drawn for the declared kink, and autodiff takes
    relu's subgradient 0, where the float64 reference, its kink at 0.3 half an ulp away,
    sees slope 1. The dtype's own function is what autodiff differentiates: the target at
    x moved by 1 and 2 ulps of the dtype on each side (elementwise: every element at once),
    each side straight (its slopes over 1 and 2 ulps within their rounding: a smooth
    function whose ulp spans its own scale, sin at 1e7 in float32, is not), the sides
    apart by more than that. Then any value between the sides (the analytic allowance as
    slack) is a subgradient of the function the dtype computes."""
    p = fb.params[k]
    if not where.any() or p.is_weight or p.value.shape != fb.y64.shape:
        return np.zeros(np.shape(where), dtype=bool)
    low = np.asarray(p.value, p.dtype.as_numpy_dtype)
    found = {}
    for steps in (-2, -1, 1, 2):
        moved = low
        with np.errstate(over="ignore", invalid="ignore"):  # past the largest: Inf, not followed
            for _ in range(abs(steps)):
                moved = np.nextafter(moved, np.asarray(np.sign(steps) * np.inf, moved.dtype))
        args = list(fb.args)
        args[p.arg_index] = tf.constant(np.where(where, moved, low), p.dtype)
        try:
            found[steps] = (np.asarray(moved, np.float64), fb.v * _f64(fb.target(args)))
        except Exception:  # noqa: BLE001 - the target fails there: not followed
            return np.zeros(np.shape(where), dtype=bool)
    x0, f0 = p.value, fb.v * fb.y64
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        def slope(a, b):
            return (b[1] - a[1]) / (b[0] - a[0])
        centre = (x0, f0)
        right1, right2 = slope(centre, found[1]), slope(centre, found[2])
        left1, left2 = slope(found[-1], centre), slope(found[-2], centre)
        # Each evaluation rounds its output by an ulp of |y| (the largest of the five, at
        # least the dtype's smallest normal): a secant over the shortest span (one ulp of x)
        # by two, two secants' difference by four. Where intermediates round at a larger
        # size (exp(x) - 1 next to 0) a side is not straight, and nothing is accepted.
        span = np.minimum(found[1][0] - x0, x0 - found[-1][0])
        size = np.maximum.reduce([np.abs(f) for _, f in found.values()] + [np.abs(f0)])
        rounding = 4 * fb.eps * np.maximum(size, np.abs(fb.v) * fb.tiny) / span
        straight = (np.abs(right1 - right2) <= rounding) & (np.abs(left1 - left2) <= rounding)
        # The sides apart by more than each side may bend within its rounding, both ways.
        kink = straight & (np.abs(right1 - left1) > 2 * rounding)
        lo, hi = np.fmin(left1, right1), np.fmax(left1, right1)
        slack = rounding + allowance
        return where & kink & (analytic >= lo - slack) & (analytic <= hi + slack)


def within_line_window(fb: ForwardBackward, ref: Reference, calls: Evaluations, u, axes,
                       analytic, phi, verdict, rounding, allowance) -> np.ndarray:
    """Judge a low-precision directional derivative over the window of inputs the low
    dtype cannot tell apart: the low-precision run computes exactly at some point of that
    window. Along x + t u, with each u_i scaled by max(1, |x_i|), ANALYTIC_ULPS roundings
    of every coordinate and of every intermediate of that size are |t| <= w =
    ANALYTIC_ULPS eps (at least the step h).

    Accepted: a slope the reference takes inside the window (the secants over its four
    pieces of width w/2, with the slope's change over half a window, |phi''| w / 2, as
    slack); and, as for a line crossing a kink within 2h, a line whose window holds a
    kink is inconclusive. A tie that rounding creates (sparsemax's x0 - 1 rounding to -1
    in float16) selects the Jacobian of a neighbouring piece, possibly one the line never
    enters. A kink shows as secants of the window that a smooth slope cannot join: their
    second difference exceeds KINK_RELATIVE of their first differences (smooth: O(w)
    times it) plus its own rounding. That second difference is
    (phi_3 - 3 phi_2 + 3 phi_1 - phi_0) / (w/2) over consecutive samples, so it carries
    (1 + 3 + 3 + 1) rho / (w/2); no safety factor, as in kinks(): calling a smooth line
    kinked only makes an already failing line inconclusive."""
    ts = line_window_ts(fb, ref)
    width = ts[-1]
    # Per element (axes ()), the four evaluations in one stacked call where the route allows.
    found = calls.stacked(u, ts) if axes == () else None
    if found is None:
        found = [calls.evaluate(u, t) for t in ts]
    at = {0.0: phi[0], **{t: np.asarray((fb.v * f).sum(axis=axes)) for t, f in zip(ts, found)}}
    ts = sorted(at)
    with np.errstate(invalid="ignore", over="ignore"):
        slopes = np.stack([(at[b] - at[a]) / (b - a) for a, b in pairwise(ts)])
        steps = np.abs(np.diff(slopes, axis=0))
        bends = np.abs(np.diff(slopes, n=2, axis=0))
        kink = (bends > KINK_RELATIVE * np.maximum(steps[:-1], steps[1:])
                + 8 * rounding / (width / 2)).any(axis=0)
    slopes = np.where(np.isfinite(slopes), slopes, np.nan)
    lo = np.fmin(np.nanmin(slopes, axis=0, initial=np.inf), verdict.numerical)
    hi = np.fmax(np.nanmax(slopes, axis=0, initial=-np.inf), verdict.numerical)
    curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / ref.h ** 2
    slack = np.nan_to_num(verdict.bound, nan=0.0) + allowance + curvature * width / 2
    return kink | ((analytic >= lo - slack) & (analytic <= hi + slack))


def line_window_ts(fb: ForwardBackward, ref: Reference) -> tuple[float, ...]:
    """Where :func:`within_line_window` evaluates the line: +-w and +-w/2."""
    width = max(ANALYTIC_ULPS * fb.eps, ref.h)
    return (-width, -width / 2, width / 2, width)
