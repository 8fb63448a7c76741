"""The numbers gradcheck.plot draws: per point, f, the analytic and the numerical derivative
and the core's verdict on them.

Everything that decides a verdict is the core's own: the float64 reference
(:meth:`Target.float64_reference`), the comparison (:func:`judge_lines` with
:func:`analytic_allowance`), the float16/bfloat16 rounding window (:func:`rounding_window`,
:func:`within_secants`), and each column's title calls :func:`gradcheck.check` itself with the
declaration's options (:func:`check_options`), so a figure and ``pytest --gradcheck`` agree.
What is plot-only (the parameter panels, the random-dy curve, kinks between grid points) is
marked as such where it is computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _said, _smallest_normal
from ._check import check
from ._numerics import (ANALYTIC_ULPS, analytic_allowance, judge_lines, machine_eps,
                        rounding_window, step, within_secants)
from ._options import check_options
from ._plot_points import Points, Spec, points_for, representable
from ._targets import _as_tf_variable, as_target, weights_set_to

__all__ = ["Curve", "Panel", "compute_panel", "quiet_tensorflow"]

#: At most this many parameter panels per column (scalar parameters first).
MAX_PARAMETER_PANELS = 4
#: A parameter with at most this many components gets one panel per component.
MAX_COMPONENTS = 4
#: Intervals searched for a kink between grid points, the sharpest first.
MAX_KINK_CANDIDATES = 12


@dataclasses.dataclass
class Curve:
    """One derivative panel: analytic against numerical, per point, in abscissa units."""

    label: str
    analytic: np.ndarray
    numerical: np.ndarray
    bound: np.ndarray          # error bound of the numerical value
    mismatch: np.ndarray       # bool
    nonfinite: np.ndarray      # bool: the analytic value is NaN/Inf
    value: float | None = None  # the parameter's value, for parameter panels


@dataclasses.dataclass
class Panel:
    """Everything drawn in one dtype's column."""

    dtype: str
    reference_dtype: str
    points: Points | None = None
    f: np.ndarray | None = None
    nonfinite_f: np.ndarray | None = None
    primary: Curve | None = None
    parameters: list[Curve] = dataclasses.field(default_factory=list)
    left_out: list[str] = dataclasses.field(default_factory=list)
    random_dy: np.ndarray | None = None    # analytic derivative from a random dy, / dy
    kinks: list[float] = dataclasses.field(default_factory=list)
    check_kinds: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        curve = self.primary
        return {
            "dtype": self.dtype, "reference_dtype": self.reference_dtype,
            "points": 0 if self.points is None else int(self.points.abscissa.size),
            "mismatched": 0 if curve is None else int(curve.mismatch.sum()),
            "nonfinite_f": 0 if self.nonfinite_f is None else int(self.nonfinite_f.sum()),
            "nonfinite_gradient": 0 if curve is None else int(curve.nonfinite.sum()),
            "kinks": [float(k) for k in self.kinks],
            "parameters": {c.label: int(c.mismatch.sum()) for c in self.parameters},
            "random_dy_differs": (0 if self.random_dy is None
                                  else int(np.isfinite(self.random_dy).sum())),
            "check": list(self.check_kinds), "error": self.error,
        }


@dataclasses.dataclass
class _Param:
    """A scalar quantity whose derivative gets its own panel: an arg or weight component."""

    label: str
    arg: int | None            # index into the fixed args, or None for a weight
    weight: int | None         # index into the weights, or None for an arg
    index: tuple[int, ...]     # the component
    value: float


class _NotBatched(Exception):
    """The output does not keep the batch axis: draw the points one call each."""


def compute_panel(spec: Spec, dtype: str) -> Panel:
    """Evaluate the target in ``dtype`` and its reference at the points; judge each point."""
    panel = Panel(dtype=dtype, reference_dtype=dtype)
    try:
        points = points_for(spec, dtype)
        try:
            run = _Evaluation(spec, dtype, points)
        except _NotBatched:
            why = "the output does not keep the batch axis: one call per point"
            run = _Evaluation(spec, dtype, points.unbatched(why))
    except Exception as exc:  # noqa: BLE001 - the target's own failure is what we draw
        panel.error = _clean(f"{type(exc).__name__}: {_said(exc)}")
        return panel
    panel.points, panel.reference_dtype = run.points, run.ref_dtype
    panel.f, panel.nonfinite_f = run.f, run.nonfinite_f
    panel.primary = run.primary_curve()
    panel.parameters, panel.left_out = run.parameter_curves(), run.left_out
    panel.random_dy = run.random_dy_curve()
    panel.kinks = run.kinks(panel.primary)
    panel.check_kinds = run.core_check()
    return panel


