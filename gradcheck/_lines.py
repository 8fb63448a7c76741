"""Step 3's lines beyond the central test: how much the analytic side may round along a batch
row or one direction through everything else (the directional routes), and shorter steps
where the step h did not resolve a derivative (those routes and the per-element one), and a
low dtype's lines whose formula fails in float64 too (every route). Read the run's records,
as ``_routes`` does, and evaluate the reference through its ``calls``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._arrays import _smallest_normal
from ._numerics import ANALYTIC_ULPS, SAFETY, LineVerdict, machine_eps
from ._records import Evaluations, ForwardBackward, Reference

__all__ = ["WrongFormula", "batch_size", "directional_allowance", "low_precision", "refined",
           "terms_allowance", "wrong_formula"]


def batch_size(ref: Reference) -> int:
    """The reference output's batch (its first axis; 0 for a scalar)."""
    return ref.f0.shape[0] if ref.f0.ndim else 0


def low_precision(fb: ForwardBackward, ref: Reference) -> bool:
    """The reference is the target's float64 twin, the input's dtype lower."""
    return ref.dtype != fb.dtype


def directional_allowance(fb: ForwardBackward, ref: Reference, k: int, u: np.ndarray,
                          row_axes: bool = False):
    """The analytic side's rounding, projected on u: ANALYTIC_ULPS roundings of each |g|
    entry, and in a low dtype also of the terms the gradient is summed from.

    A batch row's gradient entry sums terms of at most |dy| * max(1, |x|) within the row
    (softmax-like reductions weight them by probabilities). A weight or broadcast parameter
    sums over every output it feeds, each term as large as |dy| * max(1, |x|, |f|) times
    one more max(1, |x|): a parameter multiplies the input before the nonlinearity
    (sigmoid(b x), W x), so its chain rule carries that factor (d/db x sigmoid(b x) =
    x^2 s(1 - s), with s(1 - s) rounding to 0 once s rounds to 1). Values below the dtype's
    smallest normal number are unresolvable: |dy| * tiny per term."""
    p = fb.params[k]
    low = low_precision(fb, ref)
    per = np.abs(p.grad) * np.abs(u)
    if low and row_axes:
        vmax = np.abs(fb.v).reshape(batch_size(ref), -1).max(axis=1)
        vmax = vmax.reshape((-1,) + (1,) * (p.value.ndim - 1))
        per = per + vmax * np.maximum(1.0, np.abs(p.value)) * np.abs(u)
    per = ANALYTIC_ULPS * fb.eps * per
    if row_axes:
        return per.reshape(batch_size(ref), -1).sum(axis=1)
    total = per.sum()
    if low:
        size = np.maximum(1.0, np.abs(ref.f0))
        primary = fb.params[0]
        lever = 1.0
        if not primary.is_weight:
            lever = max(1.0, float(np.max(np.abs(primary.value), initial=0.0)))
            if primary.value.shape == ref.f0.shape:
                size = np.maximum(size, np.abs(primary.value))
        terms = np.abs(fb.v) * (ANALYTIC_ULPS * fb.eps * size * lever + fb.tiny)
        total += np.abs(u).sum() * terms.sum()
    return total


def terms_allowance(fb: ForwardBackward, ref: Reference, samples: Mapping[int, np.ndarray],
                    axes: tuple[int, ...] | None):
    """The analytic side's rounding as the terms of the directional derivative set it: phi'(0)
    = sum_j v_j (J u)_j, per row (``axes``) or whole (None), and each term carries
    ``ANALYTIC_ULPS`` roundings of the input's dtype. The terms' sizes |v_j (J u)_j| come
    from the reference's central difference at +-h (float64, accurate far beyond what a
    magnitude needs). In exact arithmetic they are at most what the projection v.J.u of the
    analytic VJP is summed from (|(J u)_j| <= sum_i |J_ji| |u_i|); the intermediates a
    backward pass rounds can be larger still. Where the step crosses a jump or a ramp
    narrower than h the difference reads up to the rise over 2h, more than the derivative:
    ANALYTIC_ULPS eps of that rise over 2h, negligible next to a steep slope's own size
    outside bfloat16. :func:`directional_allowance` estimates the same rounding from the
    gradient's own entries and input-sized terms; the routes keep the larger of the two (not
    their sum: where nothing cancels they are one quantity counted twice). This one is the
    larger where the Jacobian itself is: a normalization at zero variance scales by
    1/sqrt(epsilon) (31.6 for Keras' LayerNormalization), and its gradient cancels such terms
    down to values far smaller than they are. Samples that are not finite add nothing."""
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.abs((np.asarray(samples[1]) - samples[-1]) * fb.v) / (2 * ref.h)
    terms = np.where(np.isfinite(terms), terms, 0.0).sum(axis=axes)
    return ANALYTIC_ULPS * fb.eps * terms


