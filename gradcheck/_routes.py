"""Step 3 of a check: the analytic VJP against finite differences of the reference.

Each param goes along the cheapest exact route, a constant number of reference calls whatever
its size: per element for elementwise targets (after a random probe confirms the Jacobian is
diagonal), per batch row for batch-independent ones (after a probe confirms rows are
independent), and along one random direction for the rest (weights, broadcast parameters).

The functions read the core's run (``_check._Run``): its params with their analytic gradients,
the cotangent ``v``, the reference (``run.evaluate``, ``run.samples``, ``run.rounding``) and the
step ``h``. They set nothing on it: what they find besides findings is returned (:class:`Compared`
from :func:`compare`, the per-element samples from :func:`confirm_elementwise`), and the run
keeps it. The probes and the mismatch report are called through the run (``run.
confirm_elementwise``, ``run.report_mismatch``) so that a sweep's run can keep what they find.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ._arrays import _abs, _abs_diff, _all_finite, _f64, _index, _signed
from ._conditioning import explained_by_rounding
from ._numerics import (
    ANALYTIC_ULPS,
    KINK_RELATIVE,
    SAFETY,
    analytic_allowance,
    estimate,
    judge_lines,
    kinks,
    rounding_window,
    within_secants,
)

if TYPE_CHECKING:
    from ._check import _Run


@dataclass(frozen=True)
class Compared:
    """What step 3 found besides its findings, for the run to keep."""

    #: The per-element route applied (to the params whose samples ``run.confirm_elementwise``
    #: gave the run).
    elementwise: bool
    #: Some entry was not judged by central differences within their bound (a kink, one-sided
    #: or unjudged samples, NaN/Inf output): ``_linearity.compare_then_linearity`` reads it.
    inconclusive: bool


def compare(run: _Run) -> Compared:
    """Step 3 of a check: each usable param along its route; a None gradient checked for
    a dependence it hides."""
    if not _all_finite(run.y64):
        return Compared(False, True)  # reported above; finite differences through NaN say nothing
    usable = [k for k, p in enumerate(run.params) if p.grad is not None]
    diag = [k for k in usable if run.elementwise is not False
            and not run.params[k].is_weight and run.params[k].value.shape == run.f0.shape]
    rest = [k for k in usable if k not in diag]
    if diag and not run.confirm_elementwise(diag):
        rest, diag = rest + diag, []
    strict = True  # every entry judged by central differences so far
    for k in diag:
        strict &= check_diagonal(run, k, run.diag[k])
    # Batch rows: the primary input and inputs of its very shape. A parameter whose first
    # axis merely has the batch size (4 features, batch of 4) is not batched.
    primary = run.params[0]
    rows = [k for k in rest if _has_batch_rows(run) and not run.params[k].is_weight
            and not primary.is_weight and run.params[k].value.shape == primary.value.shape
            and run.params[k].value.ndim and _batch(run) >= 1
            and run.params[k].value.shape[0] == _batch(run)]
    if rows and _batch(run) >= 2 and not run.confirm_batch_independent(rows):
        rows = []
    if rows:
        strict &= check_rows(run, rows)
    joint = [k for k in rest if k not in rows]
    if joint:
        strict &= check_joint(run, joint)
    for k, p in enumerate(run.params):
        if p.grad_missing:
            check_disconnected(run, k)
    return Compared(bool(diag), not strict)


def _has_batch_rows(run) -> bool:
    """Declared batch-independent, or not declared and the output keeps the batch axis."""
    if run.batch_independent is None:
        x = run.params[0].value
        return bool(x.ndim and run.f0.ndim and run.f0.shape[0] == x.shape[0])
    return run.batch_independent


def _batch(run) -> int:
    return run.f0.shape[0] if run.f0.ndim else 0


def _override(run, numerical: np.ndarray) -> np.ndarray | None:
    if run.rtol is None and run.atol is None:
        return None
    return (run.atol or 0.0) + (run.rtol or 0.0) * np.abs(numerical)


def judge(run, samples, analytic, rounding, allowance, directional=False,
          estimated=None):
    """Judge line problems; ``directional`` lines (sums over several coordinates) that
    cross a kink are inconclusive and pass: the one-sided slopes of a sum of kinks need not
    bracket v.J.u for the subgradient autodiff picked in each coordinate (leaky ReLU at 0
    along a random direction). Fuzzing moves on to other inputs. ``verdict.strict``: every
    entry judged by central differences within their bound (see
    ``_linearity.compare_then_linearity``)."""
    verdict = judge_lines(samples, run.h, analytic, rounding, allowance, estimated)
    if directional:
        verdict.ok = verdict.ok | verdict.kink
        if run.cut_by_domain:  # one-sided at the domain's end: a kink cannot be told
            verdict.ok |= ~(np.isfinite(samples[-1]) & np.isfinite(samples[1]))
    noise = run.noise_relative  # a seeded noisy target: _determinism.py
    if noise:
        with np.errstate(invalid="ignore"):
            verdict.ok |= np.abs(verdict.numerical - analytic) <= noise * np.abs(
                verdict.numerical)
    tol = _override(run, verdict.numerical)
    if tol is not None:
        with np.errstate(invalid="ignore"):
            verdict.ok = (~verdict.finite | verdict.kink
                          | (np.abs(verdict.numerical - analytic) <= tol))
    return verdict

# -- elementwise: per element, after a probe confirms the Jacobian is diagonal


def confirm_elementwise(run, diag: list[int]) -> tuple[bool, dict[int, tuple]]:
    """Perturbing all elements at once gives v_j * sum_k J_jk s_k; only a diagonal J makes
    that v_j J_jj s_j. A random direction u tells: v_j (J u)_j must equal
    v_j J_jj u_j = N_j u_j / s_j for every element j. Returns whether it holds, and the
    samples along each element (:func:`sample_diagonals`), which the per-element route
    judges.

    The diagonal's samples come from one stacked call where the reference allows it
    (``_Run.stacked``), the probe's two from separate calls: a stacked call that does not stand
    for separate ones (a target reading its batch, which the rider row did not catch) can
    only fail the probe. Before a declared target's ``not_elementwise`` stands, the diagonal
    is sampled again with separate calls."""
    lines, stacked = sample_diagonals(run, diag, stacked=True)
    draws = {k: _signed(run.rng, run.params[k].value.shape) for k in diag}  # u / s
    if run.f0.size <= 1:
        # One output element: each param's Jacobian is that one entry, which its samples
        # measure; the probe's J u is their sum. (Drawn anyway: later draws stay the same.)
        return True, lines
    found = _probe(run, diag, draws, lines)
    if found is not None and stacked and run.elementwise is True:
        lines, _ = sample_diagonals(run, diag, stacked=False)
        found = _probe(run, diag, draws, lines)
    if found is None:
        return True, lines
    if run.elementwise is None:
        return False, lines  # not declared: the probe only chose the route, nothing is promised
    bad, probe, predicted = found
    j = int(np.argmax(bad))
    run.add("not_elementwise",
            f"declared elementwise, but output element {_index(j, run.f0.shape)} depends "
            f"on other input elements: a random perturbation changed it by "
            f"{probe.flat[j] / run.v.flat[j]:.6g} per unit step where a "
            f"diagonal Jacobian predicts {predicted.flat[j] / run.v.flat[j]:.6g}; declare "
            f"elementwise=False", index=list(_index(j, run.f0.shape)),
            mismatched=int(bad.sum()), total=int(bad.size))
    return False, lines


def sample_diagonals(run, diag: list[int], stacked: bool) -> tuple[dict[int, tuple], bool]:
    """Per param ``k`` of ``diag``, ``(s, phi, estimate, rho)``: the samples along
    s = max(1, |x|) per element, their estimate and rounding; and True when a stacked call
    gave them."""
    lines = {}
    calls = run.stacked_calls
    for k in diag:
        p = run.params[k]
        s = _abs(p.value)
        np.maximum(s, 1.0, out=s)
        smp = run.samples({k: s}, stacked=stacked)
        near_edge = False
        if not (_all_finite(smp[-2]) and _all_finite(smp[2])):
            near_edge = ~(np.isfinite(smp[-2]) & np.isfinite(smp[2])) & (np.abs(p.value) < 1)
            for side in (-2, 2):  # the declared domain's end: one-sided, same step
                left = run.outside_domain(p, p.value + side * run.h * s)
                near_edge = near_edge if left is None else near_edge & ~left
        if np.any(near_edge):
            # Next to a domain end (sqrt, log near 0) a step of max(1, |x|) leaves the domain
            # or outruns the function's own scale |x|: step relative to |x| there instead.
            s = np.where(near_edge, np.maximum(np.abs(p.value), np.finfo(float).tiny), s)
            smp = run.samples({k: s}, stacked=stacked)
        phi = {t: run.v * smp.pop(t) for t in list(smp)}  # each sample freed once used
        rho = run.rounding((), s)
        lines[k] = (s, phi, estimate(phi, run.h, rho), rho)
    return lines, run.stacked_calls > calls


def _probe(run, diag: list[int], draws: dict[int, np.ndarray], lines: dict[int, tuple]):
    """The probe along u = draws * s (``lines``: the diagonal's samples, as
    :func:`sample_diagonals` gives them): None where it agrees with the diagonal, else
    (the elements that disagree, the probe, the prediction)."""
    ratio = {}
    for k in diag:  # an element whose probe step would leave the domain stays put, and
        # so does one whose diagonal has no central estimate (one-sided at a domain end)
        finite = np.isfinite(lines[k][2][0])
        ratio[k] = draws[k] if finite.all() else np.where(finite, draws[k], 0.0)
        p = run.params[k]
        if run.domain is None or p.is_weight or p.arg_index != 0:
            continue  # no domain to leave (see outside_domain)
        reach = run.h * np.abs(ratio[k]) * lines[k][0]
        for moved in (p.value - reach, p.value + reach):
            outside = run.outside_domain(p, moved)
            if outside is not None:
                ratio[k] = np.where(outside, 0.0, ratio[k])
    u = {k: ratio[k] * lines[k][0] for k in diag}
    # Two samples suffice: along u the truncation error is that of the diagonal difference
    # scaled by (u/s)^3 (it is c (step)^3 h^2 with step u instead of s), and the diagonal's
    # own error enters the prediction scaled by |u/s|; plus the probe's rounding rho/h.
    probe = np.subtract(run.evaluate(u, run.h), run.evaluate(u, -run.h))
    probe *= run.v
    probe /= 2 * run.h
    with np.errstate(invalid="ignore"):  # an element left put predicts 0, whatever its slope
        predicted = _sum(_unless_put(lines[k][2][0] * ratio[k], ratio[k]) for k in diag)
        allowance = _sum(_unless_put(_cubic(lines[k][2][1], r), r)
                         for k, r in ratio.items())
    scale = (lines[diag[0]][0] if len(diag) == 1 else
             np.max([lines[k][0] for k in diag], axis=0))
    with np.errstate(invalid="ignore"):
        tolerance = run.rounding((), scale)
        tolerance *= SAFETY / run.h
        tolerance += allowance
        if (_abs_diff(probe, predicted) <= tolerance).all():
            return None
        bad = ~(np.abs(probe - predicted) <= np.nan_to_num(tolerance, nan=np.inf))
    bad &= np.isfinite(probe)
    if bad.any():
        # At a kink the all-ones and the random step straddle it in different proportions:
        # their central differences need not scale with the step. Not evidence of coupling.
        for k in diag:
            _, phi, _, rho = lines[k]
            bad &= ~kinks(phi, rho)
    return (bad, probe, predicted) if bad.any() else None


def _unless_put(values: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """``values``, 0 where the element is left put (``ratio`` 0)."""
    put = ratio == 0
    return np.where(put, 0.0, values) if put.any() else values


def _cubic(error: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``error * |r| * (1 + r * r)``: the diagonal's error carried to the probe's step."""
    out = _abs(r)
    out *= error
    square = np.multiply(r, r)
    square += 1
    out *= square
    return out


