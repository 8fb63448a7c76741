"""Step 3 of a check: the analytic VJP against finite differences of the reference.

Each param goes along the cheapest exact route, a constant number of reference calls whatever
its size: per element for elementwise targets (after a random probe confirms the Jacobian is
diagonal), per batch row for batch-independent ones (after a probe confirms rows are
independent), and along one random direction for the rest (weights, broadcast parameters).

The functions take the core's results as records (``_records.py``), never its run
(``_check._Run``): step 1's pass (``fb``: params with analytic gradients, cotangent ``v``, the
run's random generator), step 2's reference (``ref``: output ``f0``, step ``h``, the core's
``judge``), the reference's evaluations along directions (``calls``, made by the run) and what
the caller declared (``declared``). They report findings through the ``add`` they are handed
and return the rest: :class:`Compared` (with the per-element samples), the probes' verdicts,
and the elements a per-element route rejects (:class:`Mismatch`; a sweep keeps them per value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from ._arrays import _abs, _abs_diff, _all_finite, _f64, _index, _signed
from ._conditioning import explained_by_rounding, unexplained_large_terms
from ._declared_gradient import analytic_source
from ._lines import (REFINEMENTS, WrongFormula, batch_size, directional_allowance,
                     low_precision, refined, terms_allowance, wrong_formula)
from ._mismatches import Mismatch, formula_clause, report_mismatch, shown_allowance
from ._numerics import (
    ANALYTIC_ULPS,
    SAFETY,
    LineVerdict,
    analytic_allowance,
    estimate,
    judge_lines,
    kinks,
)
from ._records import Add, Declared, Evaluations, ForwardBackward, Reference
from ._report import distinct_texts
from ._windows import Line, kinked_in_own_dtype, within_line_window, within_rounding_window

#: The VJP of step 1's output for a cotangent, for some params (indices): ``vjp(v, params)``,
#: on the recorded tape (no call of the target).
Vjp = Callable[[np.ndarray, Sequence[int]], list]


@dataclass(frozen=True)
class Compared:
    """What step 3 found besides its findings, for the run to keep."""

    #: The per-element route applied (to the params of ``samples``).
    elementwise: bool
    #: Some entry was not judged by central differences within their bound (a kink, one-sided
    #: or unjudged samples, NaN/Inf output): ``_linearity.compare_then_linearity`` reads it.
    inconclusive: bool
    #: The samples along each element of the params the per-element route sampled (whether
    #: or not its probe confirmed it), by index: empty where it sampled none.
    samples: Mapping[int, Line]


def compare(fb: ForwardBackward, ref: Reference, calls: Evaluations, declared: Declared, *,
            add: Add, vjp: Vjp) -> Compared:
    """Step 3 of a check: each usable param along its route; a None gradient checked for
    a dependence it hides."""
    if not _all_finite(fb.y64):
        return Compared(False, True, {})  # reported above; finite differences through NaN say nothing
    params = fb.params
    usable = [k for k, p in enumerate(params) if p.grad is not None]
    diag = [k for k in usable if declared.elementwise is not False
            and not params[k].is_weight and params[k].value.shape == ref.f0.shape]
    rest = [k for k in usable if k not in diag]
    lines: dict[int, Line] = {}
    if diag:
        confirmed, lines = confirm_elementwise(fb, ref, calls, declared, diag, add=add)
        if not confirmed:
            rest, diag = rest + diag, []
    strict = True  # every entry judged by central differences so far
    for k in diag:
        judged, mismatch = check_diagonal(fb, ref, calls, k, lines[k])
        if mismatch is not None:
            report_mismatch(fb, ref, mismatch, add=add)
        strict &= judged
    # Batch rows: the primary input and inputs of its very shape. A parameter whose first
    # axis merely has the batch size (4 features, batch of 4) is not batched.
    primary = params[0]
    batch = batch_size(ref)
    rows = [k for k in rest if _has_batch_rows(fb, ref, declared) and not params[k].is_weight
            and not primary.is_weight and params[k].value.shape == primary.value.shape
            and params[k].value.ndim and batch >= 1 and params[k].value.shape[0] == batch]
    if rows and batch >= 2 and not confirm_batch_independent(fb, ref, calls, declared,
                                                             rows, vjp=vjp, add=add):
        rows = []
    if rows:
        strict &= check_rows(fb, ref, calls, rows, add=add)
    joint = [k for k in rest if k not in rows]
    if joint:
        strict &= check_joint(fb, ref, calls, joint, add=add)
    for k, p in enumerate(params):
        if p.grad_missing:
            check_disconnected(fb, ref, calls, k, add=add)
    return Compared(bool(diag), not strict, lines)


def _has_batch_rows(fb: ForwardBackward, ref: Reference, declared: Declared) -> bool:
    """Declared batch-independent, or not declared and the output keeps the batch axis."""
    if declared.batch_independent is None:
        x = fb.params[0].value
        return bool(x.ndim and ref.f0.ndim and ref.f0.shape[0] == x.shape[0])
    return declared.batch_independent


def judge(samples, analytic, rounding, allowance, directional=False, estimated=None, *,
          h: float, cut_by_domain: bool = False, noise: float = 0.0,
          rtol: float | None = None, atol: float | None = None):
    """Judge line problems (``_numerics.judge_lines`` with the step ``h``); ``directional``
    lines (sums over several coordinates) that cross a kink are inconclusive and pass: the
    one-sided slopes of a sum of kinks need not bracket v.J.u for the subgradient autodiff
    picked in each coordinate (leaky ReLU at 0 along a random direction). Fuzzing moves on to
    other inputs. ``cut_by_domain``: some sample fell outside the declared domain; ``noise``:
    a seeded noisy target's relative allowance (``_determinism.py``); ``rtol``/``atol``: the
    caller's tolerance, replacing the derived one. ``verdict.strict``: every entry judged by
    central differences within their bound (see ``_linearity.compare_then_linearity``). The
    routes call it as ``ref.judge``: the run's ``_Run.verdict``, with the run's state."""
    verdict = judge_lines(samples, h, analytic, rounding, allowance, estimated)
    ok = verdict.ok
    if directional:
        ok = ok | verdict.kink
        if cut_by_domain:  # one-sided at the domain's end: a kink cannot be told
            ok |= ~(np.isfinite(samples[-1]) & np.isfinite(samples[1]))
    if noise:
        with np.errstate(invalid="ignore"):
            ok |= np.abs(verdict.numerical - analytic) <= noise * np.abs(verdict.numerical)
    if rtol is not None or atol is not None:
        tol = (atol or 0.0) + (rtol or 0.0) * np.abs(verdict.numerical)
        with np.errstate(invalid="ignore"):
            ok = (~verdict.finite | verdict.kink
                  | (np.abs(verdict.numerical - analytic) <= tol))
    return verdict if ok is verdict.ok else replace(verdict, ok=ok)

# -- elementwise: per element, after a probe confirms the Jacobian is diagonal


def confirm_elementwise(fb: ForwardBackward, ref: Reference, calls: Evaluations,
                        declared: Declared, diag: list[int], *,
                        add: Add) -> tuple[bool, dict[int, Line]]:
    """Perturbing all elements at once gives v_j * sum_k J_jk s_k; only a diagonal J makes
    that v_j J_jj s_j. A random direction u tells: v_j (J u)_j must equal
    v_j J_jj u_j = N_j u_j / s_j for every element j. Returns whether it holds, and the
    samples along each element (:func:`sample_diagonals`), which the per-element route
    judges.

    The diagonal's samples come from one stacked call where the reference allows it
    (``calls.stacked``), the probe's two from separate calls: a stacked call that does not
    stand for separate ones (a target reading its batch, which the rider row did not catch)
    can only fail the probe. Before a declared target's ``not_elementwise`` stands, the
    diagonal is sampled again with separate calls."""
    lines, stacked = sample_diagonals(fb, ref, calls, diag, stacked=True)
    draws = {k: _signed(fb.rng, fb.params[k].value.shape) for k in diag}  # u / s
    if ref.f0.size <= 1:
        # One output element: each param's Jacobian is that one entry, which its samples
        # measure; the probe's J u is their sum. (Drawn anyway: later draws stay the same.)
        return True, lines
    found = _probe(fb, ref, calls, declared, diag, draws, lines)
    if found is not None and stacked and declared.elementwise is True:
        lines, _ = sample_diagonals(fb, ref, calls, diag, stacked=False)
        found = _probe(fb, ref, calls, declared, diag, draws, lines)
    if found is None:
        return True, lines
    if declared.elementwise is None:
        return False, lines  # not declared: the probe only chose the route, nothing is promised
    bad, probe, predicted = found
    j = int(np.argmax(bad))
    seen, expected = distinct_texts(probe.flat[j] / fb.v.flat[j],
                                    predicted.flat[j] / fb.v.flat[j], 6)
    add("not_elementwise",
        f"declared elementwise, but output element {_index(j, ref.f0.shape)} depends "
        f"on other input elements: a random perturbation changed it by {seen} per unit step "
        f"where a diagonal Jacobian predicts {expected}; declare elementwise=False",
        index=list(_index(j, ref.f0.shape)),
        mismatched=int(bad.sum()), total=int(bad.size))
    return False, lines


def sample_diagonals(fb: ForwardBackward, ref: Reference, calls: Evaluations, diag: list[int],
                     stacked: bool) -> tuple[dict[int, Line], bool]:
    """Per param ``k`` of ``diag``, ``(s, phi, estimate, rho)``: the samples along
    s = max(1, |x|) per element, their estimate and rounding; and True when a stacked call
    gave them."""
    lines = {}
    before = calls.stacked_calls()
    for k in diag:
        p = fb.params[k]
        s = _abs(p.value)
        np.maximum(s, 1.0, out=s)
        smp = calls.samples({k: s}, stacked=stacked)
        at_ends = calls.steps_at_ends(p, s, smp)
        if at_ends is not None:
            s = at_ends
            smp = calls.samples({k: s}, stacked=stacked)
        phi = {t: fb.v * smp.pop(t) for t in list(smp)}  # each sample freed once used
        # An evaluation of F rounds as at any step, by eps max(1, |F|) max(1, |x|), not less
        # where the step is relative to a small |x|; the moved input itself rounds by
        # eps |x_j|, which moves phi by |x_j g_j|: the whole step, where it is that short.
        rho = calls.rounding((), np.maximum(np.abs(p.value), 1.0))
        rho = rho + ref.eps_ref * np.abs(p.value * p.grad)
        lines[k] = (s, phi, estimate(phi, ref.h, rho), rho)
    return lines, calls.stacked_calls() > before


def _probe(fb: ForwardBackward, ref: Reference, calls: Evaluations, declared: Declared,
           diag: list[int], draws: dict[int, np.ndarray], lines: dict[int, Line]):
    """The probe along u = draws * s (``lines``: the diagonal's samples, as
    :func:`sample_diagonals` gives them): None where it agrees with the diagonal, else
    (the elements that disagree, the probe, the prediction)."""
    ratio = {}
    for k in diag:  # an element whose probe step would leave the domain stays put, and
        # so does one whose diagonal has no central estimate (one-sided at a domain end)
        finite = np.isfinite(lines[k][2][0])
        ratio[k] = draws[k] if finite.all() else np.where(finite, draws[k], 0.0)
        p = fb.params[k]
        if declared.domain is None or p.is_weight or p.arg_index != 0:
            continue  # no domain to leave (see outside_domain)
        reach = ref.h * np.abs(ratio[k]) * lines[k][0]
        for moved in (p.value - reach, p.value + reach):
            outside = calls.outside_domain(p, moved)
            if outside is not None:
                ratio[k] = np.where(outside, 0.0, ratio[k])
    u = {k: ratio[k] * lines[k][0] for k in diag}
    # Two samples suffice: along u the truncation error is that of the diagonal difference
    # scaled by (u/s)^3 (it is c (step)^3 h^2 with step u instead of s), and the diagonal's
    # own error enters the prediction scaled by |u/s|; plus the probe's rounding rho/h.
    probe = np.subtract(calls.evaluate(u, ref.h), calls.evaluate(u, -ref.h))
    probe *= fb.v
    probe /= 2 * ref.h
    with np.errstate(invalid="ignore"):  # an element left put predicts 0, whatever its slope
        predicted = _sum(_unless_put(lines[k][2][0] * ratio[k], ratio[k]) for k in diag)
        allowance = _sum(_unless_put(_cubic(lines[k][2][1], r), r)
                         for k, r in ratio.items())
    scale = (lines[diag[0]][0] if len(diag) == 1 else
             np.max([lines[k][0] for k in diag], axis=0))
    with np.errstate(invalid="ignore"):
        tolerance = calls.rounding((), scale)
        tolerance *= SAFETY / ref.h
        tolerance += allowance
        if (_abs_diff(probe, predicted) <= tolerance).all():
            return None
        bad = ~(np.abs(probe - predicted) <= np.nan_to_num(tolerance, nan=np.inf))
    bad &= np.isfinite(probe)
    if bad.any():  # the reference's rounding as measured (cancelling intermediates): in the
        # probe's difference, and in each diagonal one its prediction scales by |u / s|
        bad &= ~(_abs_diff(probe, predicted) <= tolerance + _measured_noise(fb, ref, calls, u)
                 * SAFETY * (1 + _sum(np.abs(r) for r in ratio.values())) / ref.h)
    if bad.any():
        # At a kink the all-ones and the random step straddle it in different proportions:
        # their central differences need not scale with the step. Not evidence of coupling.
        for k in diag:
            _, phi, _, rho = lines[k]
            bad &= ~kinks(phi, rho)
    return (bad, probe, predicted) if bad.any() else None


def _measured_noise(fb: ForwardBackward, ref: Reference, calls: Evaluations,
                    u: dict[int, np.ndarray]) -> np.ndarray:
    """How far phi = v F moves at steps of 1e-12 h along ``u``, where F itself moves by
    nothing a difference could show: its evaluation's rounding, measured. Intermediates that
    cancel round far beyond ``eps max(1, |F|)``: ``(exp(x) - 1) / x`` at 1e-3 by eps / x,
    whose probe read 0.293832569 against a prediction of 0.29383257."""
    tiny = ref.h * REFINEMENTS[-1]
    with np.errstate(invalid="ignore"):
        moved = [np.abs(fb.v * (calls.evaluate(u, t) - ref.f0)) for t in (tiny, -tiny)]
        return np.nan_to_num(np.maximum(*moved), nan=0.0)


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


def check_diagonal(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int,
                   line: Line, verdict: LineVerdict | None = None) -> tuple[bool, Mismatch | None]:
    """Param ``k`` per element, from ``line`` = ``(s, phi, estimate, rho)``, its samples
    along each element (:func:`confirm_elementwise`); ``verdict``, ``ref.judge``'s on them,
    where the caller has it (a sweep's suspects, judged per element in its batch). Returns
    whether every element was judged by central differences, and the elements it rejects
    (None where it accepts them all at once), to report (:func:`report_mismatch`) or keep."""
    p = fb.params[k]
    low = low_precision(fb, ref)
    s, phi, estimated, rho = line
    analytic = p.grad * s  # derivative along t of x + t*s: grad . s elementwise
    magnitude = 1.0
    if low:  # max(1, |x|, |f|)
        magnitude = _abs(p.value)
        np.maximum(magnitude, 1.0, out=magnitude)
        np.maximum(magnitude, np.abs(ref.f0), out=magnitude)
    allowance = analytic_allowance(analytic, fb.eps, low, magnitude, fb.tiny, fb.v, s)
    if verdict is None:
        verdict = ref.judge(phi, analytic, rho, allowance, estimated=estimated)
    if verdict.ok.all() and not low:
        return bool(verdict.strict), None
    # Where every element passed the first test with terms at most SAFETY times unit-sized,
    # none can need the large terms' rule (the allowance is then within its threshold).
    large_terms = low and (not verdict.ok.all() or float(np.max(magnitude, initial=1.0)) > SAFETY)
    settled = np.zeros(verdict.ok.shape, dtype=bool)
    if not verdict.ok.all():
        verdict, settled = refined(fb, ref, calls, {k: s}, (), phi, analytic, rho, allowance,
                                   verdict, directional=False)
    ok = verdict.ok
    # The low-precision rules work at the step h: not where a shorter step settled the value.
    if low and not ok.all():
        ok = ok | (within_rounding_window(fb, ref, calls, k, analytic / s, verdict,
                                          allowance / s, line) & ~settled)
    if low and not ok.all():
        ok = ok | (explained_by_rounding(fb, ref, calls.twin, lambda g: g[k] * s, analytic,
                                         verdict, calls.entries, elementwise=True,
                                         needed=~ok & ~settled) & ~settled)
    wrong = None if not low else wrong_formula(
        fb, ref, calls, {k: s}, (), phi, analytic, rho, 0.0, verdict, ok,
        lambda g: g[k] * s, directional=False,
        exact_at=_twin_at_rows(fb, ref, calls, k, s) if p.value.shape == ref.f0.shape
        else None)
    formula = None
    if wrong is not None:
        ok = ok & ~wrong.wrong
        allowance = shown_allowance(allowance, wrong)
        formula = np.where(wrong.wrong, wrong.exact / s, np.nan)
    overflowed = None
    if large_terms or (low and fb.dtype == tf.float16):  # overflows: whatever the batch's |x|
        rejected = unexplained_large_terms(fb, ref, calls.twin, line, lambda g: g[k] * s,
                                           analytic, verdict, ok & ~settled, calls.entries,
                                           large_terms)
        bad = rejected.bad & ~_settled_at_shorter_steps(
            fb, ref, calls, k, line, analytic, rejected.bad & ~rejected.overflowed & ~settled,
            rejected.allowance, verdict)
        ok = ok & ~bad
        allowance = np.where(bad, rejected.allowance, allowance)
        overflowed = rejected.overflowed if rejected.overflowed.any() else None
    if low and not ok.all():  # a kink at x of the function the dtype computes
        ok = ok | kinked_in_own_dtype(fb, k, analytic / s, allowance / s, ~ok)
    if not ok.all():  # the true derivative is infinite there: a finite one is a convention
        ok = ok | calls.diverging(k, ~ok)
    if ok.all():
        return bool(verdict.strict), None
    return bool(verdict.strict), Mismatch(k, ~ok, analytic / s, verdict.numerical / s,
                                          verdict.bound / s, allowance / s, formula, overflowed)


def _settled_at_shorter_steps(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int,
                              line: Line, analytic: np.ndarray, retry: np.ndarray,
                              unit: np.ndarray, verdict: LineVerdict) -> np.ndarray:
    """Of the elements ``retry`` that the large-terms rule rejects, those that shorter steps
    settle as passing within the allowance for unit-sized terms (``unit``): a step of h
    max(1, |x|) that spans the function's own scale (5 at |x| = 8e5 in float32, most of a
    period of sin) measured no derivative there, neither the one the large terms would
    excuse nor a wrong one; where shorter steps resolve it, the analytic value is judged
    as any unit-sized chain is. An overflow (its own rule) is not retried."""
    if not retry.any():
        return retry
    s, phi, _, rho = line
    again, settled = refined(fb, ref, calls, {k: s}, (), phi, analytic, rho, unit,
                             replace(verdict, ok=~retry), directional=False,
                             passes_only=retry)
    return retry & settled & again.ok


def _twin_at_rows(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int,
                  s: np.ndarray) -> Callable[[np.ndarray], np.ndarray | None]:
    """``wrong_formula``'s ``exact_at`` for param ``k`` per element (step ``s``): the twin's
    values at the masked elements, from a call on their rows alone
    (``TwinGradients.at_rows``); None where that call does not stand for the whole one."""
    def exact_at(where: np.ndarray) -> np.ndarray | None:
        rows = np.unique(np.nonzero(where)[0]) if where.ndim else None
        grads = None if rows is None else calls.twin.at_rows(fb, ref, rows)
        return None if grads is None else (grads[k] * s[rows])[where[rows]]

    return exact_at


# -- batch rows: per row, after a probe confirms rows are independent


def confirm_batch_independent(fb: ForwardBackward, ref: Reference, calls: Evaluations,
                              declared: Declared, rows: list[int], *, vjp: Vjp,
                              add: Add) -> bool:
    """Perturb row 0 only: no other output row may move (forward), and a cotangent on row 0
    only may reach no other input row (backward, ``vjp`` on step 1's tape)."""
    u = {}
    for k in rows:
        d = np.zeros_like(fb.params[k].value)
        d[0] = _signed(fb.rng, d[0].shape) * np.maximum(1.0, np.abs(fb.params[k].value[0]))
        u[k] = d
    delta = calls.evaluate(u, ref.h) - calls.evaluate(u, -ref.h)
    # Rows other than 0 see identical inputs: only rounding (2 evaluations) may differ.
    tol = SAFETY * 2 * ref.eps_ref * np.maximum(1.0, np.abs(ref.f0))
    moved = (np.abs(delta) > tol)[1:]
    found = None
    if moved.any():
        j = int(np.argmax(moved)) + int(np.prod(ref.f0.shape[1:], dtype=int))
        found = ("forward", _index(j, ref.f0.shape), delta.flat[j] / (2 * ref.h))
    else:
        v0 = np.zeros_like(fb.v)
        v0[0] = fb.v[0]
        grads = vjp(v0, rows)
        for k, g in zip(rows, grads):
            if g is None:
                continue
            g = _f64(g)
            scale = ANALYTIC_ULPS * fb.eps * max(1.0, float(np.max(np.abs(g[0]), initial=0)))
            leak = np.abs(g[1:]) > scale
            if leak.any():
                j = int(np.argmax(leak)) + int(np.prod(g.shape[1:], dtype=int))
                found = ("backward", _index(j, g.shape), g.flat[j])
                break
    if found is None:
        return True
    if declared.batch_independent is None:
        return False  # not declared: use the joint route, nothing was promised
    side, idx, size = found
    what = ("output row {r} changed when only input row 0 was perturbed" if side == "forward"
            else "the gradient reached input row {r} from a cotangent on output row 0 only")
    add("batch_coupling",
        f"rows are coupled across the batch axis: {what.format(r=idx[0])} "
        f"(at index {idx}, {size:.6g} per unit step); a reduction over axis 0? If the "
        f"coupling is intended, declare batch_independent=False",
        direction=side, index=list(idx), size=float(size))
    return False


def check_rows(fb: ForwardBackward, ref: Reference, calls: Evaluations, rows: list[int], *,
               add: Add) -> bool:
    """The params ``rows`` per batch row, along one random direction; True where every row
    was judged by central differences. One call per sample, not a stacked call: its riders
    cannot vouch for rows whose output is ~0 at the input (tried: a zero first row hid a
    target reading its batch size or a row-index threshold, and a wrong gradient passed)."""
    params, low, batch = fb.params, low_precision(fb, ref), batch_size(ref)
    u = {k: _signed(fb.rng, params[k].value.shape) * np.maximum(
        1.0, np.abs(params[k].value)) for k in rows}
    axes = tuple(range(1, ref.f0.ndim))
    samples = calls.samples(u)
    phi = {t: (fb.v * f).sum(axis=axes) for t, f in samples.items()}
    analytic = sum((params[k].grad * u[k]).reshape(batch, -1).sum(axis=1) for k in rows)
    scale = np.max([np.maximum(1.0, np.abs(params[k].value)).reshape(batch, -1)
                    .max(axis=1) for k in rows], axis=0)
    terms = terms_allowance(fb, ref, samples, axes)
    allowance = np.maximum(sum(directional_allowance(fb, ref, k, u[k], row_axes=True)
                               for k in rows), terms)
    rounding = calls.rounding(axes, 1.0) * scale
    # The moved input itself rounds, by eps_ref |x_j| per entry, which moves phi by
    # |x_j| |g_j| each: far more than phi's own rounding where the row's Jacobian is much
    # larger than its output (a normalization at a constant group scales by 1/sqrt(eps),
    # 31.6, while its output is gamma * 0 + beta).
    rounding = rounding + ref.eps_ref * sum(
        np.abs(params[k].value * params[k].grad).reshape(batch, -1).sum(axis=1) for k in rows)
    verdict = ref.judge(phi, analytic, rounding, allowance, directional=True)
    verdict, settled = refined(fb, ref, calls, u, axes, phi, analytic, rounding, allowance,
                               verdict)
    ok, wrong = (verdict.ok, None) if not low else _line_rules(
        fb, ref, calls, u, axes, analytic, phi, verdict, rounding, allowance, terms, settled,
        lambda g: sum(
            (g[k] * u[k]).reshape(batch, -1).sum(axis=1) for k in rows))
    if not ok.all():
        b = int(np.argmax(~ok))
        bound = verdict.bound[b] + shown_allowance(allowance, wrong)[b]
        add("gradient_mismatch",
            f"gradient mismatch in batch row {b}: along a random direction, analytic "
            f"({analytic_source(fb.target.fn)}) {analytic[b]:.9g} vs numerical (finite "
            f"differences) {verdict.numerical[b]:.9g} ± {bound:.3g}"
            f"{formula_clause(fb, wrong, b)}; {int((~ok).sum())} / {ok.size} rows mismatched",
            row=b, analytic=analytic[b], numerical=verdict.numerical[b],
            bound=bound, params=[params[k].label for k in rows])
    return bool(verdict.strict)


def _line_rules(fb, ref, calls, u, axes, analytic, phi, verdict, rounding, allowance, terms,
                settled, project) -> tuple[np.ndarray, WrongFormula | None]:
    """A low-precision line's verdict per row (``axes``) or whole (None): the central test's,
    else the rounding window along it, else ``explained_by_rounding`` (``project``); the
    last two, which work at the step h, not where a shorter step ``settled`` it. Then a line
    that passed on the low dtype's allowance fails where its formula is wrong in float64
    too (``wrong_formula``), which is returned with it."""
    ok = verdict.ok
    if not ok.all():
        ok = ok | (within_line_window(fb, ref, calls, u, axes, analytic, phi, verdict,
                                      rounding, allowance) & ~settled)
    if not ok.all():
        ok = ok | (explained_by_rounding(fb, ref, calls.twin, project, analytic, verdict,
                                         calls.entries) & ~settled)
    wrong = wrong_formula(fb, ref, calls, u, axes, phi, analytic, rounding, terms, verdict,
                          ok, project)
    return (ok, None) if wrong is None else (ok & ~wrong.wrong, wrong)


# -- everything else: one random direction through all remaining params at once


def check_joint(fb: ForwardBackward, ref: Reference, calls: Evaluations, joint: list[int], *,
                add: Add) -> bool:
    """The params ``joint`` together, along one random direction; True where the line was
    judged by central differences."""
    params, low = fb.params, low_precision(fb, ref)
    u = {k: _signed(fb.rng, params[k].value.shape) * np.maximum(
        1.0, np.abs(params[k].value)) for k in joint}
    samples = calls.samples(u)
    phi = {t: np.asarray((fb.v * f).sum()) for t, f in samples.items()}
    analytic = np.asarray(sum(float((params[k].grad * u[k]).sum()) for k in joint))
    scale = max(float(np.max(np.maximum(1.0, np.abs(params[k].value)), initial=1.0))
                for k in joint)
    terms = terms_allowance(fb, ref, samples, None)
    allowance = np.maximum(sum(directional_allowance(fb, ref, k, u[k]) for k in joint), terms)
    rounding = calls.rounding(None, scale)
    verdict = ref.judge(phi, analytic, rounding, allowance, directional=True)
    verdict, settled = refined(fb, ref, calls, u, None, phi, analytic, rounding, allowance,
                               verdict)
    ok, wrong = (verdict.ok, None) if not low else _line_rules(
        fb, ref, calls, u, None, analytic, phi, verdict, rounding, allowance, terms, settled,
        lambda g: np.asarray(sum(float((g[k] * u[k]).sum()) for k in joint)))
    if not ok.all():
        # Which of them: each alone, along its own part of a direction (a line per param,
        # on failure only); where none fails alone, the line names them all.
        named = [k for k in joint if len(joint) > 1 and not _passes_alone(fb, ref, calls, k)]
        labels = ", ".join(params[k].label for k in named or joint)
        bound = float(verdict.bound + shown_allowance(allowance, wrong))
        add("gradient_mismatch",
            f"gradient mismatch for {labels}: along a random direction, analytic "
            f"({analytic_source(fb.target.fn)}) {float(analytic):.9g} vs numerical (finite "
            f"differences) {float(verdict.numerical):.9g} ± {bound:.3g}"
            f"{formula_clause(fb, wrong, None)}",
            analytic=float(analytic), numerical=float(verdict.numerical),
            bound=bound, params=[params[k].label for k in named or joint])
    return bool(verdict.strict)


def _passes_alone(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int) -> bool:
    """Whether param ``k`` passes :func:`check_joint` on its own."""
    found: list = []
    check_joint(fb, ref, calls, [k], add=lambda *finding, **details: found.append(finding))
    return not found


def check_disconnected(fb: ForwardBackward, ref: Reference, calls: Evaluations, k: int, *,
                       add: Add) -> None:
    """A None gradient is right only if the output does not depend on the param."""
    p = fb.params[k]
    u = _signed(fb.rng, p.value.shape) * np.maximum(1.0, np.abs(p.value))
    phi = {t: np.asarray((fb.v * f).sum()) for t, f in calls.samples({k: u}).items()}
    verdict = judge_lines(phi, ref.h, np.asarray(0.0),
                          calls.rounding(None, float(np.max(np.maximum(1, np.abs(p.value))))),
                          np.asarray(0.0))
    if not bool(verdict.ok):
        add("disconnected_gradient",
            f"the gradient for {p.label} is None, but the output depends on it "
            f"(directional derivative {float(verdict.numerical):.6g} ± "
            f"{float(verdict.bound):.3g}); a tf.stop_gradient, a .numpy() call, or a "
            f"custom gradient returning None for it?",
            param=p.label, numerical=float(verdict.numerical))