#: D(2h) / D(h) is 1 + O(h^2) where the function is smooth at the step's scale, and 1/2 where
#: its whole change over +-2h happens within +-h (a ramp narrower than h: a norm floored at
#: epsilon, x / max(|x|, 1e-12), at a zero row). Below the geometric middle of the two, the
#: step did not resolve the derivative.
UNRESOLVED_RATIO = 2.0 ** -0.5

#: Shorter steps tried where it did not, relative to h: each 1000 times shorter, so three
#: tries reach a feature of 1e-12 (Keras' UnitNormalization) from float64's h = 6e-6, and the
#: fourth confirms it, while a float64 reference's rounding over the shortest, rho / (1e-12
#: h), stays ~1e-4 of |dy| against a slope of 1e12.
REFINEMENTS = (1e-3, 1e-6, 1e-9, 1e-12)

#: The same over a reference of float32's precision (code that computes in float32 inside,
#: ``_resolution.py``): its rounding grows as rho / step a thousand times faster, so levels
#: 1000 times apart leave at most one that resolves a steep feature; ten times apart, two
#: consecutive ones do. From float32's h = 5e-3 they reach 5e-10: a slope of 1e6 (a norm at
#: a zero row with epsilon 1e-12, linear only within 1e-6) still moves a unit output by 8,000
#: ulps there; where a level's move is within the output's rounding it resolves nothing.
REFINEMENTS_FLOAT32 = tuple(10.0 ** -k for k in range(1, 8))