def _sum(arrays) -> np.ndarray:
    """The sum of one or more arrays (the first is not copied when it is alone)."""
    arrays = list(arrays)
    return arrays[0] if len(arrays) == 1 else sum(arrays)


def check_diagonal(run, k: int, line: tuple) -> bool:
    """Param ``k`` per element, from ``line`` = ``(s, phi, estimate, rho)``, its samples
    along each element (:func:`confirm_elementwise`); True where every element was judged by
    central differences."""
    p = run.params[k]
    s, phi, estimated, rho = line
    analytic = p.grad * s  # derivative along t of x + t*s: grad . s elementwise
    magnitude = 1.0
    if run.low_precision:  # max(1, |x|, |f|)
        magnitude = _abs(p.value)
        np.maximum(magnitude, 1.0, out=magnitude)
        np.maximum(magnitude, np.abs(run.f0), out=magnitude)
    allowance = analytic_allowance(analytic, run.eps, run.low_precision, magnitude,
                                   run.tiny, run.v, s)
    verdict = judge(run, phi, analytic, rho, allowance, estimated=estimated)
    ok = verdict.ok
    if ok.all():
        return bool(verdict.strict)
    if run.low_precision:
        ok = ok | within_rounding_window(run, k, analytic / s, verdict, allowance / s, line)
    if run.low_precision and not ok.all():
        ok = ok | _explained(run, lambda g: g[k] * s, analytic, verdict, elementwise=True)
    run.report_mismatch(p, ~ok, analytic / s, verdict.numerical / s, verdict.bound / s,
                        allowance / s)
    return bool(verdict.strict)


