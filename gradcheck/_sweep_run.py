"""The core's run as a sweep uses it: one run over every swept value, its verdicts per value.

A sweep (``_sweep.py``) puts every value into one tensor and runs the core's elementwise check
once. :class:`SweepRun` is that run, keeping what the core computes per element and discards
(the raw gradient, the per-element mismatches), trusting the declaration that the target is
elementwise, and running the core's low-precision rules only on the values its finite
differences reject or pass on the low dtype's allowance alone (:func:`_loose`;
:func:`_entries`: a copy of the run over them, every per-element quantity and random draw the
batch's). :func:`kink_in_window` is the core's line rule on them, from the same copy of the
run, its four evaluations taken along the copy's first stacked call
(:meth:`SweepRun.stacked`); :func:`stencil` reads the core's samples.
"""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from . import _routes, _windows
from ._arrays import _all_finite, _f64
from ._check import _Run
from ._conditioning import TwinGradients
from ._numerics import LineVerdict, analytic_allowance, beyond_own_rounding, estimate
from ._report import Finding, Report

__all__ = ["SweepRun", "kink_in_window", "stencil"]


class SweepRun(_Run):
    """The core's run, keeping what it computes per element: the raw gradient of x (before the
    core drops a nonfinite one) and the mask of elements whose gradient it rejected
    (``mismatch``)."""

    def check_gradient_structure(self, p, g, grad=None):
        if not p.is_weight and p.arg_index == 0 and isinstance(g, tf.Tensor):
            self.raw_grad = _f64(g) if g.shape == p.value.shape else None
            if (self.raw_grad is not None and g.dtype == p.dtype and _all_finite(self.y64)
                    and not _all_finite(self.raw_grad)):
                # The core's finding would name the op making the NaN by tracing the whole
                # batch as a graph (_hints.py); the sweep sets that finding aside and reports
                # its own, whose one-value reproducer names the op.
                self.add("nonfinite_gradient", f"gradient for {p.label} is not finite")
                return
            grad = self.raw_grad  # the core's float64 copy of g, made once
        super().check_gradient_structure(p, g, grad)

    def add(self, kind, message, **details):
        """Findings without the batch's inputs: a sweep reports its own, one value each."""
        self.report.findings.append(Finding(kind, f"{self.tgt.name}: {message}", {}, details))

    def confirm_elementwise(self, diag):
        """Trust the declaration: the core's probe along a random direction is a whole-batch
        verdict, and at |x| where the target varies faster than the core's step h max(1, |x|)
        (sin at 1e5) it is inconclusive for one value of thousands. Fuzzing checks that the
        target is elementwise, on random shapes and inputs of its domain. So only the core's
        samples along each element are taken (``self.diag``), not its probe."""
        self.diag, _ = _routes.sample_diagonals(self.first_order_record(),
                                                self.reference_record(), self.evaluations(),
                                                diag, stacked=True)
        aside = getattr(self, "set_aside", None)
        if aside is not None and 0 in self.diag:
            # The verdicts of values set aside (NaN/Inf output or gradient) are discarded:
            # given the core's own difference as gradient they pass its judge, so they do
            # not send the whole batch through its rounding rules (per element: the other
            # values' verdicts are unchanged).
            s, _, (numerical, _), _ = self.diag[0]
            with np.errstate(invalid="ignore"):
                fill = aside & np.isfinite(numerical)
                self.params[0].grad = np.where(fill, numerical / s, self.params[0].grad)
        return True

    def check_gradients(self):
        """The core's per-element check of x (``_routes.compare`` for the sweep's one usable
        param), its low-precision rules (rounding window, ``explained_by_rounding``: eight
        gradient passes; the float64 twin's formula) run only on the values its finite
        differences reject or pass on the low dtype's allowance alone, in a copy of this run
        over those values (:func:`_entries`): every per-element quantity is the
        batch's, so each value's verdict is the one the whole batch gives it."""
        p = self.params[0]
        if (p.grad is None or p.is_weight or p.value.shape != self.f0.shape
                or not _all_finite(self.y64)):
            return super().check_gradients()
        self.confirm_elementwise([0])
        self.elementwise_confirmed = True
        # check_diagonal's first test, before its rules: analytic against the differences.
        s, phi, estimated, rho = self.diag[0]
        analytic = p.grad * s
        magnitude = (np.maximum(np.maximum(1.0, np.abs(p.value)), np.abs(self.f0))
                     if self.low_precision else 1.0)
        allowance = analytic_allowance(analytic, self.eps, self.low_precision, magnitude,
                                       self.tiny, self.v, s)
        verdict = self.verdict(phi, analytic, rho, allowance, estimated=estimated)
        self.inconclusive = not verdict.strict
        suspects = ~verdict.ok
        if self.low_precision:
            suspects |= _loose(verdict, analytic, self.eps)
        suspects = np.flatnonzero(suspects)
        self.mismatch = np.zeros(p.value.shape, bool)
        self.kink = np.zeros(p.value.shape, bool)
        if suspects.size:
            sub = _entries(self, suspects)
            if self.low_precision:  # the kink window's evaluations ride along the first call
                sub.riders = [({0: _line_direction(sub)}, t)
                              for t in _windows.line_window_ts(sub.first_order_record(),
                                                              sub.reference_record())]
            # The core's message is not written: the sweep reports its own, per value.
            _, found = _routes.check_diagonal(sub.first_order_record(), sub.reference_record(),
                                              sub.evaluations(), 0, sub.diag[0],
                                              _entries_of_verdict(verdict, suspects))
            self.mismatch[suspects] = False if found is None else found.bad
            if self.low_precision and found is not None:
                self.kink[suspects] = kink_in_window(sub)

    def stacked(self, directions, ts):
        """``ReferenceCalls.stacked``, taking along the points waiting to ride (``riders``)
        and serving a later request for them from that call (``kept``). Riders that make
        the call too large (``_STACK_BYTES``) are dropped, not the request: their own
        request later is a call of its own."""
        riders, kept = getattr(self, "riders", []), getattr(self, "kept", [])
        served = [next((out for point, out in kept if _same_point(point, (directions, t))),
                       None) for t in ts]
        if all(out is not None for out in served):
            return served
        request = [(directions, t) for t in ts]
        riders = [r for r in riders if not any(_same_point(r, point) for point in request)]
        self.riders = []
        found = self.stacked_points(request + riders) if riders else None
        if found is None:
            riders, found = [], self.stacked_points(request)
        if found is None:
            return None
        self.kept = kept + list(zip(riders, found[len(ts):]))
        return found[:len(ts)]