def refined(fb: ForwardBackward, ref: Reference, calls: Evaluations, u: dict[int, np.ndarray],
            axes: tuple[int, ...] | None, phi: Mapping[int, np.ndarray], analytic: np.ndarray,
            rounding: Any, allowance: Any, verdict: LineVerdict,
            directional: bool = True, passes_only: np.ndarray | None = None
            ) -> tuple[LineVerdict, np.ndarray]:
    """A line's verdict (per row or whole along ``u``, summed over ``axes``; per element with
    ``axes`` ``()`` and ``directional`` False), judged again at shorter steps where it failed
    and its step h did not resolve the derivative (:data:`UNRESOLVED_RATIO`); and where it
    was (``settled``: the caller's window rules, built at the step h, do not apply there).

    The derivative is the difference quotient's limit. A shorter step resolves it where its
    own ratio D(2h) / D(h) lies within a factor 2^(1/2) of 1 and its difference stands out of
    its rounding; two consecutive levels that both resolve it and agree within their bounds
    settle it: the analytic value must pass the central test at both (the same rule and
    rounding, whose bound grows as rho / step), and the shorter level's estimate is kept.
    Agreement keeps out chance: where no step is short enough (sin at |x| = 3e13, whose step
    max(1, |x|) h spans millions of periods at every level tried), each level's estimate is
    noise. Over a float64 reference, whose rounding leaves the bounds tight, or one of
    float32's precision, with levels closer together (:data:`REFINEMENTS_FLOAT32`); a line
    no step resolves (a jump: its ratio is 1/2 at every step) keeps its verdict.
    ``verdict.strict`` is kept: the line still needed more than the step h. ``passes_only``:
    lines a caller's rule rejects (passing ``verdict``), tried again whatever their step
    resolved, which shorter steps may settle as passes only."""
    settled = np.zeros(np.shape(verdict.ok), dtype=bool)
    if ref.eps_ref > machine_eps("float32"):
        return verdict, settled
    factors = REFINEMENTS if ref.eps_ref <= machine_eps("float64") else REFINEMENTS_FLOAT32
    # Over a float64 target every failing line is tried again: its bound may be short where
    # a kink 2h away bends the Richardson estimate (log(max(x, 1e-5)) at x = 2.1e-5, h = 6e-6,
    # missed by 1.01 times its bound), or a step of h max(1, |x|) spans periods of sin at
    # |x| = 1e8; a wrong derivative fails at every level. In a low dtype, only where the step
    # did not resolve the derivative or the line is one-sided: the rules that follow there
    # (windows, rounding) judge at the step h, and a line a shorter step settles is not theirs
    # any more (a bfloat16 sinc at its Taylor branch's switch, a jump of 1e-10 read as a kink,
    # failed once settled). Where the step resolved nothing either way (D(2h) far above D(h):
    # sin at |x| = 8e5 in float32, whose step of 5 spans most of a period), a shorter step
    # may still settle a pass, never a failure: those lines stay the window rules' otherwise.
    todo = ~verdict.ok
    if passes_only is None:
        passes_only = np.zeros_like(todo)
    per_element = axes == () and not directional and len(u) == 1
    if low_precision(fb, ref):
        chaotic = todo & ~_resolved(phi, ref.h, rounding)
        if per_element:
            chaotic |= todo & _across_zero(fb, u, ref.h)
        todo &= _unresolved(phi, ref.h, rounding) | _one_sided(phi)
        passes_only = passes_only | (chaotic & ~todo)
    todo = todo | passes_only
    before = None  # the last level's (resolved, verdict)
    for factor in factors:
        if not todo.any():
            break
        step = ref.h * factor
        again = {t: np.asarray((fb.v * f).sum(axis=axes))
                 for t, f in calls.samples(u, step=step).items()}
        resolved = todo & _resolved(again, step, rounding)
        if per_element:  # samples across 0, where log and sqrt are singular, resolve nothing
            resolved &= ~_across_zero(fb, u, step)
        new = ref.judge(again, analytic, rounding, allowance, directional=directional,
                        step=step) if resolved.any() else None
        if before is not None and new is not None:
            with np.errstate(invalid="ignore"):
                confirmed = resolved & before[0] & (
                    np.abs(new.numerical - before[1].numerical) <= new.bound + before[1].bound)
                # A pass settled from lines passes-only reads central differences, not the
                # kink rule: rounding the model underestimates reads as a kink there.
                confirmed &= ~passes_only | (new.ok & before[1].ok & ~new.kink
                                             & ~before[1].kink)
            # A line the longer level fails shows that level's numbers, which tell why.
            shown = np.where(new.ok & ~before[1].ok, 1, 0)
            verdict = replace(
                verdict, ok=np.where(confirmed, new.ok & before[1].ok, verdict.ok),
                **{name: np.where(confirmed, np.choose(shown, (getattr(new, name),
                                                               getattr(before[1], name))),
                                  getattr(verdict, name))
                   for name in ("numerical", "bound", "kink", "finite")})
            settled |= confirmed
            todo = todo & ~confirmed
        before = (resolved, new) if new is not None else None
    # What follows reads the float64 ladder: at its finest step the function moves by
    # nothing a difference could show (float32's finest, 1e-7 h, still does).
    if factors is REFINEMENTS_FLOAT32:
        return verdict, settled
    if todo.any() and step == ref.h * factors[-1]:
        verdict, quiet = _within_measured_noise(ref, phi, again, step, analytic, rounding,
                                                allowance, verdict, todo, directional)
        settled, todo = settled | quiet, todo & ~quiet
    if todo.any() and per_element:
        verdict, near_zero = _relative_levels(fb, ref, calls, u, todo, analytic, rounding,
                                              allowance, verdict)
        settled |= near_zero
    return verdict, settled


