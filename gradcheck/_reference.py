"""The numerical reference's evaluations: the reference at params moved along directions.

What the routes (``_routes.py``) difference: ``evaluate`` at params + t * directions, one t a
call, and ``samples`` at t = 0, +-h, +-2h, where the elementwise route can, from one call of
the reference on the moved inputs stacked along axis 0 (``stacked``). Steps never leave a
declared domain of the first input: the entries (elementwise) or rows (batch-independent) that
would are left at the input and their outputs are NaN, so the differences there are one-sided.

A mixin of the core's run (``_check._Run``): it uses the run's params, reference (``ref``,
``ref_weights``, ``ref_dtype``, ``f0``, ``eps_ref``; ``values``: what is called for its
values, the reference itself or its traced graph, ``_traced_reference.py``), step ``h``,
declared structure and domain, and keeps ``stack_samples`` (off once a stacked call failed
or disagreed) and ``stacked_calls`` (how many stood).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import tensorflow as tf

from ._arrays import _f64
from ._heap import heap_kept
from ._numerics import ANALYTIC_ULPS
from ._targets import assign_weights, weights_restored, weights_set_to

# A stacked call (stacked() below) saves the reference's per-call dispatch, ~50 us a call, which is
# most of a call at small n. Its input, tensor and output are three buffers of every copy at
# once. Where they are fresh pages, past 1 MiB of input their faults cost more than the calls
# saved (a check of swish at n = 1e5, float32: 23.7 ms stacked, 21.7 ms in separate calls).
# Where the heap is kept (_heap.py), they are the pages the last check freed, and stacking
# pays up to 8 MiB of input (three buffers, 24 MiB, inside the 64 MiB kept): the same check
# 11.8 ms against 13.2 ms, a float16 sweep of selu 12.8 ms against 13.5 ms; at n = 3e5
# (9.6 MB stacked) the two are within noise.
_STACK_BYTES = 1 << 20
_STACK_BYTES_HEAP_KEPT = 1 << 23


class ReferenceCalls:
    """The run's calls of its numerical reference (see the module docstring)."""

    def _cast_arg(self, a: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        return tf.cast(a, dtype) if a.dtype.is_floating else a

    def evaluate(self, directions: dict[int, np.ndarray], t: float,
                 restore: bool = True) -> np.ndarray:
        """The reference output (float64 NumPy) at params + t * directions[param index].
        ``restore=False``: moved weights stay assigned (the caller restores them, as
        :meth:`samples` does once for its four evaluations)."""
        args = self.reference_args(self.params[k].arg_index for k in directions)
        masked = None
        for k, d in directions.items():
            p = self.params[k]
            if not p.is_weight:
                moved, cut = self.moved(p, d, t)
                if cut is False:
                    return np.full(self.f0.shape, np.nan)
                masked = masked if cut is None else cut
                args[p.arg_index] = tf.constant(moved, self.ref_dtype)
        values = None
        if any(self.params[k].is_weight for k in directions):
            values = [p.value + t * directions[k] if k in directions else p.value
                      for k, p in enumerate(self.params) if p.is_weight]
        if values is not None and not restore:
            assign_weights(self.ref_weights, values)
            values = None
        with weights_set_to(self.ref_weights, values):
            return self.unsampled_nan(_f64(self.values(args)), masked)

    def reference_args(self, replaced: Iterable[int] = ()) -> list:
        """The inputs cast to the reference dtype, each made on first use and kept; None at
        the positions ``replaced`` (the caller puts moved inputs there: a cast of the input
        itself would be made for nothing, a full pass over it at n = 1e5)."""
        if self.ref_args is None:
            self.ref_args = [None] * len(self.args)
        replaced = set(replaced)
        for i, a in enumerate(self.args):
            if i not in replaced and self.ref_args[i] is None:
                self.ref_args[i] = self._cast_arg(a, self.ref_dtype)
        return [None if i in replaced else a for i, a in enumerate(self.ref_args)]

    def moved(self, p: Any, d: np.ndarray, t: float, out: np.ndarray | None = None):
        """``p``'s value + t * d (written to ``out``), and the entries left at the input
        because the step leaves the domain: None (none), False (all would), or a mask."""
        moved = np.multiply(d, t, out=out)
        moved += p.value
        outside = self.outside_domain(p, moved)
        if outside is None:
            return moved, None
        self.cut_by_domain = True  # no sample there: one-sided differences instead
        masked = self.unsampled(outside)
        if masked is not None:
            moved[masked] = p.value[masked]
        return moved, (False if masked is None else masked)

    def unsampled_nan(self, out: np.ndarray, masked: np.ndarray | None) -> np.ndarray:
        """``out`` with NaN where the input was left unsampled (``masked``)."""
        if masked is None:
            return out
        if masked.shape != out.shape:  # rows of the input -> the same rows of the output
            masked = np.broadcast_to(masked.reshape(len(masked), -1).any(axis=1).reshape(
                (-1,) + (1,) * (out.ndim - 1)), out.shape)
        return np.where(masked, np.nan, out)

    def stacked(self, directions: dict[int, np.ndarray], ts: Sequence[float]) -> list | None:
        """``[evaluate(directions, t) for t in ts]`` from ONE call of the reference, where
        :meth:`stacked_points` can."""
        return self.stacked_points([(directions, t) for t in ts])

    def stacked_points(self, points: Sequence[tuple[dict[int, np.ndarray], float]]
                       ) -> list | None:
        """``[evaluate(directions, t) for directions, t in points]`` from ONE call of the
        reference, for the elementwise route (every point moving the same params, all of the
        output's shape): the moved inputs and every input of their shape are concatenated
        along axis 0 (stacked, for scalars), the others passed as they are. An elementwise
        target computes each part as a call on it alone would, up to the rounding of
        vectorized kernels (a few ulps, far below the rounding allowance the differences
        carry); the caller's probe, with separate calls, confirms the rest (see
        ``_routes.confirm_elementwise``).

        Three rows ride along at the end (each paired with the same row of the other inputs):
        a copy of the input's first row and one of the row whose output is largest, whose
        outputs must be the reference's at the input, and a copy of the row one batch (``B``
        rows) before the second, whose output must be that row's in the same call; each within
        ``2 * ANALYTIC_ULPS`` roundings (two computations of one value). A rider whose output
        is ~0 vouches for little (a zero first row hid a batch-size read, ``x * x / B``: the
        parts then disagree with the output at the input, which passes for a kink, and a wrong
        gradient passed), hence the largest. A target that reads its batch size does not give
        that, nor one that couples rows (a
        batch mean, say: the rows at the end break the symmetry of the parts' steps, -2h to
        2h, which alone would leave it unchanged), nor one that reads a row's position unless
        position ``j + B`` acts as ``j``: a pattern repeating every ``p`` rows moves the parts
        at offsets ``iB`` exactly where ``p`` does not divide ``B``, which the second rider
        shows (the first alone, at offset ``mB``, misses ``p = 2, B = 3``, and let such a
        target's wrong gradient pass). Where every output is ~0 no rider vouches: the
        elementwise route's probe, with separate calls, still stands behind it (the batch-row
        route has none, and does not stack). None where not done (a weight moves, the reference draws random numbers per
        call, the call fails or disagrees) and where the stacked input would exceed
        ``_STACK_BYTES`` (``_STACK_BYTES_HEAP_KEPT`` where the heap is kept): the caller
        evaluates each point alone."""
        keys = list(points[0][0])
        shape = self.f0.shape
        m = len(points)
        if (not self.stack_samples or not getattr(self.ref, "stackable", False)
                or not self.f0.size  # an empty input: no row to ride along
                or m * self.f0.size * 8 > (_STACK_BYTES_HEAP_KEPT if heap_kept()
                                           else _STACK_BYTES)
                or any(list(d) != keys for d, _ in points)
                or any(self.params[k].is_weight or self.params[k].value.shape != shape
                       for k in keys)):
            return None
        rows = shape[0] if shape else 1
        before = m * rows + 1 - rows  # the row one batch before the second rider
        f0 = self.f0.reshape((rows, -1))
        largest = int(np.argmax(np.where(np.isfinite(f0), np.abs(f0), 0.0).max(axis=1)))
        masks = []
        args = self.reference_args(self.params[k].arg_index for k in keys)
        moved_args = {self.params[k].arg_index for k in keys}
        for k in keys:
            p = self.params[k]
            buffer = np.empty((m * rows + 3,) + shape[1:])
            parts = buffer[:-3].reshape((m,) + shape)
            for i, (directions, t) in enumerate(points):
                _, cut = self.moved(p, directions[k], t, out=parts[i, ...])
                if cut is False:
                    return None
                masks.append((i, cut))
            by_row = p.value.reshape((-1,) + shape[1:])
            buffer[-3], buffer[-2], buffer[-1] = by_row[0], buffer[before], by_row[largest]
            args[p.arg_index] = tf.constant(buffer, self.ref_dtype)
        paired = 1 % rows  # the row of the others that the second rider's copy meets
        for i, a in enumerate(args):
            if i not in moved_args and a.shape == shape:
                a = a if shape else tf.reshape(a, (1,))
                args[i] = tf.concat([a] * m + [a[:1], a[paired:paired + 1],
                                               a[largest:largest + 1]], axis=0)
        try:
            out = _f64(self.values(args))
        except Exception:  # noqa: BLE001 - evaluated one t at a time, which reports a failure
            self.stack_samples = False
            return None
        if out.shape != (m * rows + 3,) + shape[1:]:
            self.stack_samples = False
            return None
        riders = out[-3:]
        by_row = self.f0.reshape((rows,) + shape[1:])
        expected = np.concatenate([by_row[:1], out[before:before + 1],
                                   by_row[largest:largest + 1]])
        with np.errstate(invalid="ignore"):
            agree = np.all((riders == expected) | (np.abs(riders - expected) <= 2 * ANALYTIC_ULPS
                                                   * self.eps_ref
                                                   * np.maximum(1.0, np.abs(expected)))
                           | (np.isnan(riders) & np.isnan(expected)))
        if not agree:
            self.stack_samples = False
            return None
        self.stacked_calls += 1
        parts = out[:-3].reshape((m,) + shape)
        result = [parts[i, ...] for i in range(m)]
        for i, cut in masks:
            result[i] = self.unsampled_nan(result[i], cut)
        return result

    def unsampled(self, outside: np.ndarray) -> np.ndarray | None:
        """The entries (elementwise) or rows (batch-independent) of the first input that stay
        at the input, their outputs unsampled, when ``outside`` leaves the domain; None: all."""
        # Undeclared structure is assumed here as on the cheap routes; their probes confirm it.
        if self.elementwise is not False and outside.shape == self.f0.shape:
            return outside
        if (self.batch_independent is not False and outside.ndim and self.f0.ndim
                and outside.shape[0] == self.f0.shape[0]):
            rows = outside.reshape(len(outside), -1).any(axis=1)
            return np.broadcast_to(rows.reshape((-1,) + (1,) * (outside.ndim - 1)),
                                   outside.shape)
        return None

    def outside_domain(self, p: Any, moved: np.ndarray) -> np.ndarray | None:
        """Where ``moved`` (values of ``p``) leaves the declared domain, or None."""
        if self.domain is None or p.is_weight or p.arg_index != 0:
            return None
        outside = (moved < self.domain[0]) | (moved > self.domain[1])
        return outside if outside.any() else None

    def steps_at_ends(self, p: Any, s: np.ndarray, samples: dict[int, np.ndarray]
                      ) -> np.ndarray | None:
        """The per-element route's steps along ``s`` (``samples``: taken with them) made
        shorter next to a domain end, or None where none is.

        Next to an end (sqrt, log near 0) a step of max(1, |x|) leaves the domain or outruns
        the function's own scale, the distance to the end: the step is relative to |x| there
        instead where the function fails (not finite at +-2h, |x| < 1), or to the distance to
        a declared end (central differences again, inside it). An input at a declared end
        itself is differenced one-sided at the step h (``_lines.refined`` shortens it where
        that does not resolve the derivative)."""
        near = ~(np.isfinite(samples[-2]) & np.isfinite(samples[2])) & (np.abs(p.value) < 1)
        to_end = None
        if self.domain is not None and not p.is_weight and p.arg_index == 0:
            to_end = np.minimum(p.value - self.domain[0], self.domain[1] - p.value)
            near &= 2 * self.h * s < to_end  # the steps stay inside: the function failed
        declared = False if to_end is None else (2 * self.h * s >= to_end) & (to_end > 0)
        if not (np.any(near) or np.any(declared)):
            return None
        s = np.where(near, np.maximum(np.abs(p.value), np.finfo(float).tiny), s)
        return s if to_end is None else np.where(declared, to_end, s)

    def samples(self, directions: dict[int, np.ndarray], stacked: bool = False,
                step: float | None = None) -> dict[int, np.ndarray]:
        """The reference at t = 0, +-h, +-2h along ``directions`` (``step``: another h);
        ``stacked``: in one call where :meth:`stacked` can (the elementwise route, whose probe
        confirms it)."""
        ts = (-2, -1, 1, 2)
        h = self.h if step is None else step
        found = self.stacked(directions, [k * h for k in ts]) if stacked else None
        if found is None:
            held = any(self.params[k].is_weight for k in directions)
            with weights_restored(self.ref_weights) if held else nullcontext():
                found = [self.evaluate(directions, k * h, restore=not held) for k in ts]
        return {0: self.f0, **dict(zip(ts, found))}
