"""Plots of a target's derivative: f, the analytic f' and the numerical f', one column per dtype.

    import gradcheck.plot

    fig = gradcheck.plot.derivatives(my_activation, path="my_activation.png")

Each column is one dtype. Its top panel is f over the declared domain, computed in that dtype;
the next is the analytic derivative (autodiff in that dtype, upstream dy all ones) beside the
numerical one (central differences of the float64 version when the target runs in float64,
otherwise of the target itself, with the core's step ``eps^(1/3) * max(1, |x|)``). Below come
the derivatives with respect to each scalar parameter: each ``args`` entry of an activation and
each trainable weight of a layer (one panel per component of a small parameter), over the same
points.

Elementwise targets are drawn over a grid of the domain (declared kinks and 0 included). Other
targets are drawn along a line ``x0 + t * u`` through a random base point ``x0`` in a random
direction ``u`` (both from ``seed``): the panels show ``mean f(x0 + t * u)`` and its derivative
in ``t``. A target whose input has several features (``input_shape=(None, 4)``) is drawn with
every feature set to ``x`` and the mean over the features plotted.

What is marked:

- mismatch (red shading and dots): the analytic derivative disagrees with the numerical one by
  the core's rule: :func:`gradcheck._numerics.judge_lines` with the allowances of
  :func:`gradcheck.check` (in float16/bfloat16 also its window of inputs the dtype cannot tell
  apart);
- NaN/Inf in f or in a derivative (crosses along the bottom edge);
- declared kinks (dotted lines) and detected ones (triangles along the top edge);
- for elementwise targets, the analytic derivative taken with a random upstream dy and divided
  by it, wherever that differs from the all-ones one (a gradient that ignores or mishandles dy).

Each column's title names the target and dtype and what :func:`gradcheck.check` reports at the
plotted points. The figure carries the same facts as plain data in ``figure.gradcheck``.

matplotlib is an optional dependency (``pip install gradcheck[plot]``). Only its
object-oriented API is used, never pyplot: plotting changes no global state and needs no display.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import textwrap
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["derivatives"]

#: At most this many parameter panels per column (scalar parameters first).
MAX_PARAMETER_PANELS = 4
#: A parameter with at most this many components gets one panel per component.
MAX_COMPONENTS = 4
#: Targets that are not batch independent are called once per point: fewer points.
MAX_POINTS_UNBATCHED = 41
#: Intervals searched for a kink between grid points, the sharpest first.
MAX_KINK_CANDIDATES = 12
#: Size of one panel in inches, and of the legend strip under the panels.
PANEL_SIZE = (4.8, 2.4)
LEGEND_ROW_HEIGHT = 0.2
MIN_WIDTH = 8.0
SUPTITLE_CHARS_PER_INCH = 8
#: Mismatching points are also dotted when there are at most this many (shading alone can be
#: too thin to see for a single point); more are shaded only, keeping the curves visible.
MAX_MISMATCH_DOTS = 40
#: Characters per line of a column title (wider lines run into the next column).
TITLE_WIDTH = 56

# Colours and styles, kept together so that every panel reads the same.
_F_STYLE = {"color": "0.15", "linewidth": 1.6}
_ANALYTIC_STYLE = {"color": "tab:blue", "linewidth": 2.2, "alpha": 0.85}
_NUMERICAL_STYLE = {"color": "tab:orange", "linewidth": 1.3, "linestyle": "--"}
_MISMATCH_COLOR = "tab:red"
_LEGEND_ORDER = ("f (", "analytic derivative", "numerical derivative", "mismatch:",
                 "mismatching point", "analytic with a random dy", "NaN/Inf", "declared kink",
                 "kink detected", "minimal failing input")
_NONFINITE_COLOR = "darkviolet"


def derivatives(target: Any, *, dtypes: Iterable[str] | None = None, points: int = 401,
                seed: int = 0, path: Any = None, dpi: int = 100,
                highlight: Sequence[float] = (), **declaration_options: Any) -> Any:
    """Draw f, its analytic and its numerical derivative for every dtype of ``target``.

    Args:
        target: a function of tensors (plain, ``tf.custom_gradient``, ``tf.function``), a
            Keras Layer subclass, instance or zero-argument factory, a target declared with
            ``@gradcheck.activation``/``@gradcheck.layer``, or a registry entry
            (:class:`gradcheck._declare.Registered`).
        dtypes: the dtype names to draw, one column each (default: the declared ones; a Layer
            instance: its own).
        points: points along the abscissa (at most 41 for targets that are not batch
            independent, which are called once per point).
        seed: seeds the base point and direction of non-elementwise targets, the values of
            tensor parameters, and the random upstream dy.
        path: where to save the figure as PNG (anything ``Figure.savefig`` accepts), or None.
        dpi: resolution; the image is ``figure.get_size_inches() * dpi`` pixels.
        highlight: abscissa values to mark, e.g. the input fuzzing shrank a failure to.
        **declaration_options: fields of :class:`gradcheck._declare.Declaration` that replace
            the declared ones, e.g. ``domain=(-5, 5)``.

    Returns:
        A ``matplotlib.figure.Figure``. Its attribute ``gradcheck`` holds what was found per
        dtype as plain data: ``{"target": ..., "abscissa": "x" | "t", "panels": [...]}``, each
        panel a dict with ``dtype``, ``points``, ``mismatched``, ``nonfinite_f``,
        ``nonfinite_gradient``, ``kinks`` (abscissae), ``parameters`` (label -> mismatched
        points), ``random_dy_differs`` (points where a random dy changes the analytic
        derivative), ``check`` (the finding kinds :func:`gradcheck.check` reports there) and
        ``error`` (the exception text when the target raised, else None).

    Raises:
        ImportError: matplotlib is not installed.
        TypeError, ValueError: an unknown option, a dtype that is not declared for a Layer
            instance, ``points < 5``.
    """
    _require_matplotlib()
    spec = _Spec.resolve(target, dtypes, points, seed, tuple(highlight), declaration_options)
    with _quiet_tensorflow():
        panels = [_compute(spec, dtype) for dtype in spec.dtypes]
    figure = _draw(spec, panels, dpi)
    figure.gradcheck = {"target": spec.entry.qualified, "abscissa": spec.abscissa,
                        "panels": [panel.summary() for panel in panels]}
    if path is not None:
        figure.savefig(path, dpi=dpi)
    return figure


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("gradcheck.plot needs matplotlib: pip install 'gradcheck[plot]' "
                          "(or pip install matplotlib)") from exc


# -- what to draw ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Spec:
    """The target, its declaration and the plotting choices, resolved once for all dtypes."""

    entry: Any                 # a Registered
    instance: Any              # a Layer instance given directly, or None
    dtypes: tuple[str, ...]
    points: int
    seed: int
    highlight: tuple[float, ...]

    @classmethod
    def resolve(cls, target: Any, dtypes: Iterable[str] | None, points: int, seed: int,
                highlight: tuple[float, ...], options: dict[str, Any]) -> "_Spec":
        from ._declare import DTYPES, OPTIONS, Registered
        from ._fuzz import _entry_for

        if not isinstance(points, int) or points < 5:
            raise ValueError(f"gradcheck.plot: points must be an integer >= 5, got {points!r}")
        unknown = [name for name in options if name not in OPTIONS]
        if unknown:
            raise TypeError(f"gradcheck.plot: unknown option {unknown[0]!r}; valid options are "
                            "dtypes, points, seed, path, dpi, highlight and the declaration "
                            f"fields {', '.join(OPTIONS)}")
        instance = None
        if isinstance(target, Registered):
            entry = target
            if options:
                entry = dataclasses.replace(entry, declaration=dataclasses.replace(
                    entry.declaration, **options))
        else:
            entry, is_instance = _entry_for(target, options)
            instance = target if is_instance else None
        own = (instance.compute_dtype,) if instance is not None else entry.declaration.dtypes
        chosen = tuple(dict.fromkeys(dtypes)) if dtypes is not None else tuple(own)
        unknown = [d for d in chosen if d not in DTYPES]
        if unknown or not chosen:
            raise ValueError(f"gradcheck.plot: {entry.qualified}: dtypes={list(chosen)!r}; "
                             f"expected names from {', '.join(DTYPES)}")
        if instance is not None and set(chosen) - set(own):
            raise ValueError(f"gradcheck.plot: {entry.qualified} is a Layer instance in "
                             f"{own[0]}; it cannot be drawn in {', '.join(chosen)}: pass its "
                             "class or a factory to draw other dtypes")
        return cls(entry, instance, chosen, points, seed, highlight)

    @property
    def decl(self) -> Any:
        return self.entry.declaration

    @property
    def abscissa(self) -> str:
        return "x" if self.decl.elementwise else "t"

    def build(self, dtype: str) -> Any:
        return self.instance if self.instance is not None else self.entry.build(dtype)

    def builder(self) -> Any:
        """The reference builder gradcheck.check uses for a declared layer."""
        if self.instance is None and self.decl.kind == "layer":
            return self.entry.build
        return None


@dataclasses.dataclass
class _Points:
    """Where the target is evaluated: point i is ``origin + s_i * direction`` for the plotted
    coordinate ``s_i`` (x on a grid: origin 0, direction all ones; t on a line: origin x0,
    direction u).

    Batched: the points are the rows of one input (one call for all of them); otherwise each
    point is a whole input (one call each).
    """

    abscissa: np.ndarray       # (n,) s, the plotted coordinate
    origin: np.ndarray         # shape of one point
    direction: np.ndarray      # shape of one point
    args: list[np.ndarray]     # the other inputs, fixed, float64
    batched: bool
    dtype: str
    note: str                  # how the points were laid out, for the title

    def at(self, values: np.ndarray, rounded: bool = False) -> tuple[np.ndarray, ...]:
        """``(base, step, scale)`` at the coordinates ``values``: the stacked points, each
        point's direction times the core's step scale max(1, max |x|) (so offsets along
        ``step`` are in the core's dimensionless units), and that scale per point."""
        values = np.asarray(values, dtype=float)
        lift = values.reshape((-1,) + (1,) * self.origin.ndim)
        base = self.origin[None] + lift * self.direction[None]
        if rounded:
            base = _representable(base, self.dtype)
        scale = np.maximum(1.0, np.abs(base).reshape(len(values), -1).max(axis=1))
        step = self.direction[None] * scale.reshape(lift.shape)
        return base, step, scale

    def unbatched(self, why: str = "") -> "_Points":
        """The same points, each as an input of its own (for targets that couple rows)."""
        if self.batched:
            origin, direction = self.origin[None], self.direction[None]
        else:
            origin, direction = self.origin, self.direction
        note = "; ".join(n for n in (self.note, why or "one call per point") if n)
        return dataclasses.replace(self, origin=origin, direction=direction, batched=False,
                                   abscissa=_thinned(self.abscissa, MAX_POINTS_UNBATCHED),
                                   note=note)


def _points_for(spec: _Spec, dtype: str) -> _Points:
    args = _arg_values(spec.decl)
    if spec.decl.elementwise:
        return _grid_points(spec, dtype, args)
    return _line_points(spec, dtype, args, np.random.default_rng(spec.seed))


def _arg_values(decl: Any) -> list[np.ndarray]:
    """Each ``args`` entry at the middle of its range (a tensor filled with it): every feature
    then sees the same function, and the curve is the target's, not a mix of features."""
    values = []
    for spec in decl.args.values():
        shape, low, high = spec if len(spec) == 3 else ((), *spec)
        values.append(np.full(tuple(shape), (low + high) / 2.0))
    return values


def _grid_points(spec: _Spec, dtype: str, args: list[np.ndarray]) -> _Points:
    """A grid over the domain (0, declared kinks and highlights included), rounded to the
    dtype; every feature of a row set to the same x."""
    low, high = spec.decl.domain
    special = [v for v in (0.0, *spec.decl.kinks, *spec.highlight) if low <= v <= high]
    grid = np.unique(_representable(np.concatenate([np.linspace(low, high, spec.points),
                                                    special]), dtype))
    row = _row_shape(spec.decl.input_shape, args)
    features = int(np.prod(row, dtype=int))
    note = f"all {features} features = x, mean over them plotted" if features > 1 else ""
    points = _Points(grid, np.zeros(row), np.ones(row), args, True, dtype, note)
    return points if spec.decl.batch_independent else points.unbatched(
        "not batch independent: one call per point")


def _row_shape(pattern: tuple | None, args: list[np.ndarray]) -> tuple[int, ...]:
    """The shape of one grid row: the declared input shape past the batch axis (None: 1)."""
    if pattern is None:
        shapes = [a.shape for a in args if a.ndim]
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()
    return tuple(1 if size is None else int(size) for size in pattern[1:])


def _line_points(spec: _Spec, dtype: str, args: list[np.ndarray],
                 rng: np.random.Generator) -> _Points:
    """Points x0 + t u for a random x0 in the middle half of the domain and a random u with
    max |u| = 1, t over the longest range that keeps every coordinate inside the domain."""
    decl = spec.decl
    pattern = decl.input_shape or (None, 4)
    shape = tuple(1 if size is None and i == 0 else 3 if size is None else int(size)
                  for i, size in enumerate(pattern))
    low, high = decl.domain
    middle, half = (low + high) / 2.0, (high - low) / 2.0
    x0 = _representable(middle + rng.uniform(-half / 2, half / 2, size=shape), dtype)
    u = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.0, size=shape)
    u /= np.max(np.abs(u))
    with np.errstate(divide="ignore"):
        to_low, to_high = (low - x0) / u, (high - x0) / u
    t_low = float(np.max(np.minimum(to_low, to_high)))
    t_high = float(np.min(np.maximum(to_low, to_high)))
    t = np.unique(np.concatenate([np.linspace(t_low, t_high, spec.points), [0.0],
                                  [v for v in spec.highlight if t_low <= v <= t_high]]))
    note = "x = x0 + t·u, random x0 and u"
    if decl.batch_independent:
        return _Points(t, x0[0], u[0], args, True, dtype, note)
    return _Points(_thinned(t, MAX_POINTS_UNBATCHED), x0, u, args, False, dtype,
                   note + f"; input shape {shape}, not batch independent: one call per t")