def _loose(verdict: LineVerdict, analytic: np.ndarray, eps: float) -> np.ndarray:
    """The values that pass only on a low dtype's allowance for terms as large as x or f
    (:func:`beyond_own_rounding`). The core's ``check_diagonal`` asks the float64 twin about
    those (``_lines.wrong_formula``, ``_conditioning.unexplained_large_terms``): a formula
    wrong by 5% at |x| = 40 is within float32's terms allowance there, and a sweep that sent
    only the rejected values on never asked."""
    return verdict.ok & beyond_own_rounding(verdict, analytic, eps)


def _same_point(a: tuple, b: tuple) -> bool:
    """Whether two (directions, t) points of ``stacked_points`` are one evaluation."""
    (da, ta), (db, tb) = a, b
    return (ta == tb and da.keys() == db.keys()
            and all(np.array_equal(da[k], db[k]) for k in da))


def _entries(run: SweepRun, where: np.ndarray) -> SweepRun:
    """A copy of ``run`` over the values ``where`` (indices into its 1-D x): the same cotangent,
    reference, step, samples and random draws per value (``run.entries`` for
    ``_conditioning``); a report of its own."""
    sub = copy.copy(run)
    for cached in ("mismatch", "tape", "sources", "raw_grad"):
        sub.__dict__.pop(cached, None)
    sub.twin_gradients = TwinGradients()
    p = run.params[0]
    sub.args = [_entries_of(run.args[0], where)] + list(run.args[1:])
    sub.y = _entries_of(run.y, where)
    sub.params = [dataclasses.replace(p, value=p.value[where], grad=p.grad[where])]
    sub.params += run.params[1:]
    sub.v, sub.y64, sub.f0 = run.v[where], run.y64[where], run.f0[where]
    s, phi, (numerical, bound), rho = run.diag[0]
    sub.diag = {0: (s[where], {t: f[where] for t, f in phi.items()},
                    (numerical[where], bound[where]), rho[where])}
    sub.ref_args = sub.v_size = sub.set_aside = None
    sub.entries = (run.v.shape, where)
    sub.report = Report(target=run.report.target, dtype=run.report.dtype)
    return sub