def _within_measured_noise(ref: Reference, phi: Mapping[int, np.ndarray],
                           finest: Mapping[int, np.ndarray], step: float, analytic: np.ndarray,
                           rounding: Any, allowance: Any, verdict: LineVerdict,
                           todo: np.ndarray, directional: bool) -> tuple[LineVerdict, np.ndarray]:
    """Lines no shorter step settled, judged again at the step h with their evaluations'
    rounding as measured: at the finest step (1e-12 h) the function moves by nothing a
    difference could show, so its samples differ from a line by their rounding alone. Where
    that exceeds the assumed ``eps max(1, |F|) max(1, |x|)``, intermediates cancel: ``(exp(x)
    - 1) / x`` at 1e-3 rounds by eps / x, a thousand times more, and its derivative read
    0.500519774 against 0.50051977 +- 3e-10. A pass only: cancellation is no bug, and a
    wrong derivative misses by more than the measured noise over h."""
    with np.errstate(invalid="ignore", over="ignore"):
        slope = np.where(np.isfinite(verdict.numerical), verdict.numerical, 0.0)
        noise = np.max([np.abs(np.asarray(finest[t]) - np.asarray(finest[0]) - t * step * slope)
                        for t in (-2, -1, 1, 2)], axis=0)
        louder = todo & np.isfinite(noise) & (noise > rounding)
    if not louder.any():
        return verdict, louder
    again = ref.judge(phi, analytic, np.where(louder, noise, rounding), allowance,
                      directional=directional)
    quiet = louder & again.ok & ~again.kink
    return replace(verdict, ok=verdict.ok | quiet,
                   numerical=np.where(quiet, again.numerical, verdict.numerical),
                   bound=np.where(quiet, again.bound, verdict.bound)), quiet


def _across_zero(fb: ForwardBackward, u: dict[int, np.ndarray], step: float) -> np.ndarray:
    """Per element of the one param of ``u``: where samples up to 2 ``step`` along it reach
    0 or beyond from a nonzero x."""
    (k, s), = u.items()
    x = np.abs(np.asarray(fb.params[k].value, dtype=float))
    return (x > 0) & (x <= 2 * step * np.abs(s))


#: Steps relative to |x| itself, for elements with 0 < |x| < 1 that the ladder above left
#: unsettled: h |x| and 1000 times shorter.
RELATIVE_LEVELS = (1.0, 1e-3)


