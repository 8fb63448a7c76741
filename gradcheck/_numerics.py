"""Finite differences with error estimates, and the verdict on an analytic derivative.

Everything here is plain NumPy on float64 arrays. A *line problem* is a batch of independent
1-D functions phi(t) sampled at t = -2h, -h, 0, h, 2h (arrays of one shape, one entry per
problem); the analytic side gives phi'(0) for each. The elementwise check makes one line problem
per element, the directional checks one per row or one in all: the same code decides them.

Where the constants come from (see also shared/NUMERICS.md):

* Step: central differences have error ~ h^2|phi'''|/6 + eps|phi|/h, smallest at h ~ eps^(1/3).
  Directions are scaled by max(1, |x|) per coordinate, so t is dimensionless and
  h = eps_ref^(1/3) for the reference dtype.
* Truncation estimate: D(h) = phi' + c h^2 + O(h^4), so |D(h) - D(2h)| / 3 estimates the error of
  D(h) (Richardson).
* Rounding estimate: each evaluation of phi carries an absolute error of about
  eps_ref * rho_scale (see ``rounding_scale`` in _check.py), so D(h) carries about rho / h.
* Safety factor: the Richardson estimate is an estimate, not a bound (it covered the true error at
  ~90% of points in NUMERICS.md's measurement), and rounding compounds over the few operations of
  a target. NUMERICS.md measured that 10 x (truncation + rounding) gave no false positive over
  4.8M float32/float64 points of 12 activations; we use that measured factor, ``SAFETY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import _abs, _abs_diff

# Measured in shared/NUMERICS.md: 10 x (Richardson estimate + rounding floor) had 0 false
# positives over 4.8M points. The estimate covers ~90% of points on its own.
SAFETY = 10.0

# Two second differences of a smooth function agree to O(h^2); a kink within 2h makes them
# differ by O(1) of their size (ReLU at 0: h vs h/2, i.e. by half). A quarter splits the two
# regimes with room on both sides; misclassifying a smooth point only widens what is accepted.
KINK_RELATIVE = 0.25

# The analytic VJP is a short chain of operations, each rounding to the dtype's precision and
# each of an intermediate whose size is at most that of the result or of |dy| * max(1, |x|):
# allow 8 ulps (the 8 eps |a| of NUMERICS.md's measured rule).
ANALYTIC_ULPS = 8.0


def machine_eps(dtype_name: str) -> float:
    """Spacing of floats just above 1 for a dtype name (float16, bfloat16, float32, float64)."""
    if dtype_name == "bfloat16":
        return 2.0 ** -7
    return float(np.finfo(np.dtype(dtype_name)).eps)


def step(dtype_name: str) -> float:
    """The dimensionless finite-difference step for a reference dtype: eps^(1/3)."""
    return machine_eps(dtype_name) ** (1.0 / 3.0)


@dataclass
class LineVerdict:
    """Per-problem outcome of comparing analytic derivatives with finite differences."""

    ok: np.ndarray          # bool: analytic value accepted
    numerical: np.ndarray   # best numerical estimate of phi'(0)
    bound: np.ndarray       # error bound of the numerical estimate (before analytic allowance)
    kink: np.ndarray        # bool: a non-differentiable point lies within 2h
    finite: np.ndarray      # bool: enough finite samples to judge
    strict: bool = True     # every problem passed the smooth central test


def estimate(samples: dict[int, np.ndarray], h: float,
             rounding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central difference D(h) and its error bound SAFETY * (|D(h) - D(2h)| / 3 + rho / h)."""
    m2, m1, p1, p2 = (np.asarray(samples[k], dtype=float) for k in (-2, -1, 1, 2))
    with np.errstate(invalid="ignore", over="ignore"):
        d1 = np.asarray(np.subtract(p1, m1))
        d1 /= 2 * h
        bound = np.asarray(np.subtract(p2, m2))  # becomes the bound, in place
        bound /= 4 * h
        bound -= d1
        np.abs(bound, out=bound)
        bound *= SAFETY / 3.0
        bound += (SAFETY / h) * np.asarray(rounding)
    return d1, bound