def within_rounding_window(run, k, analytic, verdict, allowance, line) -> np.ndarray:
    """Accept a low-precision derivative that equals some secant slope of the reference
    over the window of inputs indistinguishable in the low dtype (see
    :func:`rounding_window` and :func:`within_secants`)."""
    p = run.params[k]
    width = rounding_window(run.eps, run.h, p.value, run.f0,
                            np.abs(verdict.numerical / run.v))
    both = run.stacked({k: width}, (-1.0, 1.0))  # one call where the route allows it
    left, right = both if both is not None else (run.evaluate({k: width}, t) for t in (-1.0, 1.0))
    left, right = run.v * left, run.v * right
    s, phi, _, _ = line
    # f'' from the second difference already sampled: phi(h) - 2 phi(0) + phi(-h) =
    # v f'' (h s)^2.
    curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / (run.h * s) ** 2
    return within_secants(analytic, run.v * run.f0, left, right, width,
                          verdict.numerical / s, verdict.bound / s, allowance, curvature)

def _explained(run, project, analytic, verdict, elementwise: bool = False) -> np.ndarray:
    """:func:`_conditioning.explained_by_rounding` on the run's records."""
    return explained_by_rounding(run.first_order_record(), run.reference_record(),
                                 run.twin_gradients, project, analytic, verdict, run.entries,
                                 elementwise)