def _relative_levels(fb: ForwardBackward, ref: Reference, calls: Evaluations,
                     u: dict[int, np.ndarray], todo: np.ndarray, analytic: np.ndarray,
                     rounding: Any, allowance: Any, verdict: LineVerdict
                     ) -> tuple[LineVerdict, np.ndarray]:
    """Per element, where 0 < |x| < 1 and the line is not settled: the steps of
    :data:`RELATIVE_LEVELS` times h |x| (not h max(1, |x|)), which may settle a pass only.
    A function whose own scale at x is |x| (log and the derivative of sqrt toward 0: a
    double-where ``log`` at 1e-14, whose step of 6e-6 straddles 0 and whose ladder ends at
    6e-18) is resolved only by steps shorter than |x|; a step that short resolves nothing
    where phi's differences do not stand out of its rounding (``_resolved``), so a
    derivative too small to show there is not passed by it."""
    (k, s), = u.items()
    signed = np.asarray(fb.params[k].value, dtype=float)
    x = np.abs(signed)
    todo = todo & (x > 0) & (x < s)
    settled = np.zeros(np.shape(todo), dtype=bool)
    if not todo.any():
        return verdict, settled
    along = np.where(todo, signed, s)  # t < 0 moves toward 0
    ratio = along / s  # analytic and allowance are along s; along ``along`` they scale so
    # An evaluation near 0 rounds by eps of the values it is made of, not of max(1, |F|): F
    # itself and the moved input's share x g (sqrt at 1e-300 is 1e-150). Where cancelling
    # intermediates round by more (exp(x) - 1), the differences are noise against this
    # bound and the levels disagree: short of rounding, a level only settles nothing.
    rounding = np.where(todo, ref.eps_ref * np.abs(fb.v) * (np.abs(ref.f0) + x * np.abs(
        analytic / s)), rounding)
    levels = []
    for factor in RELATIVE_LEVELS:
        step = ref.h * factor
        phi = {t: np.asarray(fb.v * f) for t, f in calls.samples({k: along}, step=step).items()}
        # Toward 0, samples below the smallest normal are read as 0 (a singular point):
        # forward differences there (at the smallest normals of float64 itself).
        below = todo & (x * (1 - 2 * step) < _smallest_normal(ref.dtype))
        for t in (-2, -1):
            phi[t] = np.where(below, np.nan, phi[t])
        resolved = todo & _resolved(phi, step, rounding)
        levels.append((resolved, ref.judge(phi, analytic * ratio, rounding,
                                           allowance * np.abs(ratio), directional=False,
                                           step=step)))
    (first, longer), (second, shorter) = levels
    with np.errstate(invalid="ignore"):  # central passes only, as above: no kink's window
        settled = (first & second & longer.ok & shorter.ok & ~longer.kink & ~shorter.kink
                   & (np.abs(shorter.numerical - longer.numerical)
                      <= shorter.bound + longer.bound))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        numerical, bound = shorter.numerical / ratio, shorter.bound / np.abs(ratio)
    return replace(verdict, ok=verdict.ok | settled,
                   numerical=np.where(settled, numerical, verdict.numerical),
                   bound=np.where(settled, bound, verdict.bound)), settled


def _one_sided(phi: Mapping[int, np.ndarray]) -> np.ndarray:
    """Where only one side's samples are finite (a domain's end). A one-sided quotient next
    to a singularity (sqrt(x + 1e-8) at x = 0, at a step of 6e-6) has a ratio D(2h) / D(h)
    near 2^(-1/2) however far the step outruns the function's scale, so any failing
    one-sided line is tried at shorter steps: they can only settle it where two of them
    resolve the derivative and agree."""
    central = np.isfinite(np.asarray(phi[-1])) & np.isfinite(np.asarray(phi[1]))
    return ~central & np.isfinite(np.asarray(phi[0]))


def _unresolved(phi: Mapping[int, np.ndarray], h: float, rounding) -> np.ndarray:
    """Where D(2h) / D(h) is below :data:`UNRESOLVED_RATIO` by more than the samples'
    rounding can make of it (finite samples only)."""
    near, far, noise = _quotients(phi, h, rounding)
    with np.errstate(invalid="ignore"):
        return np.asarray((far < UNRESOLVED_RATIO * near) & (near - far > noise))


def _resolved(phi: Mapping[int, np.ndarray], h: float, rounding) -> np.ndarray:
    """Where D(2h) / D(h) lies within a factor 1 / :data:`UNRESOLVED_RATIO` of 1 and D(h)
    stands out of the samples' rounding: a step whose differences are rounding resolves
    nothing, and one whose 2h sample meets a feature the h sample misses neither."""
    near, far, noise = _quotients(phi, h, rounding)
    with np.errstate(invalid="ignore"):
        return np.asarray((far >= UNRESOLVED_RATIO * near)
                          & (UNRESOLVED_RATIO * far <= near) & (near > noise)
                          & _same_direction(phi))


def _same_direction(phi: Mapping[int, np.ndarray]) -> np.ndarray:
    """Where D(h) and D(2h) have one sign: a step spanning the function's own scale can
    give them equal sizes and opposite signs (sin over about a period: sin(h)/h at h = 3.2
    and 6.4 is -0.018 and +0.018), which resolves nothing."""
    m2, m1, z, p1, p2 = (np.asarray(phi[k], dtype=float) for k in (-2, -1, 0, 1, 2))

    def agree(a, b):  # signs, not a product: differences of 1e-161 multiply to 0
        return (np.sign(a) == np.sign(b)) & (a != 0)

    with np.errstate(invalid="ignore", over="ignore"):
        central = agree(p1 - m1, p2 - m2)
        forward = agree(p1 - z, p2 - z)
        backward = agree(z - m1, z - m2)
        both = np.isfinite(p1 - m1) & np.isfinite(p2 - m2)
        ahead = np.isfinite(p1) & np.isfinite(p2)
    return np.where(both, central, np.where(ahead, forward, backward))