def kinks(samples: dict[int, np.ndarray], rounding: np.ndarray) -> np.ndarray:
    """Where a non-differentiable point lies within 2h: the second differences at h and 2h
    disagree by more than KINK_RELATIVE of their size and more than their rounding
    (4 rho + rho). No safety factor on that floor: calling a smooth point a kink only widens
    what is accepted there, while missing a real kink would fail a correct subgradient."""
    m2, m1, z, p1, p2 = (np.asarray(samples[k], dtype=float) for k in (-2, -1, 0, 1, 2))
    with np.errstate(invalid="ignore", over="ignore"):
        c1 = p1 - 2 * z + m1
        c2 = (p2 - 2 * z + m2) / 4.0
        return np.abs(c1 - c2) > (KINK_RELATIVE * np.maximum(np.abs(c1), np.abs(c2))
                                  + 5 * rounding)


def judge_lines(samples: dict[int, np.ndarray], h: float, analytic: np.ndarray,
                rounding: np.ndarray, allowance: np.ndarray,
                estimated: tuple[np.ndarray, np.ndarray] | None = None) -> LineVerdict:
    """Decide, for each line problem, whether ``analytic`` is phi'(0).

    Args:
        samples: phi at t = k*h for k in (-2, -1, 0, 1, 2), each an array of one shape.
        h: the step in t.
        analytic: the analytic derivative phi'(0) per problem.
        rounding: absolute rounding error of one evaluation of phi, per problem.
        allowance: extra tolerance for the analytic side's own rounding, per problem.
        estimated: ``estimate(samples, h, rounding)`` when the caller already has it.

    Central differences are used where all five samples are finite; next to a domain end
    (e.g. log at small x) the one-sided second-order formula on the finite side is used.
    At a kink (detected from two second differences) the analytic value passes if it lies between
    the one-sided slopes, i.e. it is a valid subgradient, or between them, 0 and their sum:
    autodiff gives each piece that kinks there its slope on one side or 0 (relu'(0) = 0; a tie
    in tf.maximum sends the whole gradient to one argument), so a function written as two
    pieces that each carry one side's slope gets 0 or left + right there (Keras' PReLU,
    relu(x) - a relu(-x), is 0 at x = 0, outside [a, 1]): a conservative gradient (Bolte &
    Pauwels 2020), right everywhere but at the kink itself, which training never needs.
    """
    shape = np.shape(samples[0])
    m2, m1, z, p1, p2 = (np.asarray(samples[k], dtype=float) for k in (-2, -1, 0, 1, 2))
    analytic, rounding, allowance = (np.broadcast_to(np.asarray(a, dtype=float), shape)
                                     for a in (analytic, rounding, allowance))
    numerical, bound = estimate(samples, h, rounding) if estimated is None else estimated
    with np.errstate(invalid="ignore"):
        ok = np.asarray(_abs_diff(numerical, analytic) <= np.add(bound, allowance))
    kink = np.zeros(shape, dtype=bool)
    finite = np.ones(shape, dtype=bool)
    strict = bool(ok.all())
    if not strict:  # NaN comparisons are False: nonfinite samples land here too
        redo = ~ok
        # The slow path, on the few problems that fail the smooth central test.
        sub = _judge_carefully(m2[redo], m1[redo], z[redo], p1[redo], p2[redo], h,
                               analytic[redo], rounding[redo], allowance[redo])
        numerical, bound, ok = (np.array(a, dtype=a.dtype, ndmin=0, copy=True)
                                for a in (numerical, bound, ok))
        for name, target in (("numerical", numerical), ("bound", bound), ("ok", ok),
                             ("kink", kink), ("finite", finite)):
            target[redo] = sub[name]
    return LineVerdict(ok=ok, numerical=numerical, bound=bound, kink=kink, finite=finite,
                       strict=strict)