# -- batch rows: per row, after a probe confirms rows are independent


def confirm_batch_independent(run, rows: list[int]) -> bool:
    """Perturb row 0 only: no other output row may move (forward), and a cotangent on row 0
    only may reach no other input row (backward)."""
    u = {}
    for k in rows:
        d = np.zeros_like(run.params[k].value)
        d[0] = _signed(run.rng, d[0].shape) * np.maximum(1.0, np.abs(run.params[k].value[0]))
        u[k] = d
    delta = run.evaluate(u, run.h) - run.evaluate(u, -run.h)
    # Rows other than 0 see identical inputs: only rounding (2 evaluations) may differ.
    tol = SAFETY * 2 * run.eps_ref * np.maximum(1.0, np.abs(run.f0))
    moved = (np.abs(delta) > tol)[1:]
    found = None
    if moved.any():
        j = int(np.argmax(moved)) + int(np.prod(run.f0.shape[1:], dtype=int))
        found = ("forward", _index(j, run.f0.shape), delta.flat[j] / (2 * run.h))
    else:
        v0 = np.zeros_like(run.v)
        v0[0] = run.v[0]
        sources = [run.args[run.params[k].arg_index] for k in rows]
        grads = run.tape.gradient(run.y, sources,
                                  output_gradients=tf.constant(v0, run.y.dtype))
        for k, g in zip(rows, grads):
            if g is None:
                continue
            g = _f64(g)
            scale = ANALYTIC_ULPS * run.eps * max(1.0, float(np.max(np.abs(g[0]), initial=0)))
            leak = np.abs(g[1:]) > scale
            if leak.any():
                j = int(np.argmax(leak)) + int(np.prod(g.shape[1:], dtype=int))
                found = ("backward", _index(j, g.shape), g.flat[j])
                break
    if found is None:
        return True
    if run.batch_independent is None:
        return False  # not declared: use the joint route, nothing was promised
    side, idx, size = found
    what = ("output row {r} changed when only input row 0 was perturbed" if side == "forward"
            else "the gradient reached input row {r} from a cotangent on output row 0 only")
    run.add("batch_coupling",
            f"rows are coupled across the batch axis: {what.format(r=idx[0])} "
            f"(at index {idx}, {size:.6g} per unit step); a reduction over axis 0? If the "
            f"coupling is intended, declare batch_independent=False",
            direction=side, index=list(idx), size=float(size))
    return False


