"""Sweeps: check an elementwise target at every float16/bfloat16 value, or densely in float32/64.

An elementwise check costs a constant number of target calls whatever the number of elements
(see ``_check.py``), so a sweep puts every value it checks into one tensor and runs the core's
check on it once, reading its per-element verdicts:

1. forward and backward in the dtype, and the float64 reference (``_Run.forward_backward`` /
   ``choose_reference``). A NaN/Inf output is a ``nonfinite_output`` only where the reference
   says the true value fits the dtype (the core's rule, ``check_nonfinite_output``); a NaN/Inf
   gradient with a finite output is a ``nonfinite_gradient`` only where the reference's
   derivative is finite and neither the VJP nor the intermediates of its chain overflow;
2. the core's gradient check (``_Run.check_gradients``: kinks, rounding windows, float64
   reference) on every value, those with a NaN/Inf output or gradient set aside, its
   low-precision rules on the values its differences reject or pass on the low dtype's
   allowance alone (``_sweep_run.py``); its
   per-element mismatches are the ``gradient_mismatch`` values, except where the core's finite
   differences cannot judge (they overflow, or their step exceeds 1) and, in float16/bfloat16,
   where the core's low-precision line rule finds a kink within the rounding of x;
3. float32/float64 only: where neighbouring swept values differ in verdict, finiteness, sign or
   zero-ness of output or gradient, the gap is filled evenly in ulps (two rounds), so a regime
   change (an overflow, a branch switch, the end of a wrong branch) is located closely.

Each finding kind is reported once: the longest run of consecutive swept values showing it,
its smallest |x|, how many values show it in all, and a reproducer, the core's ``check`` at one
of those values, run to confirm it shows the same kind. Extra scalar parameters are held at
each point of a small grid over their range (both ends and the middle); their own gradients,
and a layer's weights, are left to fuzzing.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from . import _sweep_values as grid
from ._arrays import _f64
from ._check import check_with
from ._determinism import outputs_agree
from ._fuzz_target import name_of
from ._heap import keep_heap
from ._inputs import as_tensors
from ._numerics import ANALYTIC_ULPS
from ._options import CheckOptions
from ._report import KINDS, Finding, Report, distinct_texts
from ._singular import diverging_at_singular_points, nan_where_defined
from ._sweep_run import SweepRun, stencil
from ._targets import as_target

__all__ = ["sweep", "sweep_registered"]

#: Per-value verdicts, worst last.
OK, EXCLUDED, NONFINITE_OUTPUT, NONFINITE_GRADIENT, MISMATCH = range(5)
_KIND_OF_CODE = {NONFINITE_OUTPUT: "nonfinite_output", NONFINITE_GRADIENT: "nonfinite_gradient",
                 MISMATCH: "gradient_mismatch"}
_WHAT = {NONFINITE_OUTPUT: "output is NaN/Inf although the true value fits the dtype",
         NONFINITE_GRADIENT: "gradient is NaN/Inf although the output is finite",
         MISMATCH: "gradient wrong"}
#: Refinement of the wide dtypes: rounds, gaps refined per round, values put in each gap.
REFINE_ROUNDS, REFINE_GAPS, REFINE_VALUES = 2, 64, 24
#: Extra scalar parameters: at most this many grid points (each parameter at its ends and middle).
MAX_GRID = 9
_OPTIONS = {"rtol", "atol", "seed", "name", "reference"}


def sweep(target: Any, *, dtype: str, domain: tuple[float, float] | None = None,
          kinks: tuple[float, ...] = (), args: dict[str, tuple] | None = None,
          **options: Any) -> Report:
    """Check an elementwise target at every finite value of a 16-bit dtype, or densely.

    float16 / bfloat16: every finite value in the domain. float32 / float64: every binade of the
    domain at several points, a linear grid over the domain, the neighbourhoods of zero, of the
    underflow and overflow thresholds, of the domain's ends and of each kink, and, located by
    refinement, of every point where the target's output or gradient changes regime.

    Args:
        target: an elementwise function of tensors (plain, ``tf.custom_gradient``,
            ``tf.function``), a ``keras.layers.Lambda`` or an elementwise Layer instance.
        dtype: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``.
        domain: ``(low, high)``; default: the dtype's whole finite range. Values whose true
            output overflows the dtype are never findings.
        kinks: points where the target is not differentiable (float32/float64: swept densely
            around them; the core finds kinks by itself either way).
        args: extra scalar parameters after ``x``, ``name -> (low, high)``: the sweep is
            repeated with each held at both ends and the middle of its range.
        **options: ``rtol``, ``atol``, ``seed``, ``name``, ``reference`` as for
            :func:`gradcheck.check`.

    Returns:
        A :class:`Report`: each finding kind once, at the smallest |x| that shows it, with its
        extent and a reproducer; ``meta["swept"]`` counts the values checked, and
        ``meta["repeatable"]`` is True where a second call at every one of them gave the same
        outputs and gradients.

    Raises:
        TypeError, ValueError: an unknown option, a bad dtype, domain or args entry, or a
            target gradcheck cannot check.
    """
    import math

    from . import _options

    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"gradcheck.sweep: unknown option(s) {sorted(unknown)}; valid are "
                        f"dtype, domain, kinks, args and {sorted(_OPTIONS)}")
    name = options.pop("name", None) or name_of(target)
    try:
        (dtype,) = _options.dtypes((dtype,))
        domain = None if domain is None else _options.interval(domain)
        kinks = _options.kinks(kinks, domain or (-math.inf, math.inf))
        scalars = _scalar_args(_options.args(args or {}), name)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"gradcheck.sweep({name}): {exc}") from None
    return _Sweep(lambda: target, name, dtype, domain, kinks, scalars, options).run()


def sweep_registered(registered: Any, dtype: str, instance: Any = None) -> Report | None:
    """The sweep phase of fuzzing one declared target in one dtype; None when it does not apply
    (``sweep=False``, not elementwise, a tensor-valued parameter)."""
    decl = registered.declaration
    if not getattr(decl, "sweep", True) or not decl.elementwise:
        return None
    if getattr(decl, "gradient", None) is not None:
        return None  # a declared surrogate: fuzzing compares it with the declaration
    if any(len(spec) == 3 for spec in decl.args.values()):
        return None  # a tensor parameter: its shape ties x's shape; fuzzing covers it
    if decl.kind == "layer" and (decl.args or instance is None and decl.input_shape
                                 and any(d is not None for d in decl.input_shape[1:])):
        return None  # a layer with parameters or fixed feature axes: fuzzing covers it
    options: dict[str, Any] = {"rtol": decl.rtol, "atol": decl.atol}
    if instance is not None:
        make = lambda: instance  # noqa: E731
    elif decl.kind == "layer":
        make = lambda: registered.build(dtype)  # noqa: E731
        options["reference"] = registered.build
    else:
        make = lambda: registered.target  # noqa: E731
    domain = decl.domain if getattr(decl, "domain_declared", True) else None
    return _Sweep(make, registered.name, dtype, domain, decl.kinks,
                  _scalar_args(decl.args, registered.name), options).run()


class _Noisy(Exception):
    """Two calls of the target at the same values differ (dropout, tf.random)."""


def _scalar_args(args: Any, name: str) -> dict[str, tuple[float, float]]:
    for arg, spec in args.items():
        if len(spec) != 2:
            raise TypeError(f"gradcheck.sweep({name}): args[{arg!r}] is a tensor parameter; a "
                            f"sweep holds scalar parameters (low, high) only; fuzz it instead")
    return {arg: (float(lo), float(hi)) for arg, (lo, hi) in args.items()}


# -- one batched check of many values -----------------------------------------------------------

@dataclass
class _Batch:
    """Per-value outcome of one batched check (values sorted, as given)."""

    x: np.ndarray
    code: np.ndarray          # OK .. MISMATCH per value
    y: np.ndarray             # the target's output (float64 copy), per value
    grad: np.ndarray          # its gradient (VJP / dy), per value, NaN where missing
    findings: list[Finding]   # whole-batch findings of the core (error, not_elementwise, ...)
    stopped: bool = False     # the target could not be checked at all (error, wrong shape)
    repeatable: bool = False  # a second call gave the same output and gradient everywhere


class _Sweep:
    """One target in one dtype: values, parameter grid, batched checks, the report."""

    def __init__(self, make: Callable[[], Any], name: str, dtype: str,
                 domain: tuple[float, float] | None, kinks: tuple[float, ...],
                 scalars: dict[str, tuple[float, float]], options: dict[str, Any]):
        self.make, self.name, self.dtype = make, name, dtype
        self.domain, self.kinks, self.scalars = domain, kinks, scalars
        self.rtol, self.atol = options.get("rtol"), options.get("atol")
        self.seed = int(options.get("seed") or 0)
        self.reference = options.get("reference")
        self.tf_dtype = tf.as_dtype(dtype)
        self.swept = 0
        self.excluded = 0
        self.reference_dtype: str | None = None  # what the core's reference ran in

    # ---- the parameter grid

    def grid(self) -> list[tuple[float, ...]]:
        """Each scalar parameter at its ends and middle (rounded to the dtype, inside)."""
        axes = []
        for low, high in self.scalars.values():
            low, high = grid.bounds(self.dtype, (low, high))
            middle = float(grid._representable(np.array([(low + high) / 2]), self.dtype)[0])
            axes.append(tuple(dict.fromkeys((low, middle, high))))
        points = list(itertools.product(*axes))
        if len(points) > MAX_GRID:  # many parameters: the corners' diagonal and the middle
            points = [tuple(a[0] for a in axes), tuple(a[len(a) // 2] for a in axes),
                      tuple(a[-1] for a in axes), tuple(a[0] if i % 2 else a[-1]
                                                      for i, a in enumerate(axes))]
        return points

    # ---- the run

    def run(self) -> Report:
        keep_heap()  # as check(): each sweep's arrays reuse the last one's freed memory
        start = time.perf_counter()
        report = Report(target=self.name, dtype=self.dtype)
        found: dict[int, tuple[_Batch, tuple[float, ...]]] = {}
        repeatable = True  # every batch called twice gave the same outputs and gradients
        grids = self.grid()
        for consts in grids:
            # The core's arithmetic meets the dtype's extremes here; where it overflows, the
            # values are excluded (check_values()), so its warnings are noise.
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    batch = self.sweep_values(consts)
            except _Noisy:  # values of a random target say nothing: nothing was swept
                report.findings, self.swept = [], 0
                report.meta.update(swept=0, skipped="two calls at the same values differ")
                return report
            report.findings.extend(f for f in batch.findings if f.kind not in report.kinds)
            repeatable &= batch.repeatable
            if batch.stopped:
                report.reproducer = self.sweep_call()
                break
            for code in _KIND_OF_CODE:
                if code not in found and (batch.code == code).any():
                    found[code] = (batch, consts)
        for code, (batch, consts) in found.items():
            finding, reproducer = self.describe(code, batch, consts)
            if finding is None:  # reproducer: why not (no check alone shows it)
                report.meta.setdefault("not_reported", []).append(reproducer)
                continue
            report.findings.append(finding)
            report.reproducer = report.reproducer or reproducer
        report.findings.sort(key=lambda f: KINDS.index(f.kind))
        report.reference_dtype = self.reference_dtype
        report.meta.update({"swept": self.swept, "excluded_overflow": self.excluded,
                            "exhaustive": grid.exhaustive(self.dtype),
                            "repeatable": repeatable and self.swept > 0,
                            "grid": [dict(zip(self.scalars, c)) for c in grids] if self.scalars
                            else [], "sweep_duration_s": round(time.perf_counter() - start, 3)})
        return report

    def sweep_values(self, consts: tuple[float, ...]) -> _Batch:
        """All the values of this dtype's sweep, then (wide dtypes) refinement rounds."""
        values = grid.values(self.dtype, self.domain, self.kinks)
        batch = self.check_values(values, consts, _values_tensor(values, self.tf_dtype))
        if grid.exhaustive(self.dtype) or batch.stopped:
            return batch
        for _ in range(REFINE_ROUNDS):
            extra = self.refinement(batch)
            if extra.size == 0:
                break
            more = self.check_values(extra, consts)
            if more.stopped:
                break
            batch = _merge(batch, more)
        return batch

    def refinement(self, batch: _Batch) -> np.ndarray:
        """Values in the gaps where neighbours differ: verdict first, then finiteness, sign or
        zero-ness of output and gradient (a regime change), up to REFINE_GAPS gaps."""
        with np.errstate(invalid="ignore"):
            regime = (np.isfinite(batch.y) * 1 + np.isfinite(batch.grad) * 2
                      + (np.sign(np.nan_to_num(batch.y)) + 1) * 4
                      + (np.sign(np.nan_to_num(batch.grad)) + 1) * 16)
        verdict = np.flatnonzero(np.diff(batch.code) != 0)
        other = np.setdiff1d(np.flatnonzero(np.diff(regime) != 0), verdict)
        gaps = np.concatenate([verdict, other])[:REFINE_GAPS]
        if gaps.size == 0:
            return np.zeros(0)
        extra = grid.between(batch.x[gaps], batch.x[gaps + 1], self.dtype, REFINE_VALUES)
        return np.setdiff1d(extra, batch.x)

    def target(self, consts: tuple[float, ...]) -> Any:
        fn = self.make()
        if not consts:
            return fn

        def with_parameters(x):
            return fn(x, *[tf.cast(c, x.dtype) for c in consts])

        return with_parameters

    def check_values(self, values: np.ndarray, consts: tuple[float, ...],
                     x: tf.Tensor | None = None) -> _Batch:
        """One batched check of ``values`` (stages 1 and 2 of the module docstring), in one
        run of the core: the values whose output or gradient is not finite are judged with
        the rest (the core's verdicts are per element) and their verdicts set aside. ``x``:
        ``values`` as a tensor of the dtype, where the caller has it."""
        n = values.size
        self.swept += n
        x = tf.constant(values, self.tf_dtype) if x is None else x
        tgt = as_target(self.target(consts), self.name, self.reference)
        # modes=(): the sweep is about values; fuzzing checks tf.function/XLA on its inputs.
        run = SweepRun(tgt, [x], True, True, self.rtol, self.atol, self.seed,
                        domain=self.domain)
        nan = np.full(n, np.nan)
        if not run.forward_backward() or not run.choose_reference():
            return _Batch(values, np.zeros(n, np.int8), nan, nan, run.report.findings, True)
        again, again_grad = _second_call(tgt, x, run.cotangent)
        if not outputs_agree(run.dtype, again, run.y64):
            raise _Noisy  # fuzzing's determinism probe reports it, with the random ops
        structural = [f for f in run.report.findings if f.kind != "nonfinite_gradient"]
        if structural:
            return _Batch(values, np.zeros(n, np.int8), nan, nan, structural, True)
        run.report.findings = []
        self.reference_dtype = run.ref_dtype.name
        for p in run.params:  # a layer's weights sum over every value: fuzzing checks them
            if p.is_weight:
                p.grad, p.grad_missing = None, False
        y, ref, raw = run.y64, run.f0, getattr(run, "raw_grad", None)
        # Gradients that repeat too let a reproducer's finding stand without more calls; ones
        # that do not are noise in the backward pass, as for the outputs above.
        repeatable = (raw is not None and again_grad is not None
                      and outputs_agree(run.dtype, again_grad, raw))
        if raw is not None and again_grad is not None and not repeatable:
            raise _Noisy
        grad = nan if raw is None else raw / run.v
        code = np.full(n, OK, np.int8)
        # The core's rule: overflow of a value the dtype cannot hold is not a bug. The output
        # is within ANALYTIC_ULPS roundings of the true value, so a true value that close to the
        # dtype's largest may round up to Inf. A scalar parameter multiplies x before the
        # nonlinearity (sin(a x + b)): where |x| max(1, |a|) overflows, the true
        # pre-activation does not fit either. Without a wider reference (the target's own
        # float64, or a target that does not run in float64) no NaN/Inf output is judged.
        limit = float(self.tf_dtype.max) * (1 - ANALYTIC_ULPS * run.eps)
        lever = max([1.0] + [abs(c) for c in consts])
        fits = (np.abs(ref) <= limit) & (np.abs(values) * lever <= limit)
        fits &= np.isfinite(ref) & run.low_precision
        out_bad = ~np.isfinite(y)
        if run.low_precision:  # the same formula's NaN where the function is defined
            fits |= nan_where_defined(run, out_bad & np.isnan(ref))
        code[out_bad] = np.where(fits[out_bad], NONFINITE_OUTPUT, EXCLUDED)
        grad_bad = ~out_bad & ~np.isfinite(grad) if raw is not None else np.zeros(n, bool)
        # At values read as zero (0, subnormals) or at a declared end, an Inf the target
        # diverges toward is its true value there (_singular.py): log at 0, sqrt's derivative
        # at a subnormal.
        singular = [diverging_at_singular_points(run, 0, bad, gradient) for bad, gradient in
                    ((out_bad & np.isinf(y), False), (grad_bad & np.isinf(grad), True))]
        if raw is not None:  # judge every element; those not clean are set aside below
            run.params[0].grad = np.where(out_bad | grad_bad, 0.0, raw)
            run.set_aside = out_bad | grad_bad
        run.y64 = np.where(out_bad, 0.0, y)
        run.check_gradients()
        outside, numerical = stencil(run)
        if grad_bad.any():
            # Where the derivative is finite and neither it, the VJP dy f'(x) nor the
            # intermediates of its chain overflow: those are as large as |dy| max(1, |x|, |f|)
            # (the core's model of the analytic side, check_diagonal), times a parameter's
            # lever. The product rule's dy * x overflows at |x| near the dtype's largest value
            # however small the VJP (x * sigmoid(x) at x = -65000 in float16), and log's 1 / x
            # at x = 1.1e-5 in float16 (89240) however small dy (the core's rule too,
            # ``_overflow.true_gradient_overflows``).
            chain = np.abs(run.v) * np.maximum(np.maximum(1.0, np.abs(values)),
                                               np.abs(np.where(out_bad, 0.0, y))) * lever
            with np.errstate(divide="ignore", invalid="ignore"):
                derivative = np.abs(numerical / run.v)
            wrong = (np.isfinite(numerical) & (np.abs(numerical) <= limit) & (chain <= limit)
                     & (derivative <= limit))
            code[grad_bad] = np.where(wrong[grad_bad], NONFINITE_GRADIENT, EXCLUDED)
        for diverging in singular:
            code[diverging] = EXCLUDED
        # Where the core's finite differences cannot judge: its samples (steps up to
        # 2h max(1, |x|)) overflow next to the end of the reference dtype's range (float64
        # beyond 1e308, or an output that reaches it, as selu's 1.05 x), or the derivative
        # scaled by max(1, |x|) does. Next to a domain end with |x| < 1 (log, sqrt) the core
        # steps relative to |x|: not excluded here.
        s = np.maximum(1.0, np.abs(values))
        scaled = np.abs(np.nan_to_num(grad * run.v, nan=0.0)) * s
        unjudgeable = (s > 1) & (outside | ~(scaled <= np.finfo(np.float64).max * run.h))
        code[(code == OK) & unjudgeable] = EXCLUDED
        mismatch = getattr(run, "mismatch", None)
        if mismatch is not None and run.low_precision:
            mismatch = mismatch & ~run.kink  # made with the suspects' rules (kink_in_window)
        if mismatch is not None:
            # Beyond |x| = 1/h the core's step h max(1, |x|) is wider than 1: features of unit
            # size (a period of sin) alias in its differences, which then say nothing. (Over
            # a float64 target the core's shorter steps do not settle them either: at 5e11 a
            # period of sin is 1e4 ulps of x, and TensorFlow's own sin and cos are far off.)
            wide = np.abs(values) * run.h > 1
            bad = mismatch & (code == OK)
            code[bad & ~wide] = MISMATCH
            code[bad & wide] = EXCLUDED
        self.excluded += int((code == EXCLUDED).sum())
        findings = [f for f in run.report.findings
                    if f.kind not in ("gradient_mismatch", "nonfinite_gradient")]
        return _Batch(values, code, y, grad, findings, repeatable=repeatable)

    # ---- what a finding says

    def describe(self, code: int, batch: _Batch,
                 consts: tuple[float, ...]) -> tuple[Finding | None, str]:
        """The finding of one kind, at a value whose check alone shows it too: the smallest
        |x| in the longest run of consecutive values showing it, else the smallest |x| of
        all, the run's middle or its ends. The longest run comes first: the values showing a
        kind alone, or at a run's ragged edge, are where the verdict is borderline (selu's
        smallest flagged |x| passes a check alone for 3 cotangent seeds of 4), and each
        candidate that does not reproduce costs a whole check."""
        bad = batch.code == code
        padded = np.zeros(bad.size + 2, np.int8)
        padded[1:-1] = bad
        edges = np.flatnonzero(np.diff(padded))
        starts, ends = edges[::2], edges[1::2] - 1
        longest = int(np.argmax(ends - starts))
        lo, hi = int(starts[longest]), int(ends[longest])
        where = np.flatnonzero(bad)
        smallest = int(where[np.argmin(np.abs(batch.x[where]))])
        in_longest = lo + int(np.argmin(np.abs(batch.x[lo:hi + 1])))
        kind = _KIND_OF_CODE[code]
        for i in dict.fromkeys((in_longest, smallest, (lo + hi) // 2, lo, hi)):
            reproduced, _ = self.reproduce(float(batch.x[i]), consts, kind, batch.repeatable)
            if reproduced is not None:
                detail, reproducer, inputs = reproduced
                run = np.searchsorted(ends, i)  # the run of consecutive values holding i
                extent = self.extent(code, batch, bad, int(starts[run]), int(ends[run]),
                                     starts.size, consts)
                return Finding(kind, f"{self.name}: {extent}; at x = {batch.x[i]:.9g}: "
                               f"{detail}", inputs, self.details(batch, bad, starts[run],
                                                                 ends[run], i, consts)), \
                    reproducer
        # No check there shows it: at other cotangents either? A wrong formula is wrong
        # whatever dy; a VJP whose cancelling terms rounded past the rules for the batch's
        # own dy alone (a bfloat16 sinc's 1 / x terms at 0.0067, one value) is not. A check
        # there that finds anything else (a noisy gradient: nondeterministic) keeps it.
        extent = self.extent(code, batch, bad, lo, hi, starts.size, consts)
        clean = True
        for seed in range(self.seed + 1, self.seed + 1 + _MORE_COTANGENTS):
            reproduced, quiet = self.reproduce(float(batch.x[in_longest]), consts, kind,
                                               batch.repeatable, seed)
            clean &= quiet
            if reproduced is not None:
                detail, reproducer, inputs = reproduced
                return Finding(kind, f"{self.name}: {extent}; at x = {batch.x[in_longest]:.9g}"
                               f": {detail}", inputs,
                               self.details(batch, bad, lo, hi, in_longest, consts)), reproducer
        if not clean:
            return Finding(kind, f"{self.name}: {extent}, smallest |x| "
                           f"{batch.x[in_longest]:.9g} (a check at one of these values alone "
                           f"does not show it; reproduce with the sweep)",
                           {"x": [float(batch.x[in_longest])], "dtype": self.dtype},
                           self.details(batch, bad, lo, hi, in_longest, consts)), \
                self.sweep_call()
        return None, (f"{int(bad.sum())} swept value(s) in [{batch.x[lo]:.6g}, "
                      f"{batch.x[hi]:.6g}] showed {kind} that no check at them alone shows, "
                      f"at {_MORE_COTANGENTS + 1} cotangents: not reported (the rounding of "
                      f"the sweep's own cotangent there?)")

    def extent(self, code, batch, bad, lo, hi, runs, consts) -> str:
        every = (f"every {self.dtype} value" if grid.exhaustive(self.dtype)
                 else "every swept value")
        params = "".join(f", {k} = {v:.6g}" for k, v in zip(self.scalars, consts))
        low, high = distinct_texts(float(batch.x[lo]), float(batch.x[hi]))
        return (f"{_WHAT[code]} for {every} x in [{low}, {high}] "
                f"({hi - lo + 1} values){params}; {int(bad.sum())} of {bad.size} swept values "
                f"in {runs} interval(s)")

    def details(self, batch, bad, lo, hi, i, consts) -> dict[str, Any]:
        return {"interval": [float(batch.x[lo]), float(batch.x[hi])], "count": int(bad.sum()),
                "swept": int(bad.size), "x": float(batch.x[i]),
                **dict(zip(self.scalars, consts))}

    def reproduce(self, x: float, consts: tuple[float, ...], kind: str, repeatable: bool,
                  seed: int | None = None) -> tuple[tuple | None, bool]:
        """The core's check at x alone (the parameters as scalar inputs): its message,
        reproducer and inputs when it shows ``kind`` (else None), and whether it found nothing
        at all. ``repeatable``: two calls over every swept value gave the same outputs and
        gradients, so the check's own calls that look for noise (one before its own, more
        before a finding stands) are not repeated."""
        inputs = [tf.constant([x], self.tf_dtype)] + [tf.constant(c, self.tf_dtype)
                                                      for c in consts]
        try:
            tgt = as_target(self.make(), self.name, self.reference)
            report = check_with(tgt, as_tensors(tgt, inputs), CheckOptions(
                elementwise=True, rtol=self.rtol, atol=self.atol, modes=(), domain=self.domain),
                seed=self.seed if seed is None else seed, probe_determinism=not repeatable)
        except (TypeError, ValueError):
            return None, False
        finding = next((f for f in report.findings if f.kind == kind), None)
        if finding is None:
            return None, report.ok
        message = finding.message
        if message.startswith(f"{self.name}: "):
            message = message[len(self.name) + 2:]
        reproducer = report.reproducer  # the core's: a layer as its constructor call
        return (message, reproducer, finding.inputs), False

    def sweep_call(self) -> str:
        domain = f", domain={self.domain!r}" if self.domain is not None else ""
        kinks = f", kinks={self.kinks!r}" if self.kinks else ""
        args = f", args={self.scalars!r}" if self.scalars else ""
        return f"gradcheck.sweep({self.name}, dtype={self.dtype!r}{domain}{kinks}{args})"


_TENSORS: dict[int, tuple[np.ndarray, tf.Tensor]] = {}  # id of a cached grid -> its tensor

#: Cotangent seeds a sweep's finding is tried with at one value, beyond the sweep's own, before
#: it is set aside as the rounding of the batch's cotangent (``_Sweep.describe``).
_MORE_COTANGENTS = 3


def _values_tensor(values: np.ndarray, dtype: tf.DType) -> tf.Tensor:
    """``values`` (one of ``grid.values``'s cached, read-only arrays) as a tensor of ``dtype``,
    made once per array: every sweep of a 16-bit dtype over the whole range takes the same
    63 487 values (a run of ``pytest --gradcheck`` sweeps each activation in float16 and
    bfloat16). Kept by the array's identity, checked on use."""
    kept = _TENSORS.get(id(values))
    if kept is None or kept[0] is not values or kept[1].dtype != dtype:
        kept = _TENSORS[id(values)] = (values, tf.constant(values, dtype))
        while len(_TENSORS) > 8:
            _TENSORS.pop(next(iter(_TENSORS)))
    return kept[1]


def _second_call(tgt: Any, x: tf.Tensor, v: tf.Tensor) -> tuple[np.ndarray, Any]:
    """The target's output and gradient of x (with the core's cotangent ``v``, the tensor its
    backward pass took) from another call at the same values, float64 NumPy (the gradient
    None where there is none)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.convert_to_tensor(tgt([x]))
    grad = (tape.gradient(y, x, output_gradients=tf.cast(v, y.dtype))
            if y.shape == x.shape else None)
    return _f64(y), None if grad is None else _f64(tf.convert_to_tensor(grad))


def _merge(a: _Batch, b: _Batch) -> _Batch:
    order = np.argsort(np.concatenate([a.x, b.x]), kind="stable")
    take = lambda u, v: np.concatenate([u, v])[order]  # noqa: E731
    return _Batch(take(a.x, b.x), take(a.code, b.code), take(a.y, b.y), take(a.grad, b.grad),
                  a.findings + [f for f in b.findings
                                if f.kind not in {g.kind for g in a.findings}],
                  repeatable=a.repeatable and b.repeatable)