def _judge_carefully(m2, m1, z, p1, p2, h, analytic, rounding, allowance) -> dict:
    fin = {k: np.isfinite(v) for k, v in ((-2, m2), (-1, m1), (0, z), (1, p1), (2, p2))}
    central = fin[-2] & fin[-1] & fin[0] & fin[1] & fin[2]
    forward = ~central & fin[0] & fin[1] & fin[2]
    backward = ~central & ~forward & fin[0] & fin[-1] & fin[-2]
    finite = central | forward | backward
    with np.errstate(invalid="ignore", over="ignore"):
        d1 = (p1 - m1) / (2 * h)
        trunc = np.abs(d1 - (p2 - m2) / (4 * h)) / 3.0
        round_err = rounding / h
        # One-sided slopes over h and 2h, on each side.
        right1, right2 = (p1 - z) / h, (p2 - z) / (2 * h)
        left1, left2 = (z - m1) / h, (z - m2) / (2 * h)
        # One-sided extrapolated estimate 2 D+(h) - D+(2h): error O(h^2), and |D+(h) - D+(2h)|
        # (the error of the plain one-sided slope) over-estimates its error.
        fwd_val, fwd_err = 2 * right1 - right2, np.abs(right1 - right2)
        bwd_val, bwd_err = 2 * left1 - left2, np.abs(left1 - left2)
        numerical = np.where(central, d1, np.where(forward, fwd_val, bwd_val))
        # The one-sided formula combines 3 samples with weights (3, 4, 1)/2h: rounding 4 rho/h.
        est = np.where(central, trunc + round_err,
                       np.where(forward, fwd_err, bwd_err) + 4 * round_err)
        bound = SAFETY * est
        ok = np.abs(numerical - analytic) <= bound + allowance
        kink = central & kinks({-2: m2, -1: m1, 0: z, 1: p1, 2: p2}, rounding)
        # The secants from a kink at the input fall short of its one-sided derivatives by
        # |f''| h / 2 where the pieces curve (exp(-|x|): 1 - h/2 for 1), which at float64's
        # step is far beyond the bound; the extrapolated one-sided values reach them to O(h^2).
        slopes = np.stack([right1, right2, left1, left2, np.zeros_like(z), right1 + left1,
                           fwd_val, bwd_val])
        lo = slopes.min(axis=0) - bound - allowance
        hi = slopes.max(axis=0) + bound + allowance
        subgradient = kink & (analytic >= lo) & (analytic <= hi)
    return {"numerical": numerical, "bound": np.where(finite, bound, np.nan),
            "ok": np.where(finite, ok | subgradient, True), "kink": kink, "finite": finite}