def _thinned(values: np.ndarray, most: int) -> np.ndarray:
    if values.size <= most:
        return values
    keep = np.unique(np.round(np.linspace(0, values.size - 1, most)).astype(int))
    return values[keep]


def _representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` (bfloat16 included), back in float64."""
    import tensorflow as tf

    return tf.cast(tf.cast(tf.constant(values, tf.float64), dtype), tf.float64).numpy()


# -- the numbers -------------------------------------------------------------------------------

@dataclasses.dataclass
class _Curve:
    """One derivative panel: analytic against numerical, per point, in abscissa units."""

    label: str
    analytic: np.ndarray
    numerical: np.ndarray
    bound: np.ndarray          # error bound of the numerical value
    mismatch: np.ndarray       # bool
    nonfinite: np.ndarray      # bool: the analytic value is NaN/Inf
    value: float | None = None  # the parameter's value, for parameter panels


@dataclasses.dataclass
class _Panel:
    """Everything drawn in one dtype's column."""

    dtype: str
    reference_dtype: str
    points: _Points | None = None
    f: np.ndarray | None = None
    nonfinite_f: np.ndarray | None = None
    primary: _Curve | None = None
    parameters: list[_Curve] = dataclasses.field(default_factory=list)
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


def _compute(spec: _Spec, dtype: str) -> _Panel:
    """Evaluate the target in ``dtype`` and its reference at the points; judge each point."""
    panel = _Panel(dtype=dtype, reference_dtype=dtype)
    try:
        points = _points_for(spec, dtype)
        try:
            run = _Evaluation(spec, dtype, points)
        except _NotBatched:
            why = "the output does not keep the batch axis: one call per point"
            run = _Evaluation(spec, dtype, points.unbatched(why))
    except Exception as exc:  # noqa: BLE001 - the target's own failure is what we draw
        panel.error = _clean(f"{type(exc).__name__}: {exc}")
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

    def __init__(self, spec: _Spec, dtype: str, points: _Points):
        from ._numerics import machine_eps
        from ._targets import as_target

        self.spec, self.dtype, self.points = spec, dtype, points
        self.target = spec.build(dtype)
        self.tgt = as_target(self.target, spec.entry.name, spec.builder())
        self.eps = machine_eps(dtype)
        self.n = points.abscissa.size
        self.base, self.step, self.scale = points.at(points.abscissa, rounded=True)
        self.analytic()
        self.choose_reference()

    # ---- inputs and calls

    def inputs(self, dtype: str, base: np.ndarray, args: Sequence[np.ndarray]) -> list[Any]:
        import tensorflow as tf

        return [tf.constant(base, dtype)] + [tf.constant(a, dtype) for a in args]

    def calls(self, base: np.ndarray) -> list[np.ndarray]:
        """The inputs x of the calls that cover ``base``: one, or one per point."""
        return [base] if self.points.batched else list(base)

    def mean_per_point(self, y: Any, count: int) -> Any:
        import tensorflow as tf

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
        import tensorflow as tf

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
        from ._targets import _as_tf_variable

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
        """The float64 twin of the target (weights copied) when it runs, else the target."""
        import tensorflow as tf

        self.ref, self.ref_weights, self.ref_dtype = self.tgt, self.weights, self.dtype
        if self.dtype == "float64":
            return
        x = self.calls(self.base)[0]
        twin = self.tgt.twin(tf.float64, self.inputs(self.dtype, x, self.points.args),
                             self.weights)
        if twin is None:
            return
        ref, ref_weights = twin
        try:
            y = tf.convert_to_tensor(ref(self.inputs("float64", x, self.points.args)))
        except Exception:  # noqa: BLE001 - does not run in float64: use its own dtype
            return
        if y.dtype == tf.float64:
            self.ref, self.ref_weights, self.ref_dtype = ref, ref_weights, "float64"

    def evaluate(self, offsets: Any = 0.0, param: _Param | None = None, shift: float = 0.0,
                 at: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """phi per point of the reference at base + offsets * step (``at`` replaces base and
        step), with one parameter component shifted by ``shift``."""
        from ._targets import weights_set_to

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

    def primary_curve(self) -> _Curve:
        """Analytic against numerical along each point's step: judge_lines with the
        allowance of gradcheck.check's elementwise route (8 ulps of the analytic value; in a
        low dtype also 8 ulps of max(1, |x|, |f|) and the smallest normal number)."""
        from ._numerics import judge_lines, step

        self.h, self.eps_ref = step(self.ref_dtype), _eps(self.ref_dtype)
        self.size = self.magnitude()
        self.reach = np.maximum(1.0, np.abs(self.base).reshape(self.n, -1).max(axis=1))
        samples = {k: self.evaluate(k * self.h) for k in (-2, -1, 0, 1, 2)}
        self.f0 = samples[0]
        analytic = np.where(np.isfinite(self.grad_t), self.grad_t, 0.0)
        allowance = 8.0 * self.eps * np.abs(analytic)
        if self.low_precision():
            big = np.maximum(self.reach, np.abs(self.f))
            allowance = allowance + (8.0 * self.eps * big + _tiny(self.dtype)) * self.scale
        verdict = judge_lines(samples, self.h, analytic, self.eps_ref * self.size * self.scale,
                              allowance)
        ok = verdict.ok
        if self.low_precision() and not ok.all():
            ok = ok | self.within_rounding_window(samples, analytic, verdict, allowance)
        nonfinite = ~np.isfinite(self.grad_t)
        self.kink_points = verdict.kink
        return _Curve(label="", analytic=self.grad_t / self.scale,
                      numerical=verdict.numerical / self.scale,
                      bound=verdict.bound / self.scale,
                      mismatch=~ok & ~nonfinite & ~self.nonfinite_f, nonfinite=nonfinite)

    def within_rounding_window(self, samples, analytic, verdict, allowance) -> np.ndarray:
        """gradcheck.check's rule for float16/bfloat16: accept an analytic value equal to some
        secant slope of the reference over the inputs the dtype cannot tell apart: 8 roundings
        of x and of the shift that moves f by its rounding, capped at max(1, |x|)."""
        from ._numerics import secant_hull

        slope = np.abs(verdict.numerical)
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(slope > 0, np.maximum(1.0, np.abs(self.f0)) / slope, np.inf)
        width = np.minimum(8.0 * self.eps * np.maximum(self.reach / self.scale, shift), 1.0)
        width = np.maximum(width, self.h)
        lo, hi = secant_hull(self.f0, self.evaluate(-width), self.evaluate(width), width)
        lo, hi = np.fmin(lo, verdict.numerical), np.fmax(hi, verdict.numerical)
        curvature = np.abs(samples[1] - 2 * samples[0] + samples[-1]) / self.h ** 2
        slack = np.nan_to_num(verdict.bound, nan=0.0) + allowance + curvature * width
        return (analytic >= lo - slack) & (analytic <= hi + slack)

    def parameter_curves(self) -> list[_Curve]:
        """Per point, d phi / d parameter against central differences in the parameter; the
        allowance of gradcheck.check's weight route, per point."""
        from ._numerics import judge_lines

        curves = []
        for k, p in enumerate(self.params):
            s = max(1.0, abs(p.value))
            samples = {j: self.evaluate(0.0, p, j * self.h * s) for j in (-2, -1, 1, 2)}
            samples[0] = self.f0
            jac = self.jacobians[k]
            analytic = np.where(np.isfinite(jac), jac, 0.0) * s
            allowance = 8.0 * self.eps * np.abs(analytic)
            if self.low_precision():
                big = np.maximum(self.reach, np.abs(self.f))
                allowance = allowance + (8.0 * self.eps * big * self.reach
                                         + _tiny(self.dtype)) * s
            rounding = self.eps_ref * self.size * np.maximum(self.reach, s)
            verdict = judge_lines(samples, self.h, analytic, rounding, allowance)
            nonfinite = ~np.isfinite(jac)
            curves.append(_Curve(label=p.label, analytic=jac, numerical=verdict.numerical / s,
                                 bound=verdict.bound / s,
                                 mismatch=~verdict.ok & ~nonfinite & ~self.nonfinite_f,
                                 nonfinite=nonfinite, value=p.value))
        return curves

    def random_dy_curve(self) -> np.ndarray | None:
        """For an elementwise target, the analytic derivative from a random signed dy divided
        by dy, where it differs from the all-ones one (a gradient that ignores or mishandles
        dy); None where it never does."""
        import tensorflow as tf

        if not (self.spec.decl.elementwise and self.points.batched):
            return None
        y = self.y
        rng = np.random.default_rng(self.spec.seed + 1)
        v = rng.choice([-1.0, 1.0], size=y.shape) * rng.uniform(0.5, 1.5, size=y.shape)
        v = _representable(v, self.dtype)
        g = self.tape.gradient(y, self.args_t[0], output_gradients=tf.constant(v, y.dtype))
        if g is None or g.shape != y.shape:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            per = (_f64(g) / v).reshape(self.n, -1).mean(axis=1)
        ones = self.grad_t / self.scale
        tolerance = 16.0 * self.eps * np.maximum(np.abs(ones), 1.0) + 4 * _tiny(self.dtype)
        with np.errstate(invalid="ignore"):
            differs = (np.abs(per - ones) > tolerance) & np.isfinite(ones)
        return np.where(differs, per, np.nan) if differs.any() else None

    def kinks(self, curve: _Curve) -> list[float]:
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
        """What gradcheck.check finds at the plotted points (random dy, its own seed)."""
        from ._check import check

        decl = self.spec.decl
        x = self.calls(self.base)[len(self.calls(self.base)) // 2]
        try:
            report = check(self.target, *self.inputs(self.dtype, x, self.points.args),
                           elementwise=decl.elementwise,
                           batch_independent=decl.batch_independent, rtol=decl.rtol,
                           atol=decl.atol, seed=self.spec.seed, name=self.spec.entry.name,
                           reference=self.spec.builder())
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
def _quiet_tensorflow() -> Iterator[None]:
    """TensorFlow's retracing warnings off: every jacobian (pfor) and every check of a new
    shape is a new trace, by design here."""
    import logging

    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _f64(t: Any) -> np.ndarray:
    import tensorflow as tf

    if isinstance(t, np.ndarray):
        return t.astype(np.float64)
    return np.asarray(tf.cast(tf.convert_to_tensor(t), tf.float64).numpy(), dtype=np.float64)


def _eps(dtype: str) -> float:
    from ._numerics import machine_eps

    return machine_eps(dtype)


def _tiny(dtype: str) -> float:
    return 2.0 ** -126 if dtype == "bfloat16" else float(np.finfo(np.dtype(dtype)).tiny)


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


# -- drawing -----------------------------------------------------------------------------------

def _draw(spec: _Spec, panels: list[_Panel], dpi: int) -> Any:
    from matplotlib.figure import Figure

    rows = 2 + max(len(p.parameters) for p in panels)
    cols = len(panels)
    width = max(MIN_WIDTH, PANEL_SIZE[0] * cols)
    figure = Figure(figsize=(width, PANEL_SIZE[1] * rows), dpi=dpi, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, sharex="col")
    for col, panel in enumerate(panels):
        _draw_column(spec, panel, list(axes[:, col]))
    kind = "elementwise, over the declared domain" if spec.decl.elementwise else \
        "along a random line through the domain"
    title = _suptitle(f"gradcheck: {spec.entry.qualified}", f"f and its derivatives ({kind})",
                      int(width * SUPTITLE_CHARS_PER_INCH))
    figure.suptitle(title, fontsize=12, fontweight="bold")
    legend_rows = _legend(figure, axes.ravel(), ncols=2 if width >= 9 else 1)
    # Room for the title lines and the legend under the panels, so they never squeeze them.
    extra = 0.3 * title.count("\n") + LEGEND_ROW_HEIGHT * legend_rows + 0.5
    figure.set_size_inches(width, PANEL_SIZE[1] * rows + extra)
    return figure


def _suptitle(name: str, what: str, chars: int) -> str:
    """``name — what`` on one line when it fits, else each on lines of its own."""
    if len(name) + 3 + len(what) <= chars:
        return f"{name} — {what}"
    return "\n".join(line for text in (name, what)
                     for line in textwrap.wrap(text, chars, break_long_words=False))


def _draw_column(spec: _Spec, panel: _Panel, axes: list[Any]) -> None:
    top = axes[0]
    top.set_title(_column_title(spec, panel), fontsize=9.5, loc="left")
    if panel.error is not None:
        _draw_error(panel, axes)
        return
    xs = panel.points.abscissa
    _draw_f(spec, panel, top)
    _draw_derivative(spec, panel, axes[1], panel.primary, panel.random_dy)
    axes[1].set_ylabel(_derivative_label(spec, panel))
    for ax, curve in zip(axes[2:], panel.parameters):
        _draw_derivative(spec, panel, ax, curve, None)
        ax.set_ylabel(f"∂f/∂{curve.label}", fontsize=9)
        ax.text(0.01, 0.96, f"w.r.t. {curve.label} = {curve.value:.4g}", fontsize=8,
                transform=ax.transAxes, va="top", ha="left", color="0.3")
    if panel.left_out:
        axes[1].text(0.99, 0.03, "not drawn: " + ", ".join(panel.left_out), fontsize=7,
                     transform=axes[1].transAxes, ha="right", va="bottom", color="0.35")
    used = 2 + len(panel.parameters)
    for ax in axes[used:]:
        ax.set_visible(False)
    axes[used - 1].set_xlabel(_abscissa_label(spec, panel))
    axes[used - 1].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:used]:
        ax.grid(True, color="0.9", linewidth=0.6)
        ax.set_xlim(xs[0], xs[-1])


def _column_title(spec: _Spec, panel: _Panel) -> str:
    """Target and dtype, what the panels show, what gradcheck.check says; wrapped to fit."""
    head = f"{spec.entry.name} [{panel.dtype}]"
    if panel.error is not None:
        return f"{head}\nthe target raised"
    curve, total = panel.primary, panel.points.abscissa.size
    facts = []
    if curve.mismatch.any():
        facts.append(f"f′ mismatch at {int(curve.mismatch.sum())}/{total} points")
    facts += [f"∂f/∂{c.label} mismatch at {int(c.mismatch.sum())}/{total} points"
              for c in panel.parameters if c.mismatch.any()]
    if panel.random_dy is not None:
        count = int(np.isfinite(panel.random_dy).sum())
        facts.append(f"a random dy changes f′ at {count} points: dy mishandled")
    nonfinite = panel.nonfinite_f | curve.nonfinite
    if nonfinite.any():
        facts.append(f"NaN/Inf at {int(nonfinite.sum())}/{total} points")
    lines = [head, "; ".join(facts) if facts else "analytic = numerical at every point"]
    lines.append("gradcheck.check at these points: "
                 + (", ".join(panel.check_kinds) if panel.check_kinds else "gradients OK"))
    if panel.points.note:
        lines.append(f"({panel.points.note})")
    if panel.reference_dtype != "float64":
        lines.append(f"(no float64 version runs: numerical side in {panel.reference_dtype})")
    return "\n".join(wrapped for line in lines
                     for wrapped in textwrap.wrap(line, TITLE_WIDTH, subsequent_indent="  "))


def _draw_error(panel: _Panel, axes: list[Any]) -> None:
    text = "\n".join(textwrap.wrap(f"the target raised in {panel.dtype}: {panel.error}", 60)[:8])
    axes[0].text(0.02, 0.5, text, transform=axes[0].transAxes, fontsize=8.5, va="center",
                 color=_MISMATCH_COLOR, family="monospace")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax in axes[1:]:
        ax.set_visible(False)


def _draw_f(spec: _Spec, panel: _Panel, ax: Any) -> None:
    xs = panel.points.abscissa
    f = np.where(panel.nonfinite_f, np.nan, panel.f)
    ax.plot(xs, f, label="f (computed in the column's dtype)", **_F_STYLE)
    _shade(ax, xs, panel.primary.mismatch)
    _mark_nonfinite(ax, xs, panel.nonfinite_f, "NaN/Inf in f", "D")
    _mark_kinks(spec, ax, panel.kinks)
    ax.set_ylabel(_f_label(spec, panel))
    _limits(ax, [f])


def _draw_derivative(spec: _Spec, panel: _Panel, ax: Any, curve: _Curve,
                     random_dy: np.ndarray | None) -> None:
    xs = panel.points.abscissa
    analytic = np.where(curve.nonfinite, np.nan, curve.analytic)
    numerical = np.where(np.isfinite(curve.numerical), curve.numerical, np.nan)
    _shade(ax, xs, curve.mismatch)
    ax.plot(xs, analytic, label="analytic derivative (autodiff, column's dtype, dy = 1)",
            **_ANALYTIC_STYLE)
    ax.plot(xs, numerical, label="numerical derivative (central differences, float64 unless "
                                 "noted)",
            **_NUMERICAL_STYLE)
    if 0 < curve.mismatch.sum() <= MAX_MISMATCH_DOTS:
        ax.plot(xs[curve.mismatch], analytic[curve.mismatch], "o", color=_MISMATCH_COLOR,
                markersize=3.5, label="mismatching point", zorder=4)
    if random_dy is not None:
        ax.plot(xs, random_dy, ".", color="tab:green", markersize=4, zorder=3,
                label="analytic with a random dy, ÷ dy (off the line: dy mishandled)")
    _mark_nonfinite(ax, xs, curve.nonfinite, "NaN/Inf in a derivative", "x")
    _mark_kinks(spec, ax, panel.kinks)
    _limits(ax, [numerical, analytic] + ([random_dy] if random_dy is not None else []))


def _shade(ax: Any, xs: np.ndarray, mask: np.ndarray) -> None:
    """Shade each run of mismatching points, half a spacing beyond its ends."""
    if not mask.any():
        return
    edges = np.concatenate([[xs[0]], (xs[:-1] + xs[1:]) / 2, [xs[-1]]])
    start = None
    for i, bad in enumerate(np.append(mask, False)):
        if bad and start is None:
            start = i
        elif not bad and start is not None:
            ax.axvspan(edges[start], edges[i], color=_MISMATCH_COLOR, alpha=0.18, linewidth=0,
                       label="mismatch: analytic ≠ numerical beyond gradcheck's tolerance")
            start = None


def _mark_nonfinite(ax: Any, xs: np.ndarray, mask: np.ndarray, label: str,
                    marker: str) -> None:
    """Crosses (diamonds for f) along the bottom edge where the values are NaN/Inf."""
    if mask is None or not mask.any():
        return
    ax.plot(xs[mask], np.full(int(mask.sum()), 0.03), marker, color=_NONFINITE_COLOR,
            markersize=4 if marker == "D" else 5, transform=ax.get_xaxis_transform(),
            label=label, clip_on=False, zorder=5)


def _mark_kinks(spec: _Spec, ax: Any, detected: list[float]) -> None:
    if spec.decl.elementwise:
        for k in spec.decl.kinks:
            ax.axvline(k, color="0.45", linestyle=":", linewidth=1.2, label="declared kink")
    if detected:
        ax.plot(detected, np.full(len(detected), 0.95), "v", color="0.3", markersize=6,
                transform=ax.get_xaxis_transform(), label="kink detected", zorder=5)
    for x in spec.highlight:
        ax.axvline(x, color="tab:purple", linewidth=1.0, alpha=0.7,
                   label="minimal failing input (fuzzing)")


def _limits(ax: Any, series: list[np.ndarray]) -> None:
    """y-limits from the bulk of the values: a single spike (a jump of f seen by finite
    differences, a huge wrong gradient) must not flatten everything else."""
    values = np.concatenate([s[np.isfinite(s)] for s in series if s is not None])
    if values.size == 0:
        ax.set_ylim(-1, 1)
        return
    lo, hi = values.min(), values.max()
    if values.size > 50:
        # Outliers beyond one bulk-width past the 0.5/99.5 percentiles are left off the axis.
        bulk_lo, bulk_hi = np.percentile(values, [0.5, 99.5])
        width = bulk_hi - bulk_lo
        lo = lo if lo >= bulk_lo - width else bulk_lo
        hi = hi if hi <= bulk_hi + width else bulk_hi
    pad = 0.08 * (hi - lo) if hi > lo else max(0.5, 0.1 * abs(hi))
    ax.set_ylim(lo - pad, hi + pad)


def _f_label(spec: _Spec, panel: _Panel) -> str:
    if spec.decl.elementwise:
        return "f(x)" if panel.points.origin.size == 1 else "mean f(x)"
    return "mean f(x0 + t·u)"


def _derivative_label(spec: _Spec, panel: _Panel) -> str:
    if spec.decl.elementwise:
        return "f′(x)" if panel.points.origin.size == 1 else "d/dx mean f(x)"
    return "d/dt mean f(x0 + t·u)"


def _abscissa_label(spec: _Spec, panel: _Panel) -> str:
    return "x" if spec.decl.elementwise else "t (x = x0 + t·u)"


def _legend(figure: Any, axes: Iterable[Any], ncols: int) -> int:
    """One legend for the figure, under the panels: each label once. Returns its rows."""
    seen: dict[str, Any] = {}
    for ax in axes:
        if not ax.get_visible():
            continue
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, (handle, label))
    if seen:
        order = sorted(seen, key=lambda label: next(
            (rank for rank, start in enumerate(_LEGEND_ORDER) if label.startswith(start)),
            len(_LEGEND_ORDER)))
        handles, labels = zip(*(seen[label] for label in order))
        figure.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)),
                      fontsize=8.5, frameon=False)
    return -(-len(seen) // ncols)