class _Evaluation:
    """The target in one dtype at the points: analytic side, reference side, verdicts.

    phi_i is the mean of the output over point i (its row, or its whole output), so that an
    all-ones upstream dy on the mean gives, per point, the derivative along its step.
    """

    def __init__(self, spec: Spec, dtype: str, points: Points):
        self.spec, self.dtype, self.points = spec, dtype, points
        self.target = spec.build(dtype)
        self.tgt = as_target(self.target, spec.entry.name, spec.builder())
        self.eps = machine_eps(dtype)
        self.tiny = _smallest_normal(tf.as_dtype(dtype))
        self.n = points.abscissa.size
        self.base, self.step, self.scale = points.at(points.abscissa, rounded=True)
        self.analytic()
        self.choose_reference()

    # ---- inputs and calls

    def inputs(self, dtype: str, base: np.ndarray, args: Sequence[np.ndarray]) -> list[Any]:
        return [tf.constant(base, dtype)] + [tf.constant(a, dtype) for a in args]

    def calls(self, base: np.ndarray) -> list[np.ndarray]:
        """The inputs x of the calls that cover ``base``: one, or one per point."""
        return [base] if self.points.batched else list(base)

    def mean_per_point(self, y: Any, count: int) -> Any:
        y = tf.convert_to_tensor(y)
        if not self.points.batched:
            return tf.reshape(tf.reduce_mean(y), (1,))
        if y.shape.rank == 0 or y.shape[0] != count:
            raise _NotBatched()
        return tf.reduce_mean(tf.reshape(y, (count, -1)), axis=1)

    # ---- analytic side, in the target's dtype, all-ones dy on the mean

    def analytic(self) -> None:
        """f per point, the analytic derivative along each point's step, and each drawn
        parameter's derivative per point."""
        self.params = None
        parts = [self.differentiate(x, step)
                 for x, step in zip(self.calls(self.base), self.calls(self.step))]
        self.f = np.concatenate([p["f"] for p in parts])
        self.grad_t = np.concatenate([p["along"] for p in parts])
        self.nonfinite_f = np.concatenate([p["nonfinite"] for p in parts])
        self.jacobians = np.concatenate([p["jacobians"] for p in parts], axis=1)

    def differentiate(self, x: np.ndarray, step: np.ndarray) -> dict[str, np.ndarray]:
        count = x.shape[0] if self.points.batched else 1
        args = self.inputs(self.dtype, x, self.points.args)
        if self.params is None:
            self.tgt(args)  # builds a layer's weights before the tape watches them
        with tf.GradientTape(persistent=True) as tape:
            for a in args:
                tape.watch(a)
            y = tf.convert_to_tensor(self.tgt(args))
            phi = self.mean_per_point(y, count)
        if self.params is None:
            self.params, self.weights = self.parameters(args, tape)
        g = tape.gradient(phi, args[0])
        g = np.zeros(x.shape) if g is None else _f64(g)
        finite = np.isfinite(_f64(y))
        if self.points.batched:
            self.tape, self.args_t, self.y = tape, args, y  # for the random-dy curve
            nonfinite = ~finite.reshape(count, -1).all(axis=1)
        else:
            nonfinite = np.array([not finite.all()])
        return {"f": _f64(phi), "along": (g * step).reshape(count, -1).sum(axis=1),
                "nonfinite": nonfinite, "jacobians": self.parameter_jacobians(tape, phi, args)}

    def parameters(self, args: list[Any], tape: Any) -> tuple[list[_Param], list[Any]]:
        """The scalar parameters to draw: args, then the layer's tracked weights and the
        trainable variables it uses untracked; scalars first, at most MAX_PARAMETER_PANELS
        panels. What does not fit is listed in ``left_out``."""
        names = list(self.spec.decl.args)
        candidates = [(names[k] if k < len(names) else f"input {k + 1}", k, None, value)
                      for k, value in enumerate(self.points.args)]
        tracked = [_as_tf_variable(w) for w in (self.tgt.tracked_weights() or [])]
        weights = tracked + [v for v in tape.watched_variables()
                             if v.trainable and all(v is not w for w in tracked)]
        for j, w in enumerate(weights):
            untracked = "" if any(w is t for t in tracked) else " (untracked)"
            candidates.append((_short_name(w.name) + untracked, None, j, _f64(w)))
        candidates.sort(key=lambda c: np.size(c[3]) > 1)  # scalars first, else in order
        chosen: list[_Param] = []
        self.left_out = []
        for label, arg, weight, value in candidates:
            size = int(np.size(value))
            if size > MAX_COMPONENTS or len(chosen) + size > MAX_PARAMETER_PANELS:
                self.left_out.append(f"{label} ({size} value{'s' if size > 1 else ''})")
                continue
            for index in np.ndindex(np.shape(value)):
                suffix = f"[{', '.join(map(str, index))}]" if index else ""
                chosen.append(_Param(label + suffix, arg, weight, index,
                                     float(np.asarray(value)[index])))
        return chosen, weights

    def parameter_jacobians(self, tape: Any, phi: Any, args: list[Any]) -> np.ndarray:
        """d phi_i / d parameter: (parameters, points of this call)."""
        count = int(phi.shape[0])
        jacobians: dict[tuple[str, int], np.ndarray | None] = {}
        rows = []
        for p in self.params:
            key = ("arg", p.arg) if p.arg is not None else ("weight", p.weight)
            if key not in jacobians:
                source = args[1 + p.arg] if p.arg is not None else self.weights[p.weight]
                jacobians[key] = _jacobian(tape, phi, source)
            jac = jacobians[key]
            rows.append(np.zeros(count) if jac is None else jac[(slice(None),) + p.index])
        return np.array(rows).reshape(len(self.params), count)

    # ---- reference side, in float64 when the target runs there

    def choose_reference(self) -> None:
        """The float64 twin of the target (weights copied) when it runs, else the target:
        :meth:`Target.float64_reference`, as gradcheck.check chooses."""
        self.ref, self.ref_weights, self.ref_dtype = self.tgt, self.weights, self.dtype
        if self.dtype == "float64":
            return
        x = self.calls(self.base)[0]
        found = self.tgt.float64_reference(self.inputs(self.dtype, x, self.points.args),
                                           self.weights)
        if found is not None:
            self.ref, self.ref_weights, _ = found
            self.ref_dtype = "float64"

    def evaluate(self, offsets: Any = 0.0, param: _Param | None = None, shift: float = 0.0,
                 at: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """phi per point of the reference at base + offsets * step (``at`` replaces base and
        step), with one parameter component shifted by ``shift``."""
        base, step = at if at is not None else (self.base, self.step)
        offsets = np.broadcast_to(np.asarray(offsets, dtype=float), (base.shape[0],))
        moved = base + offsets.reshape((-1,) + (1,) * (base.ndim - 1)) * step
        args = [a.astype(float).copy() for a in self.points.args]
        values = None
        if param is not None and param.arg is not None:
            args[param.arg][param.index] += shift
        elif param is not None:
            values = [_f64(w) for w in self.ref_weights]
            values[param.weight][param.index] += shift
        with weights_set_to(self.ref_weights, values):
            return np.concatenate([self.reference_phi(x, args) for x in self.calls(moved)])

    def reference_phi(self, x: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
        y = _f64(self.ref(self.inputs(self.ref_dtype, x, args)))
        if not self.points.batched:
            return np.array([y.mean()])
        return y.reshape(x.shape[0], -1).mean(axis=1)

    def magnitude(self) -> np.ndarray:
        """Per point, the mean of max(1, |F|) over its outputs: what rounding scales with."""
        parts = []
        for x in self.calls(self.base):
            y = np.maximum(1.0, np.abs(_f64(self.ref(self.inputs(self.ref_dtype, x,
                                                                  self.points.args)))))
            parts.append(y.reshape(x.shape[0], -1).mean(axis=1) if self.points.batched
                         else np.array([y.mean()]))
        return np.concatenate(parts)

    def low_precision(self) -> bool:
        return self.ref_dtype != self.dtype

    # ---- verdicts, by the core's rule

    def primary_curve(self) -> Curve:
        """Analytic against numerical along each point's step: judge_lines with the
        allowance of gradcheck.check's elementwise route (analytic_allowance, with
        max(1, |x|, |f|) as the magnitude of the terms in a low dtype)."""
        self.h, self.eps_ref = step(self.ref_dtype), machine_eps(self.ref_dtype)
        self.size = self.magnitude()
        self.reach = np.maximum(1.0, np.abs(self.base).reshape(self.n, -1).max(axis=1))
        samples = {k: self.evaluate(k * self.h) for k in (-2, -1, 0, 1, 2)}
        self.f0 = samples[0]
        analytic = np.where(np.isfinite(self.grad_t), self.grad_t, 0.0)
        allowance = analytic_allowance(analytic, self.eps, self.low_precision(),
                                       np.maximum(self.reach, np.abs(self.f)), self.tiny,
                                       step=self.scale)
        verdict = judge_lines(samples, self.h, analytic, self.eps_ref * self.size * self.scale,
                              allowance)
        ok = verdict.ok
        if self.low_precision() and not ok.all():
            ok = ok | self.within_rounding_window(samples, analytic, verdict, allowance)
        nonfinite = ~np.isfinite(self.grad_t)
        self.kink_points = verdict.kink
        return Curve(label="", analytic=self.grad_t / self.scale,
                      numerical=verdict.numerical / self.scale,
                      bound=verdict.bound / self.scale,
                      mismatch=~ok & ~nonfinite & ~self.nonfinite_f, nonfinite=nonfinite)

    def within_rounding_window(self, samples, analytic, verdict, allowance) -> np.ndarray:
        """gradcheck.check's rule for float16/bfloat16 (rounding_window, within_secants):
        accept an analytic value equal to some secant slope of the reference over the inputs
        the dtype cannot tell apart. The window is in x; offsets along a point's step are in
        t = x / scale, as are the slopes compared here."""
        x = np.abs(self.base).reshape(self.n, -1).max(axis=1)
        width = rounding_window(self.eps, self.h, x, self.f0, np.abs(verdict.numerical))
        width = width / self.scale
        curvature = np.abs(samples[1] - 2 * samples[0] + samples[-1]) / self.h ** 2
        return within_secants(analytic, self.f0, self.evaluate(-width), self.evaluate(width),
                              width, verdict.numerical, verdict.bound, allowance, curvature)

    def parameter_curves(self) -> list[Curve]:
        """Per point, d phi / d parameter against central differences in the parameter; the
        allowance of gradcheck.check's weight route, per point."""
        curves = []
        for k, p in enumerate(self.params):
            s = max(1.0, abs(p.value))
            samples = {j: self.evaluate(0.0, p, j * self.h * s) for j in (-2, -1, 1, 2)}
            samples[0] = self.f0
            jac = self.jacobians[k]
            analytic = np.where(np.isfinite(jac), jac, 0.0) * s
            allowance = analytic_allowance(analytic, self.eps, self.low_precision(),
                                           np.maximum(self.reach, np.abs(self.f)) * self.reach,
                                           self.tiny, step=s)
            rounding = self.eps_ref * self.size * np.maximum(self.reach, s)
            verdict = judge_lines(samples, self.h, analytic, rounding, allowance)
            nonfinite = ~np.isfinite(jac)
            curves.append(Curve(label=p.label, analytic=jac, numerical=verdict.numerical / s,
                                 bound=verdict.bound / s,
                                 mismatch=~verdict.ok & ~nonfinite & ~self.nonfinite_f,
                                 nonfinite=nonfinite, value=p.value))
        return curves

    def random_dy_curve(self) -> np.ndarray | None:
        """For an elementwise target, the analytic derivative from a random signed dy divided
        by dy, where it differs from the all-ones one (a gradient that ignores or mishandles
        dy); None where it never does."""
        if not (self.spec.decl.elementwise and self.points.batched):
            return None
        y = self.y
        rng = np.random.default_rng(self.spec.seed + 1)
        v = rng.choice([-1.0, 1.0], size=y.shape) * rng.uniform(0.5, 1.5, size=y.shape)
        v = representable(v, self.dtype)
        g = self.tape.gradient(y, self.args_t[0], output_gradients=tf.constant(v, y.dtype))
        if g is None or g.shape != y.shape:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            per = (_f64(g) / v).reshape(self.n, -1).mean(axis=1)
        ones = self.grad_t / self.scale
        # Two analytic derivatives, each within ANALYTIC_ULPS roundings of the exact one (and
        # a smallest normal number, twice, for values that flush to 0 in either).
        tolerance = (2 * ANALYTIC_ULPS * self.eps * np.maximum(np.abs(ones), 1.0)
                     + 4 * self.tiny)
        with np.errstate(invalid="ignore"):
            differs = (np.abs(per - ones) > tolerance) & np.isfinite(ones)
        return np.where(differs, per, np.nan) if differs.any() else None

    def kinks(self, curve: Curve) -> list[float]:
        """Kinks at grid points (the second differences of judge_lines) and between them:
        where the numerical derivative jumps far more than around it, bisected down to a
        width of 20 steps; a kink if the jump does not shrink with the width."""
        found = list(self.points.abscissa[self.kink_points])
        d, xs = curve.numerical, self.points.abscissa
        if d.size >= 5:
            jump = np.abs(np.diff(d))
            around = np.maximum(np.concatenate([[0, 0], jump[:-2]]),
                                np.concatenate([jump[2:], [0, 0]]))
            noise = 2 * (np.nan_to_num(curve.bound[:-1]) + np.nan_to_num(curve.bound[1:]))
            floor = noise + 1e-9 * np.maximum(1.0, np.abs(d[:-1]))
            with np.errstate(invalid="ignore"):
                sharp = np.flatnonzero((jump > 8 * around + floor) & np.isfinite(jump))
            sharp = sharp[np.argsort(-jump[sharp])][:MAX_KINK_CANDIDATES]
            spacing = (xs[-1] - xs[0]) / max(1, xs.size - 1)
            found += [x for x in self.bisect(xs[sharp], xs[sharp + 1], d[sharp], d[sharp + 1],
                                             floor[sharp])
                      if all(abs(x - k) > 1.5 * spacing for k in found)]
        return _merged(sorted(found), xs)

    def bisect(self, lo, hi, d_lo, d_hi, floor) -> list[float]:
        if lo.size == 0:
            return []
        initial = np.abs(d_hi - d_lo)
        for _ in range(60):
            mid = (lo + hi) / 2
            wide = (hi - lo) > 20 * self.h * np.maximum(1.0, np.abs(mid))
            if not wide.any():
                break
            d_mid = self.derivative_at(mid)
            right = np.abs(d_hi - d_mid) >= np.abs(d_mid - d_lo)
            lo, d_lo = np.where(wide & right, mid, lo), np.where(wide & right, d_mid, d_lo)
            hi, d_hi = np.where(wide & ~right, mid, hi), np.where(wide & ~right, d_mid, d_hi)
        kink = np.abs(d_hi - d_lo) > np.maximum(0.25 * initial, floor)
        # A kink on a grid point ends the search next to it (the central difference there is
        # the average of the two slopes): say the grid point.
        xs = self.points.abscissa
        nearest = xs[np.abs(xs[None, :] - ((lo + hi) / 2)[:, None]).argmin(axis=1)]
        at_grid = np.abs(nearest - (lo + hi) / 2) <= 2 * (hi - lo)
        return list(np.where(at_grid, nearest, (lo + hi) / 2)[kink])

    def derivative_at(self, values: np.ndarray) -> np.ndarray:
        """Central difference of the reference at the coordinates ``values``."""
        base, step, scale = self.points.at(values)
        with np.errstate(invalid="ignore"):
            return (self.evaluate(self.h, at=(base, step))
                    - self.evaluate(-self.h, at=(base, step))) / (2 * self.h * scale)

    def core_check(self) -> list[str]:
        """What gradcheck.check finds at the plotted points (random dy, its own seed), with
        every option the declaration fixes, as ``pytest --gradcheck`` passes them
        (check_options): order, modes and policies included."""
        decl = self.spec.decl
        x = self.calls(self.base)[len(self.calls(self.base)) // 2]
        try:
            report = check(self.target, *self.inputs(self.dtype, x, self.points.args),
                           seed=self.spec.seed, name=self.spec.entry.name,
                           reference=self.spec.builder(), **check_options(decl))
        except (TypeError, ValueError) as exc:
            return [f"cannot check: {_clean(str(exc))}"]
        return report.kinds


def _jacobian(tape: Any, phi: Any, source: Any) -> np.ndarray | None:
    """d phi / d source, (points, *source.shape), vectorized when TensorFlow can."""
    try:
        jac = tape.jacobian(phi, source)
    except Exception:  # noqa: BLE001 - pfor cannot vectorize every gradient: loop instead
        jac = tape.jacobian(phi, source, experimental_use_pfor=False)
    return None if jac is None else _f64(jac)


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """TensorFlow's retracing warnings off: every jacobian (pfor) and every check of a new
    shape is a new trace, by design here."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":")[0]


def _merged(positions: list[float], xs: np.ndarray) -> list[float]:
    """Positions closer than 1.5 grid spacings merged into the first."""
    spacing = (xs[-1] - xs[0]) / max(1, xs.size - 1)
    merged: list[float] = []
    for x in positions:
        if not merged or x - merged[-1] > 1.5 * spacing:
            merged.append(float(x))
    return merged


def _clean(text: str) -> str:
    """An exception text without terminal colour codes and with blank lines squeezed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()