def secant_hull(f_center: np.ndarray, f_left: np.ndarray, f_right: np.ndarray,
                width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest secant slope of phi over [-width, 0] and [0, width].

    Used to accept a low-precision analytic derivative: its inputs and intermediates are only
    known to within the dtype's rounding, which is the same as evaluating the exact derivative
    somewhere in that window. Nonfinite samples (outside the function's domain) are ignored.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        right = (f_right - f_center) / width
        left = (f_center - f_left) / width
    right = np.where(np.isfinite(right), right, np.nan)
    left = np.where(np.isfinite(left), left, np.nan)
    lo = np.fmin(left, right)
    hi = np.fmax(left, right)
    return lo, hi


def analytic_allowance(analytic: np.ndarray, eps: float, low_precision: bool,
                       magnitude: Any = 1.0, tiny: float = 0.0, dy: Any = 1.0,
                       step: Any = 1.0) -> np.ndarray:
    """How far an analytic derivative along ``step`` may be from the exact one.

    ANALYTIC_ULPS roundings (``eps``) of its own size. In a low dtype (``low_precision``: the
    reference is wider than the target) the derivative's own terms round at their size, not
    the result's: 1 - tanh(x)^2 is 0 once tanh rounds to 1, and x * sech^2(.) in mish carries
    |x|. Those terms are as large as the output or the input (times |dy|), so the floor is
    ANALYTIC_ULPS roundings of ``magnitude`` (max(1, |x|, |f|)), in t units (``step``) times
    the step. Below the dtype's smallest normal number (``tiny``) values lose precision or
    flush to 0 (exp(-18) in float16): no derivative smaller than that can be resolved.
    """
    allowance = _abs(analytic)
    allowance *= ANALYTIC_ULPS * eps
    if low_precision:  # in place where the shapes allow: one temporary, not eight
        size = _abs(dy)
        terms = np.multiply(size, ANALYTIC_ULPS * eps)
        terms = _times(_times(terms, magnitude), step)
        allowance = _plus(allowance, terms)
        size = _times(_times(size, tiny), step)
        allowance = _plus(allowance, size)
    return allowance


def beyond_own_rounding(verdict: LineVerdict, analytic: np.ndarray, eps: float) -> np.ndarray:
    """Where ``analytic`` misses the verdict's numerical value by more than its bound plus
    ``ANALYTIC_ULPS`` roundings of its own size (what every dtype allows an analytic chain):
    in a low dtype, the elements that pass, if they pass, on its allowance for larger terms."""
    own = analytic_allowance(analytic, eps, False)
    with np.errstate(invalid="ignore"):
        return _abs_diff(analytic, verdict.numerical) > verdict.bound + own


def _times(a: np.ndarray, b: Any) -> np.ndarray:
    """a * b, in a's buffer where it has the result's shape."""
    if isinstance(a, np.ndarray) and np.shape(b) in ((), np.shape(a)):
        a *= b
        return a
    return a * b


def _plus(a: np.ndarray, b: Any) -> np.ndarray:
    """a + b, in a's buffer where it has the result's shape."""
    if isinstance(a, np.ndarray) and np.shape(b) in ((), np.shape(a)):
        a += b
        return a
    return a + b


def rounding_window(eps: float, h: float, x: np.ndarray, f: np.ndarray,
                    slope: np.ndarray) -> np.ndarray:
    """Half-width, in x, of the window of inputs a low dtype (``eps``) cannot tell apart.

    The input's own rounding (eps |x|) and the output's: the x-shift that moves f by its
    absolute rounding eps max(1, |f|) -- intermediates such as exp(x) in exp(x) - 1 are O(1)
    even where f is small -- i.e. eps max(1, |f|) / |f'| (``slope``). The analytic chain rounds
    a few times (ANALYTIC_ULPS, as for the allowance), and a secant over [x, x + w] is the
    slope at an interior point, so the window is ANALYTIC_ULPS of those shifts wide. Capped at
    max(1, |x|), beyond which the function is saturated at this precision; at least the
    finite-difference step ``h`` (relative to max(1, |x|)).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(slope > 0, np.maximum(1.0, np.abs(f)) / slope, np.inf)
    cap = np.maximum(1.0, np.abs(x))
    width = np.minimum(ANALYTIC_ULPS * eps * np.maximum(np.abs(x), reach), cap)
    return np.maximum(width, h * cap)


def within_secants(analytic: np.ndarray, f_center: np.ndarray, f_left: np.ndarray,
                   f_right: np.ndarray, width: np.ndarray, numerical: np.ndarray,
                   bound: np.ndarray, allowance: np.ndarray,
                   curvature: np.ndarray) -> np.ndarray:
    """Whether a low-precision ``analytic`` derivative equals some secant slope of the
    reference over its :func:`rounding_window` (``f_left``/``f_right`` at -/+ ``width``), or the
    central difference ``numerical``, within its error ``bound``, the analytic ``allowance``
    and the slope's own change across the window, ``curvature`` (|f''|) times ``width``: where
    f' decays exponentially (saturated tanh), a derivative computed from the rounded output
    can be 0 while the exact one is not, and the secants stay that close to f'."""
    lo, hi = secant_hull(f_center, f_left, f_right, width)
    lo, hi = np.fmin(lo, numerical), np.fmax(hi, numerical)
    slack = np.nan_to_num(bound, nan=0.0) + allowance + curvature * width
    return (analytic >= lo - slack) & (analytic <= hi + slack)
