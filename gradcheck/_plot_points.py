"""Where gradcheck.plot evaluates a target: the resolved target and choices, and the points.

Elementwise targets are evaluated over a grid of the domain (declared kinks and 0 included),
others along a line ``x0 + t * u`` through a random base point in a random direction (both from
``seed``). The numbers at those points are computed in ``_plot_data.py``; the drawing is
``plot.py``'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from ._fuzz_target import resolve_target
from ._options import DTYPES
from ._options import dtypes as dtype_names

__all__ = ["Spec", "Points", "points_for", "representable", "MAX_POINTS_UNBATCHED"]

#: Targets that are not batch independent are called once per point: fewer points.
MAX_POINTS_UNBATCHED = 41


@dataclasses.dataclass
class Spec:
    """The target, its declaration and the plotting choices, resolved once for all dtypes."""

    entry: Any                 # a Registered
    instance: Any              # a Layer instance given directly, or None
    dtypes: tuple[str, ...]
    points: int
    seed: int
    highlight: tuple[float, ...]

    @classmethod
    def resolve(cls, target: Any, dtypes: Iterable[str] | None, points: int, seed: int,
                highlight: tuple[float, ...], options: dict[str, Any]) -> "Spec":
        if not isinstance(points, int) or points < 5:
            raise ValueError(f"gradcheck.plot: points must be an integer >= 5, got {points!r}")
        entry, is_instance = resolve_target(target, options, caller="gradcheck.plot",
                                            own_options="dtypes, points, seed, path, dpi, "
                                                        "highlight")
        instance = target if is_instance else None
        own = (instance.compute_dtype,) if instance is not None else entry.declaration.dtypes
        chosen = tuple(dtypes) if dtypes is not None else tuple(own)
        try:
            chosen = dtype_names(chosen)  # names (of names or dtype objects), once each
        except (TypeError, ValueError):
            raise ValueError(f"gradcheck.plot: {entry.qualified}: dtypes={list(chosen)!r}; "
                             f"expected names from {', '.join(DTYPES)}") from None
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
class Points:
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
            base = representable(base, self.dtype)
        scale = np.maximum(1.0, np.abs(base).reshape(len(values), -1).max(axis=1))
        step = self.direction[None] * scale.reshape(lift.shape)
        return base, step, scale

    def unbatched(self, why: str = "") -> "Points":
        """The same points, each as an input of its own (for targets that couple rows)."""
        if self.batched:
            origin, direction = self.origin[None], self.direction[None]
        else:
            origin, direction = self.origin, self.direction
        note = "; ".join(n for n in (self.note, why or "one call per point") if n)
        return dataclasses.replace(self, origin=origin, direction=direction, batched=False,
                                   abscissa=_thinned(self.abscissa, MAX_POINTS_UNBATCHED),
                                   note=note)


def points_for(spec: Spec, dtype: str) -> Points:
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


def _grid_points(spec: Spec, dtype: str, args: list[np.ndarray]) -> Points:
    """A grid over the domain (0, declared kinks and highlights included), rounded to the
    dtype; every feature of a row set to the same x."""
    low, high = spec.decl.domain
    special = [v for v in (0.0, *spec.decl.kinks, *spec.highlight) if low <= v <= high]
    grid = np.unique(representable(np.concatenate([np.linspace(low, high, spec.points),
                                                    special]), dtype))
    row = _row_shape(spec.decl.input_shape, args)
    features = int(np.prod(row, dtype=int))
    note = f"all {features} features = x, mean over them plotted" if features > 1 else ""
    points = Points(grid, np.zeros(row), np.ones(row), args, True, dtype, note)
    return points if spec.decl.batch_independent else points.unbatched(
        "not batch independent: one call per point")


def _row_shape(pattern: tuple | None, args: list[np.ndarray]) -> tuple[int, ...]:
    """The shape of one grid row: the declared input shape past the batch axis (None: 1)."""
    if pattern is None:
        shapes = [a.shape for a in args if a.ndim]
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()
    return tuple(1 if size is None else int(size) for size in pattern[1:])


def _line_points(spec: Spec, dtype: str, args: list[np.ndarray],
                 rng: np.random.Generator) -> Points:
    """Points x0 + t u for a random x0 in the middle half of the domain and a random u with
    max |u| = 1, t over the longest range that keeps every coordinate inside the domain."""
    decl = spec.decl
    pattern = decl.input_shape or (None, 4)
    shape = tuple(1 if size is None and i == 0 else 3 if size is None else int(size)
                  for i, size in enumerate(pattern))
    low, high = decl.domain
    middle, half = (low + high) / 2.0, (high - low) / 2.0
    x0 = representable(middle + rng.uniform(-half / 2, half / 2, size=shape), dtype)
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
        return Points(t, x0[0], u[0], args, True, dtype, note)
    return Points(_thinned(t, MAX_POINTS_UNBATCHED), x0, u, args, False, dtype,
                   note + f"; input shape {shape}, not batch independent: one call per t")


def _thinned(values: np.ndarray, most: int) -> np.ndarray:
    if values.size <= most:
        return values
    keep = np.unique(np.round(np.linspace(0, values.size - 1, most)).astype(int))
    return values[keep]


def representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` (bfloat16 included), back in float64."""
    return tf.cast(tf.cast(tf.constant(values, tf.float64), dtype), tf.float64).numpy()