def _quotients(phi: Mapping[int, np.ndarray], h: float, rounding):
    """|D(h)|, |D(2h)| (NaN where a sample is not finite) and what rounding may make of
    them: each is a difference of two samples rounded by ``rounding`` (2 rho), over 2h or
    more, so at most rho / h; a bound on rounding carries ``SAFETY`` (see ``estimate``).
    Where one side is not finite, the other side's quotients (phi(+-h) - phi(0)) / h and
    (phi(+-2h) - phi(0)) / 2h, whose rounding is twice as large."""
    m2, m1, z, p1, p2 = (np.asarray(phi[k], dtype=float) for k in (-2, -1, 0, 1, 2))
    with np.errstate(invalid="ignore", over="ignore"):
        near = np.abs(p1 - m1) / (2 * h)
        far = np.abs(p2 - m2) / (4 * h)
        central = np.isfinite(near) & np.isfinite(far)
        if not central.all():
            forward = np.isfinite(p1) & np.isfinite(p2)
            near = np.where(central, near, np.abs(np.where(forward, p1, m1) - z) / h)
            far = np.where(central, far, np.abs(np.where(forward, p2, m2) - z) / (2 * h))
            rounding = np.where(central, rounding, 2 * np.asarray(rounding))
    return near, far, SAFETY * np.asarray(rounding) / h


@dataclass(frozen=True)
class WrongFormula:
    """Low-precision lines whose formula fails in float64 too (:func:`wrong_formula`)."""

    wrong: np.ndarray      # bool, per line
    exact: np.ndarray      # the float64 twin's derivative along each line
    allowance: np.ndarray  # the analytic side's allowance it was held to (beyond the bound)