def check_rows(run, rows: list[int]) -> bool:
    """The params ``rows`` per batch row, along one random direction; True where every row
    was judged by central differences."""
    u = {k: _signed(run.rng, run.params[k].value.shape) * np.maximum(
        1.0, np.abs(run.params[k].value)) for k in rows}
    axes = tuple(range(1, run.f0.ndim))
    phi = {t: (run.v * f).sum(axis=axes) for t, f in run.samples(u).items()}
    analytic = sum((run.params[k].grad * u[k]).reshape(_batch(run), -1).sum(axis=1)
                   for k in rows)
    scale = np.max([np.maximum(1.0, np.abs(run.params[k].value)).reshape(_batch(run), -1)
                    .max(axis=1) for k in rows], axis=0)
    allowance = sum(directional_allowance(run, k, u[k], row_axes=True) for k in rows)
    rounding = run.rounding(axes, 1.0) * scale
    verdict = judge(run, phi, analytic, rounding, allowance, directional=True)
    if run.low_precision and not verdict.ok.all():
        verdict.ok = verdict.ok | within_line_window(run, u, axes, analytic, phi, verdict,
                                                     rounding, allowance)
    if run.low_precision and not verdict.ok.all():
        verdict.ok = verdict.ok | _explained(run, lambda g: sum(
            (g[k] * u[k]).reshape(_batch(run), -1).sum(axis=1) for k in rows),
            analytic, verdict)
    if not verdict.ok.all():
        b = int(np.argmax(~verdict.ok))
        run.add("gradient_mismatch",
                f"gradient mismatch in batch row {b}: along a random direction, analytic "
                f"({run.analytic}) {analytic[b]:.9g} vs numerical (finite differences) "
                f"{verdict.numerical[b]:.9g} ± {verdict.bound[b] + allowance[b]:.3g}; "
                f"{int((~verdict.ok).sum())} / {verdict.ok.size} rows mismatched",
                row=b, analytic=analytic[b], numerical=verdict.numerical[b],
                bound=verdict.bound[b] + allowance[b],
                params=[run.params[k].label for k in rows])
    return bool(verdict.strict)


def directional_allowance(run, k: int, u: np.ndarray, row_axes: bool = False):
    """The analytic side's rounding, projected on u: ANALYTIC_ULPS roundings of each |g|
    entry, and in a low dtype also of the terms the gradient is summed from.

    A batch row's gradient entry sums terms of at most |dy| * max(1, |x|) within the row
    (softmax-like reductions weight them by probabilities). A weight or broadcast parameter
    sums over every output it feeds, each term as large as |dy| * max(1, |x|, |f|) times
    one more max(1, |x|): a parameter multiplies the input before the nonlinearity
    (sigmoid(b x), W x), so its chain rule carries that factor (d/db x sigmoid(b x) =
    x^2 s(1 - s), with s(1 - s) rounding to 0 once s rounds to 1). Values below the dtype's
    smallest normal number are unresolvable: |dy| * tiny per term."""
    p = run.params[k]
    per = np.abs(p.grad) * np.abs(u)
    if run.low_precision and row_axes:
        vmax = np.abs(run.v).reshape(_batch(run), -1).max(axis=1)
        vmax = vmax.reshape((-1,) + (1,) * (p.value.ndim - 1))
        per = per + vmax * np.maximum(1.0, np.abs(p.value)) * np.abs(u)
    per = ANALYTIC_ULPS * run.eps * per
    if row_axes:
        return per.reshape(_batch(run), -1).sum(axis=1)
    total = per.sum()
    if run.low_precision:
        size = np.maximum(1.0, np.abs(run.f0))
        primary = run.params[0]
        lever = 1.0
        if not primary.is_weight:
            lever = max(1.0, float(np.max(np.abs(primary.value), initial=0.0)))
            if primary.value.shape == run.f0.shape:
                size = np.maximum(size, np.abs(primary.value))
        terms = np.abs(run.v) * (ANALYTIC_ULPS * run.eps * size * lever + run.tiny)
        total += np.abs(u).sum() * terms.sum()
    return total

# -- everything else: one random direction through all remaining params at once