def _entries_of_verdict(verdict: LineVerdict, where: np.ndarray) -> LineVerdict:
    """The batch's verdict on the values ``where``, as judging them alone gives it."""
    return LineVerdict(*(getattr(verdict, f)[where] for f in ("ok", "numerical", "bound",
                                                             "kink", "finite")),
                       strict=bool(verdict.ok[where].all()))


def _entries_of(t: tf.Tensor, where: np.ndarray) -> tf.Tensor:
    """``tf.gather(t, where)`` for a 1-D tensor, indexed in NumPy (a quarter of the time)."""
    return tf.constant(t.numpy()[where], dtype=t.dtype)


def _line_direction(run: SweepRun) -> np.ndarray:
    """Each element's line for :func:`kink_in_window`: x + t |x| (|x| at least the tiniest)."""
    return np.maximum(np.abs(run.params[0].value), np.finfo(np.float64).tiny)


def kink_in_window(run: SweepRun) -> np.ndarray:
    """The core's rule for a low-precision line (``_windows.within_line_window``) on each
    element's line x + t |x|: the inputs within ANALYTIC_ULPS roundings of |x| (the dtype's
    rounding of x and of intermediates of its size) are indistinguishable, and a kink among
    them, or a slope the reference takes there, makes the element inconclusive. A sweep meets
    every value next to a kink: in float16, hard_silu's x + 3 rounds to 6 at x = 2.998 and
    selects the slope beyond its kink at 3. Scaled by |x| rather than max(1, |x|), so a kink
    at 0 stays out of reach of x = -2e-4 (selu). The core's differences along max(1, |x|)
    (``run.diag``, the batch's own samples, cotangent and reference) are rescaled to this
    line; only the window's four evaluations are new, made along with the suspects' first
    call (``SweepRun.stacked``). ``run``: a run over the suspects (:func:`_entries`)."""
    s, phi, (numerical, bound), rho = run.diag[0]
    r = _line_direction(run)
    k = r / s
    verdict = SimpleNamespace(numerical=numerical * k, bound=bound * k)
    # Only phi(+-h) - phi(0) enters the rule (curvature): a second difference, k^2.
    line = {0: phi[0], 1: phi[0] + (phi[1] - phi[0]) * k * k,
            -1: phi[0] + (phi[-1] - phi[0]) * k * k}
    return _windows.within_line_window(
        run.first_order_record(), run.reference_record(), run.evaluations(), {0: r}, (),
        run.params[0].grad * r, line, verdict, rho, np.zeros(r.shape))


def stencil(run: SweepRun) -> tuple[np.ndarray, np.ndarray]:
    """From the core's own samples along x (``run.diag``, made by its elementwise check):
    where a sample overflowed, and dy f'(x) by the core's central difference."""
    diag = getattr(run, "diag", {}).get(0)
    if diag is None:
        s = np.maximum(1.0, np.abs(run.params[0].value))
        phi = {t: f * run.v for t, f in run.samples({0: s}).items()}
        diag = (s, phi, estimate(phi, run.h, run.rounding((), s)), None)
    s, phi, (numerical, _), _ = diag
    return np.isinf(phi[-2]) | np.isinf(phi[2]), numerical / s