def wrong_formula(fb: ForwardBackward, ref: Reference, calls: Evaluations,
                  u: dict[int, np.ndarray], axes: tuple[int, ...] | None,
                  phi: Mapping[int, np.ndarray], analytic: np.ndarray, rounding: Any,
                  terms: Any, verdict: LineVerdict, passed: np.ndarray,
                  project: Callable[[list], np.ndarray], directional: bool = True,
                  exact_at: Callable[[np.ndarray], np.ndarray | None] | None = None
                  ) -> WrongFormula | None:
    """Of the low-precision lines that ``passed`` outside the numerical bound (on the low
    dtype's allowance), those whose gradient formula is wrong: None where there is none.
    Lines are per row or whole along ``u`` (summed over ``axes``), or per element (``axes``
    ``()``, ``directional`` False, ``terms`` 0; there ``exact_at(mask)`` may give the twin's
    values at the masked elements alone, in their order, from a call on their rows: where
    they all pass, the whole input's twin is not needed).

    In a low dtype a weight's analytic side is allowed the worst-case rounding of every term
    it could be summed from (:func:`directional_allowance`), a product of sums that grows
    with max(1, |x|)^2: a weight gradient off by x0.5 passed in bfloat16, x1.1 in float16.
    The float64 twin runs the same code on the same inputs and weights, so its gradient
    ``exact`` is the formula's value without the low dtype's rounding, and the analytic
    value's distance from it is that rounding, measured. A line is wrong where both hold:

    * the twin's derivative fails the line as a float64 check at this input would judge it
      (the same samples, kink rule and shorter steps; float64's allowance: ``ANALYTIC_ULPS``
      roundings of its |g| |u| terms and of ``terms``, the directional derivative's terms
      that :func:`terms_allowance` measured, at float64's eps);
    * the analytic value misses the numerical one by more than the bound plus that
      allowance and its own distance from ``exact``, and by more than the bound plus
      ``ANALYTIC_ULPS`` roundings of its own |g| |u| terms (what every analytic chain is
      allowed, in any dtype): then the miss is not the low dtype's rounding (by the
      triangle inequality the twin misses it by more than the bound too). Lines within the
      latter are not looked at: no twin is computed where none could fail;

    and both hold again at a step ``REFINEMENTS[0]`` times shorter. A wrong formula misses
    by the same amount at every step, while a difference quotient's truncation error shrinks
    with the step squared: at the coarse, tiny or subnormal values a low dtype's inputs hold
    (a row of norm 9e-5 that the step moves by 7%), the Richardson bound at h alone misjudged
    a right float64 formula (``tf.math.l2_normalize`` in bfloat16).

    The same holds per element, whose low-dtype allowance scales with max(1, |x|, |f|): a
    derivative 10% wrong passed in bfloat16 wherever |x| exceeded a few units.

    A gradient wrong in the low dtype alone is far from ``exact`` by its own error, so this
    rule leaves it where it was (the floor, the windows, ``explained_by_rounding``)."""
    own = ANALYTIC_ULPS * fb.eps * _sizes(project, [p.grad for p in fb.params], u)
    with np.errstate(invalid="ignore"):
        loose = passed & (_abs(analytic - verdict.numerical) > verdict.bound + own)
    if not np.any(loose):
        return None
    if exact_at is not None and _passes_at(ref, phi, rounding, loose, exact_at(loose)):
        return None
    try:
        grads = calls.twin.get(fb, ref)
        exact = np.asarray(project(grads), dtype=float)
        sizes = _sizes(project, grads, u)
    except Exception:  # noqa: BLE001 - no twin gradient to measure against: nothing claimed
        return None
    eps64 = machine_eps("float64")
    allowance = np.maximum(ANALYTIC_ULPS * eps64 * sizes, np.asarray(terms) * (eps64 / fb.eps))
    twin = ref.judge(phi, exact, rounding, allowance, directional=directional)
    twin, _ = refined(fb, ref, calls, u, axes, phi, exact, rounding, allowance, twin,
                      directional=directional)
    with np.errstate(invalid="ignore"):
        held = np.maximum(own, allowance + _abs(analytic - exact))
    tight = ref.judge(phi, analytic, rounding, held, directional=directional)
    wrong = loose & ~twin.ok & ~tight.ok
    if np.any(wrong):  # a wrong formula misses at every step; truncation shrinks with it
        step = ref.h * REFINEMENTS[0]
        again = {t: np.asarray((fb.v * f).sum(axis=axes))
                 for t, f in calls.samples(u, step=step).items()}
        wrong &= ~ref.judge(again, exact, rounding, allowance, directional=directional,
                            step=step).ok
        wrong &= ~ref.judge(again, analytic, rounding, held, directional=directional,
                            step=step).ok
    if not np.any(wrong):
        return None
    return WrongFormula(wrong, exact, held)


def _passes_at(ref: Reference, phi: Mapping[int, np.ndarray], rounding: Any,
               where: np.ndarray, exact: np.ndarray | None) -> bool:
    """Whether the twin's per-element values ``exact`` at ``where`` (None: unknown) all pass
    the central test there with float64's allowance: then no line there is wrong (shorter
    steps and the rest only ever rescue a failing one)."""
    if exact is None:
        return False
    samples = {t: np.asarray(f)[where] for t, f in phi.items()}
    allowance = ANALYTIC_ULPS * machine_eps("float64") * np.abs(exact)
    rho = np.broadcast_to(np.asarray(rounding, dtype=float), where.shape)[where]
    return bool(ref.judge(samples, exact, rho, allowance).ok.all())


def _sizes(project: Callable[[list], np.ndarray], grads: list,
           u: dict[int, np.ndarray]) -> np.ndarray:
    """The line's sum of |g| |u| (``project`` of |g| sign(u))."""
    return _abs(project([g if g is None or k not in u else np.abs(g) * np.sign(u[k])
                         for k, g in enumerate(grads)]))


def _abs(a) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=float))