def check_joint(run, joint: list[int]) -> bool:
    """The params ``joint`` together, along one random direction; True where the line was
    judged by central differences."""
    u = {k: _signed(run.rng, run.params[k].value.shape) * np.maximum(
        1.0, np.abs(run.params[k].value)) for k in joint}
    phi = {t: np.asarray((run.v * f).sum()) for t, f in run.samples(u).items()}
    analytic = np.asarray(sum(float((run.params[k].grad * u[k]).sum()) for k in joint))
    scale = max(float(np.max(np.maximum(1.0, np.abs(run.params[k].value)), initial=1.0))
                for k in joint)
    allowance = np.asarray(sum(directional_allowance(run, k, u[k]) for k in joint))
    rounding = run.rounding(None, scale)
    verdict = judge(run, phi, analytic, rounding, allowance, directional=True)
    if run.low_precision and not verdict.ok.all():
        verdict.ok = verdict.ok | within_line_window(run, u, None, analytic, phi, verdict,
                                                     rounding, allowance)
    if run.low_precision and not verdict.ok.all():
        verdict.ok = verdict.ok | _explained(
            run, lambda g: np.asarray(sum(float((g[k] * u[k]).sum()) for k in joint)),
            analytic, verdict)
    if not verdict.ok.all():
        labels = ", ".join(run.params[k].label for k in joint)
        run.add("gradient_mismatch",
                f"gradient mismatch for {labels}: along a random direction, analytic "
                f"({run.analytic}) {float(analytic):.9g} vs numerical (finite differences) "
                f"{float(verdict.numerical):.9g} ± {float(verdict.bound + allowance):.3g}",
                analytic=float(analytic), numerical=float(verdict.numerical),
                bound=float(verdict.bound + allowance),
                params=[run.params[k].label for k in joint])
    return bool(verdict.strict)


def within_line_window(run, u, axes, analytic, phi, verdict, rounding,
                       allowance) -> np.ndarray:
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
    width = max(ANALYTIC_ULPS * run.eps, run.h)
    ts = (-width, -width / 2, width / 2, width)
    # Per element (axes ()), the four evaluations in one stacked call where the route allows.
    found = run.stacked(u, ts) if axes == () else None
    if found is None:
        found = [run.evaluate(u, t) for t in ts]
    at = {0.0: phi[0], **{t: np.asarray((run.v * f).sum(axis=axes)) for t, f in zip(ts, found)}}
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
    curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / run.h ** 2
    slack = np.nan_to_num(verdict.bound, nan=0.0) + allowance + curvature * width / 2
    return kink | ((analytic >= lo - slack) & (analytic <= hi + slack))


def check_disconnected(run, k: int) -> None:
    """A None gradient is right only if the output does not depend on the param."""
    p = run.params[k]
    u = _signed(run.rng, p.value.shape) * np.maximum(1.0, np.abs(p.value))
    phi = {t: np.asarray((run.v * f).sum()) for t, f in run.samples({k: u}).items()}
    verdict = judge_lines(phi, run.h, np.asarray(0.0),
                          run.rounding(None, float(np.max(np.maximum(1, np.abs(p.value))))),
                          np.asarray(0.0))
    if not bool(verdict.ok):
        run.add("disconnected_gradient",
                f"the gradient for {p.label} is None, but the output depends on it "
                f"(directional derivative {float(verdict.numerical):.6g} ± "
                f"{float(verdict.bound):.3g}); a tf.stop_gradient, a .numpy() call, or a "
                f"custom gradient returning None for it?",
                param=p.label, numerical=float(verdict.numerical))

# ---- reporting helpers


def report_mismatch(run, p, bad, analytic, numerical, bound, allowance) -> None:
    if not bad.any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.abs(analytic - numerical) / (bound + allowance + 1e-300), -1)
    j = int(np.nanargmax(excess))
    idx = _index(j, numerical.shape)
    dy = run.v.flat[j]
    run.add("gradient_mismatch",
            f"gradient mismatch for {p.label} at index {idx}, x = "
            f"{p.value.flat[j]:.9g} ({run.dtype.name}): analytic ({run.analytic}) "
            f"{analytic.flat[j]:.9g} vs numerical (finite differences, "
            f"{run.ref_dtype.name}) {numerical.flat[j]:.9g} ± "
            f"{bound.flat[j] + allowance.flat[j]:.3g}, upstream dy = {dy:.4g} "
            f"(derivative {analytic.flat[j] / dy:.9g} vs {numerical.flat[j] / dy:.9g}); "
            f"{int(bad.sum())} / {bad.size} elements ({100 * bad.mean():.1f}%) mismatched",
            param=p.label, index=list(idx), x=p.value.flat[j], dy=dy,
            analytic=analytic.flat[j], numerical=numerical.flat[j],
            bound=bound.flat[j] + allowance.flat[j],
            mismatched=int(bad.sum()), total=int(bad.size))
