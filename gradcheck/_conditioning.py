"""The rounding a low-precision computation really does, from the same graph in float64.

The core allows the analytic side ``ANALYTIC_ULPS`` roundings of its own dtype (and, in a low
dtype, of terms as large as the input or output). Correct code whose intermediates cancel does
more: tensorflow/addons' snake differentiates ``(1 - cos(2 a x)) / (2 a)`` with respect to
``a``, and for small ``a x`` the float32 result loses most of its digits to ``1 - cos``. Its
formula is right; only its dtype is too short for it. Two facts tell that apart from a bug,
both from the float64 twin (the same graph in float64, which the core already uses as its
finite-difference reference):

1. the twin's own autodiff (same cotangent, same inputs) must pass finite differences with
   float64's allowance, ``ANALYTIC_ULPS`` roundings of float64: a wrong formula is wrong in
   float64 too, and is caught there with a far smaller tolerance than the low dtype allows;
2. the low-precision error ``e = g_low - g64`` must look like rounding, not like a rule: at
   ``_NEIGHBOURS`` inputs nearby (each coordinate moved by up to ``_WINDOW`` of itself, then
   rounded to the low dtype, so both sides see the same numbers and the true derivative
   cancels exactly), the relative error ``e / |g64|`` of the same computation is measured.
   Rounding is a pseudo-random function of the input: it spreads over the neighbours as
   widely as it is large. A systematic error (a factor, a wrong constant in a low-precision
   branch) is the same at every neighbour. So ``e`` is explained by rounding when
   ``|e / g64| <= SAFETY * spread`` (NUMERICS.md's measured factor between an error estimate
   and the errors it must cover).

``_WINDOW`` is 1/16 of each coordinate: cancellation keeps a rounded intermediate constant
over many ulps of its input (``cos(2 a x)`` rounds to the same float32 for ``|2 a x| ~ 1e-2``
over ~2e-3 of ``x``), so an ulp-sized window would see no spread at all; the window must move
every intermediate by several of its ulps, and 1/16 does that down to ``|2 a x| ~ 1e-3``,
while the size of the cancelled terms, hence the conditioning, changes by at most a few tens
of percent. Formula errors do not rely on it: (1) judges them.

For execution modes, the same float64 graph gives the eager run's own error: a compiled mode
rounds the same graph in another order, so it may differ from eager by the eager error on
each side (:func:`mode_allowance`). There the window is also taken a few ulps wide: a
variance computed as ``mean(x^2) - mean(x)^2`` at a constant row cancels exactly eagerly (0,
so no error at the input) while a traced graph that reduces in another order leaves an ulp
of ``x^2``, which ``1 / sqrt(var + 1e-3)`` multiplies by 3e4; a 4% window breaks the constant
row and with it that conditioning. Inputs moved by up to ``_ULPS`` of their own dtype keep
it and break the exact cancellation. A float64 target has no wider twin: there the spread
of its own results over those inputs, where its true value moves by a few ulps' worth of
its derivative only, is the size of its rounding.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _backward, _f64, _signed
from ._hints import overflowed_at
from ._numerics import (ANALYTIC_ULPS, SAFETY, analytic_allowance, beyond_own_rounding,
                        machine_eps)
from ._records import ForwardBackward, Reference

__all__ = ["LargeTerms", "TwinGradients", "explained_by_rounding", "mode_allowance",
           "overflow_clause", "overflowed", "unexplained_large_terms"]

_NEIGHBOURS = 4  # nearby inputs whose errors must vary as rounding's do (module docstring)
_WINDOW = 1.0 / 16.0  # their distance, per coordinate: derived in the module docstring
#: The mode allowance's adjacent inputs: each coordinate moved by up to 2 ulps of its dtype
#: (before rounding to it). One ulp, drawn uniformly, rounds back to the input for half the
#: coordinates; two move most, which breaks an exact cancellation (a constant row), while
#: the true values, and the conditioning, move by a few eps only.
_ULPS = 2.0


def explained_by_rounding(fb: ForwardBackward, ref: Reference, twin: TwinGradients,
                          project: Callable[[list], np.ndarray], analytic: np.ndarray,
                          verdict: Any, entries: tuple | None = None,
                          elementwise: bool = False,
                          needed: np.ndarray | None = None,
                          unmeasured: bool = False) -> np.ndarray:
    """Where a failing low-precision derivative is the rounding of a correct float64 formula
    (``unmeasured``: also where a neighbour's value is not finite, so that nothing measures
    the rounding: a neighbour past a declared domain's end, erfinv beyond 1).

    Args:
        fb, ref: the core's first-order results and its reference (a float64 twin in
            ``ref.call``, the input's dtype lower).
        twin: the twin's gradients at the core's input (computed once, kept by the run).
        project: maps one gradient per param (``fb.params`` order, float64 arrays) to the
            route's derivatives (per element, per row, or one directional value).
        analytic: the route's low-precision derivatives, as judged.
        verdict: the finite-difference verdict (numerical, bound) for ``analytic``.
        entries: for a run over some entries of a larger batch (a sweep's suspects), the
            batch's shape and the entries' flat indices: the neighbours' random offsets are
            the batch's (:func:`_draws`).
        elementwise: the target is elementwise (the core's diagonal route): the neighbours
            are evaluated in one stacked call per dtype (:func:`_stacked_gradients`).
        needed: where the verdict is wanted (a mask of ``analytic``'s shape; None: all): the
            neighbours are evaluated only where some entry wanted has a float64 formula
            that stands.
    """
    no = np.zeros(np.shape(analytic), dtype=bool)
    try:
        rng = np.random.default_rng((fb.seed, 16))
        exact = project(twin.get(fb, ref))
        allowance = ANALYTIC_ULPS * machine_eps("float64") * np.abs(exact)
        with np.errstate(invalid="ignore"):
            formula_ok = np.abs(exact - verdict.numerical) <= (
                np.nan_to_num(verdict.bound, nan=np.inf) + np.abs(allowance))
        wanted = formula_ok if needed is None else formula_ok & needed
        if not wanted.any():
            return no
        pairs = [(np.asarray(analytic), exact)]
        # Drawn only now (a wrong formula needs none: its verdict is no whatever the rounding);
        # an elementwise target's twin and target on one tape.
        neighbours = [_neighbour(fb, rng, entries) for _ in range(_NEIGHBOURS)]
        both = _stacked_gradients(fb, ref, neighbours) if elementwise else None
        if both is not None:
            there, low = both
        else:
            low, there = [], []
            for values in neighbours:
                args = _rounded_args(fb, values)
                low.append(_gradients(fb.target, args, fb.params, fb.v, fb.dtype,
                                      [p.weight for p in fb.params if p.is_weight]))
                there.append(_gradients(ref.call, args, fb.params, fb.v, tf.float64,
                                        ref.weights))
        for low_grads, ref_grads in zip(low, there):
            pairs.append((project(low_grads), project(ref_grads)))
        like = _like_rounding(pairs, fb.eps)
        if unmeasured:
            with np.errstate(invalid="ignore"):
                like |= ~np.all([np.isfinite(value - exact) for value, exact in pairs], axis=0)
        return formula_ok & like
    except Exception:  # noqa: BLE001 - cannot measure the rounding: explain nothing
        return no


class LargeTerms(NamedTuple):
    """What :func:`unexplained_large_terms` rejects, per element."""

    bad: np.ndarray         # rejected
    allowance: np.ndarray   # the analytic side's allowance each was rejected at
    overflowed: np.ndarray  # rejected because an intermediate is Inf or NaN there


def unexplained_large_terms(fb: ForwardBackward, ref: Reference, twin: TwinGradients,
                            line: tuple, project: Callable[[list], np.ndarray],
                            analytic: np.ndarray, verdict: Any, passed: np.ndarray,
                            entries: tuple | None = None, large_terms: bool = True
                            ) -> LargeTerms:
    """Of the low-precision elements that ``passed`` (per element: ``line`` is their ``(s,
    phi, estimate, rho)``, ``project`` a param's gradient times ``s``), those that need more
    than SAFETY times the allowance for unit-sized terms and whose error does not look like
    rounding (only where ``large_terms``), and those an overflowing intermediate explains
    (:func:`overflowed`).

    That allowance (``analytic_allowance``'s ``magnitude``) is a worst case: ANALYTIC_ULPS
    roundings of terms as large as the input, 2.3 at |x| = 300 in float16, more than a whole
    derivative of 1. A gradient that an overflowing intermediate zeroes there (``x / sqrt(x *
    x + 1)`` in float16 past |x| = 256, whose float64 formula is right) passed on it. Where an
    element fails the judge with SAFETY times the allowance for terms of unit size (it passed on
    larger terms, or on a low-precision window), its error must be measured as rounding
    (``explained_by_rounding``: the float64 twin at nearby inputs, where rounding varies and
    an overflow or a wrong branch does not: TensorFlow's selu in float16, whose output
    rounds to 0 for |x| < 2.4e-4 and whose gradient then takes the x > 0 slope, is found in
    float16 down to |x| = 9e-6 where the window had let it pass). What it cannot see: an
    error confined to less than the neighbours' distance (1/16 of |x|) around the input,
    which varies over them as rounding does (a value wrong at a kink only, or a wrong branch
    that narrow), and a zeroed derivative within SAFETY times the unit-size allowance."""
    s, phi, estimated, rho = line
    beyond = passed & beyond_own_rounding(verdict, analytic, fb.eps)
    if not beyond.any():
        return LargeTerms(beyond, np.zeros(beyond.shape), beyond)
    # SAFETY (NUMERICS.md's factor between an error estimate and the errors it must cover)
    # times the unit-size allowance: a chain of unit-sized terms rounding more than eight
    # times, or a derivative at its own rounding floor that a saturated intermediate zeroes
    # (gelu_tanh's 0.5 x sech^2(u) at x = -5 in float32, 1e-6), is still unit-sized rounding.
    unit = analytic_allowance(analytic, fb.eps, True, 1.0, fb.tiny, fb.v, s) * SAFETY
    large = np.zeros(beyond.shape, dtype=bool)
    if large_terms:  # the caller's word that some element may need more than ``unit``
        large = beyond & ~ref.judge(phi, analytic, rho, unit, estimated=estimated).ok  # kinks
    if large.any():  # where the neighbours cannot measure the rounding, nothing is rejected
        large &= ~explained_by_rounding(fb, ref, twin, project, analytic, verdict, entries,
                                        elementwise=True, needed=large, unmeasured=True)
    inf, floor = overflowed(fb, analytic, verdict, beyond & ~large, s)
    own = analytic_allowance(analytic, fb.eps, False)
    return LargeTerms(large | inf, np.where(inf, own + floor, unit), inf)


def overflowed(fb: ForwardBackward, analytic: np.ndarray, verdict: Any, beyond: np.ndarray,
               s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the elements ``beyond`` their own rounding (``unexplained_large_terms``), those whose
    error an overflow explains: an intermediate of the target's low-precision backward pass
    that the gradient is computed from is Inf or NaN there (``_hints.overflowed_at``) while
    the output is finite.

    Rounding of unit-sized terms may zero a derivative up to SAFETY times their allowance
    (0.078 in float16, gelu_tanh's saturated tanh), and so may an intermediate overflowing:
    ``dy / sqrt(1 + x * x)`` for asinh is 0 past |x| = 256 in float16, where the derivative is
    1 / |x| (0.0039 to 1.5e-5), and its float64 formula is right. Only the Inf tells them
    apart, and an overflow of an intermediate whose true value fits is a bug of the dtype's
    range (the brief's float16 overflow), not its precision. Errors within SAFETY times the
    dtype's smallest normal number (per unit of ``dy`` and step) are left alone: below it,
    values flush to 0 without any overflow (a naive ``1 / (1 + exp(-x))`` sigmoid whose
    ``exp`` overflows past x = -11.1 in float16 zeroes a swish derivative of 1.5e-4 there,
    within 6.1e-4). The graph is traced only where such an element exists. Float16 only:
    bfloat16 and float32 share float32's range (3.4e38), which intermediates of the inputs
    a network sees do not reach, while their rounding leaves elements beyond their own
    rounding in every batch (tracing for them made a float32 check at n = 1e5 take 39 ms
    instead of 22). Returns those elements and that floor."""
    if fb.dtype != tf.float16:
        return np.zeros(np.shape(beyond), dtype=bool), 0.0
    same = np.shape(fb.y64) == np.shape(analytic)  # per element: each output's own dy
    dy = np.abs(fb.v) if same else float(np.max(np.abs(fb.v), initial=0.0))
    with np.errstate(invalid="ignore"):
        floor = dy * np.abs(s) * (SAFETY * fb.tiny)
        suspect = beyond & (np.abs(analytic - verdict.numerical) > verdict.bound + floor)
    if same:
        suspect &= np.isfinite(fb.y64)
    if not suspect.any():
        return suspect, floor
    inside = overflowed_at(fb, np.shape(analytic))
    return (suspect & inside if inside is not None else np.zeros_like(suspect)), floor


def mode_allowance(fb: ForwardBackward, ref: Reference, twin: TwinGradients,
                   param_index: int | None) -> float:
    """Twice the eager run's own error against the float64 twin (output, or the gradient of
    ``fb.params[param_index]``), its largest entry at the input, at ``_NEIGHBOURS`` inputs
    nearby (:meth:`TwinGradients.nearby`, drawn by the same rule as
    :func:`explained_by_rounding`'s from a stream of their own) and at ``_NEIGHBOURS``
    inputs a few ulps away (:meth:`TwinGradients.adjacent`: the input's exact cancellations
    break, its conditioning stays). One input's error can be small by chance (a row of two
    entries rounds twice; a constant row's ``mean(x^2) - mean(x)^2`` cancels to exactly 0),
    while a compiled mode rounds the same graph in another order: the largest of nine
    samples of that rounding is its size. Without a float64 twin (a float64 target), the
    largest difference of the target's own results at the adjacent inputs from those at the
    input is. Asked for only where a mode already differs by more than the analytic chain's
    own allowance."""
    def pick(y, grads):
        return y if param_index is None else grads[param_index]

    ours = pick(fb.y64, [p.grad for p in fb.params])
    try:
        adjacent = twin.adjacent(fb, ref)
    except Exception:  # noqa: BLE001 - an input the target fails at: the others alone
        adjacent = []
    if ref.dtype != tf.float64 or fb.dtype == tf.float64:
        pairs = [(pick(y, grads), ours) for y, grads, *_ in adjacent]
    else:
        try:
            pairs = [(ours, ref.f0 if param_index is None
                      else twin.get(fb, ref)[param_index])]
        except Exception:  # noqa: BLE001
            return 0.0
        try:
            nearby = twin.nearby(fb, ref)
        except Exception:  # noqa: BLE001 - a neighbour the target fails at: the input's alone
            nearby = []
        pairs += [(pick(y, g), pick(y64, g64)) for y, g, y64, g64 in nearby + adjacent]
    try:
        largest = 0.0
        for found, exact in pairs:
            if found is None or exact is None or np.shape(found) != np.shape(exact):
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                error = np.abs(found - exact)
            largest = max(largest, float(np.max(error, where=np.isfinite(error), initial=0.0)))
        return 2.0 * largest
    except Exception:  # noqa: BLE001
        return 0.0


class TwinGradients:
    """The float64 twin's VJP at the core's input with the core's cotangent, one float64 array
    per param (None where there is none): computed on first use and kept, since both rules
    above read it (the run holds one)."""

    def __init__(self) -> None:
        self.value: list | None = None
        self.neighbours: list | None = None  # :meth:`nearby`'s, made on first use
        self.ulp_neighbours: list | None = None  # :meth:`adjacent`'s, made on first use

    def get(self, fb: ForwardBackward, ref: Reference) -> list:
        """The gradients of ``ref.call`` at ``fb.args`` with cotangent ``fb.v``."""
        if self.value is None:
            self.value = _gradients(ref.call, fb.args, fb.params, fb.v, tf.float64,
                                    ref.weights)
        return self.value

    def at_rows(self, fb: ForwardBackward, ref: Reference, rows: np.ndarray) -> list | None:
        """The twin's gradients for the inputs of the output's batch rows ``rows`` alone, for
        an elementwise target, from a call on those rows (every argument with the batch axis
        cut to them): one float64 array per param with that batch axis, None for the others
        (a weight's or a broadcast input's gradient sums over every row). None where that
        call's output is not the reference's on those rows within float64's rounding (a
        target that reads its batch), or fails. A call on a few rows costs the TensorFlow
        calls' fixed overhead, not the whole input's (at n = 1e5 about half)."""
        batch = ref.f0.shape[0] if ref.f0.ndim else 0
        if not batch:
            return None

        def cut(p) -> bool:
            return not p.is_weight and bool(p.value.ndim) and p.value.shape[0] == batch

        if self.value is not None:
            return [g[rows] if g is not None and cut(p) else None
                    for p, g in zip(fb.params, self.value)]
        try:
            params = [p for p in fb.params if not p.is_weight]
            values = {p.arg_index: tf.constant(p.value[rows], tf.float64)
                      for p in params if cut(p)}  # the values, exact in float64
            args = [values[i] if i in values else tf.gather(a, tf.constant(rows))
                    if a.shape.rank and a.shape[0] == batch else a
                    for i, a in enumerate(fb.args)]
            y, grads = _evaluated(ref.call, args, params, fb.v[rows], tf.float64, ())
        except Exception:  # noqa: BLE001 - the whole input's twin decides instead
            return None
        expected = ref.f0[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            off = np.abs(y - expected) > ANALYTIC_ULPS * machine_eps("float64") * np.abs(expected)
        if y.shape != expected.shape or np.any(off & np.isfinite(expected)):
            return None
        found = dict(zip((id(p) for p in params), grads))
        return [found[id(p)] if cut(p) else None for p in fb.params]

    def keep(self, value: list) -> None:
        """Keep ``value``, computed along with other evaluations (a stacked call)."""
        self.value = value

    def nearby(self, fb: ForwardBackward, ref: Reference) -> list:
        """At ``_NEIGHBOURS`` inputs near the core's (rounded to its dtype), the target's
        output and gradients and the twin's: ``(y, grads, y64, grads64)`` each, float64."""
        if self.neighbours is None:
            rng = np.random.default_rng((fb.seed, 24))  # its own stream, as rounding's own
            weights = [p.weight for p in fb.params if p.is_weight]
            self.neighbours = []
            for _ in range(_NEIGHBOURS):
                args = _rounded_args(fb, _neighbour(fb, rng, None))
                self.neighbours.append(
                    _evaluated(fb.target, args, fb.params, fb.v, fb.dtype, weights)
                    + _evaluated(ref.call, args, fb.params, fb.v, tf.float64, ref.weights))
        return self.neighbours

    def adjacent(self, fb: ForwardBackward, ref: Reference) -> list:
        """At ``_NEIGHBOURS`` inputs up to ``_ULPS`` ulps of the core's dtype away (rounded
        to it), the target's output and gradients, and the twin's where there is one:
        ``(y, grads, y64, grads64)`` each, float64 (the last two None without a twin)."""
        if self.ulp_neighbours is None:
            rng = np.random.default_rng((fb.seed, 32))  # its own stream, as nearby's own
            weights = [p.weight for p in fb.params if p.is_weight]
            twin = ref.dtype == tf.float64 and fb.dtype != tf.float64
            spread = _ULPS * machine_eps(fb.dtype.name)
            self.ulp_neighbours = []
            for _ in range(_NEIGHBOURS):
                args = _rounded_args(fb, {p.arg_index: p.value * (1.0 + spread * _signed(
                    rng, p.value.shape)) for p in fb.params if not p.is_weight})
                self.ulp_neighbours.append(
                    _evaluated(fb.target, args, fb.params, fb.v, fb.dtype, weights)
                    + (_evaluated(ref.call, args, fb.params, fb.v, tf.float64, ref.weights)
                       if twin else (None, None)))
        return self.ulp_neighbours


# --------------------------------------------------------------------------------------------


def _gradients(target: Any, args: Sequence, params: Sequence, v: np.ndarray, dtype: tf.DType,
               weights: Sequence) -> list:
    """One gradient per param of ``params`` (None where there is none), float64 NumPy."""
    return _evaluated(target, args, params, v, dtype, weights)[1]


def _evaluated(target: Any, args: Sequence, params: Sequence, v: np.ndarray, dtype: tf.DType,
               weights: Sequence) -> tuple[np.ndarray, list]:
    """The output, and one gradient per param of ``params`` (None where there is none), as
    float64 NumPy, of one call of ``target`` in ``dtype`` with the cotangent ``v``."""
    args = [tf.cast(a, dtype) if a.dtype.is_floating else a for a in args]
    inputs = [args[p.arg_index] for p in params if not p.is_weight]
    with tf.GradientTape() as tape:
        for a in inputs:
            tape.watch(a)
        y = tf.convert_to_tensor(target(args))
    grads = _backward(tape, y, inputs + list(weights), tf.constant(v, dtype))
    return _f64(y), [None if g is None else _f64(tf.convert_to_tensor(g)) for g in grads]


def _stacked_gradients(fb: ForwardBackward, ref: Reference,
                       neighbours: list[dict[int, np.ndarray]]) -> tuple[list, list] | None:
    """:func:`explained_by_rounding`'s neighbours stacked along axis 0: the twin's and the
    target's gradients at each (one gradient per param of ``fb``, per neighbour; None for
    weights: a weight's sums over every part), from one call of each on one tape, the inputs
    rounded to the low dtype once, as each alone would be. An elementwise target computes
    each part as a call on it alone would, up to the rounding of vectorized kernels, itself
    a rounding of the same computation, which is what the neighbours measure.

    Every part is the whole input, and unmoved inputs of the output's shape are repeated
    whole, the others passed as they are: a target that reduces an argument over the batch
    (a maximum, any) or reads the batch's size sees at least what it sees alone; an argument
    with one value per row but another shape (``(batch, 1)``) does not broadcast against
    the stack, so the call fails and the caller evaluates each neighbour alone. Taking only
    the rows asked for changed those targets' branches. None where it does not apply (a
    scalar output, an input of another shape, a target drawing random numbers per call) or
    a call fails or does not give one part per input part."""
    shape = ref.f0.shape
    moved = {p.arg_index for p in fb.params if not p.is_weight}
    if (not shape or not fb.target.stackable or not ref.call.stackable
            or any(tuple(fb.args[i].shape) != shape for i in moved)):
        return None
    m = len(neighbours)
    low_args, twin_args = [], []  # made before the tape: neither is recorded as the other's
    for i, a in enumerate(fb.args):
        if i in moved:
            low = tf.cast(tf.constant(np.concatenate([n[i] for n in neighbours]),
                                      tf.float64), fb.dtype)
        elif tuple(a.shape) == shape:
            low = tf.concat([a] * m, axis=0)
        else:
            low = a
        low_args.append(low)
        twin_args.append(tf.cast(low, tf.float64) if low.dtype.is_floating else low)
    ys, sources, cotangents = [], [], []
    try:
        with tf.GradientTape() as tape:
            for call, dtype, args in ((ref.call, tf.float64, twin_args),
                                      (fb.target, fb.dtype, low_args)):
                inputs = [args[p.arg_index] for p in fb.params if not p.is_weight]
                for a in inputs:
                    tape.watch(a)
                y = tf.convert_to_tensor(call(args))
                if tuple(y.shape) != (m * shape[0],) + tuple(shape[1:]):
                    return None
                ys.append(y)
                sources += inputs
                cotangents.append(tf.constant(np.concatenate([fb.v] * m), dtype))
        grads = iter(tape.gradient(ys, sources, output_gradients=cotangents))
    except Exception:  # noqa: BLE001
        return None
    result = []
    for _ in range(2):  # the twin's, then the target's
        per_param = []
        for p in fb.params:
            g = None if p.is_weight else next(grads)
            per_param.append([None] * m if g is None else
                             np.split(_f64(tf.convert_to_tensor(g)), m))
        result.append([[each[j] for each in per_param] for j in range(m)])
    return result[0], result[1]


def _neighbour(fb: ForwardBackward, rng: np.random.Generator,
               entries: tuple | None) -> dict[int, np.ndarray]:
    """Each differentiated input of the core's, by argument position, moved by up to _WINDOW
    of each coordinate (float64, before rounding: :func:`_rounded_args`)."""
    return {p.arg_index: p.value * (1.0 + _WINDOW * _draws(rng, p.value.shape, entries) / 1.5)
            for p in fb.params if not p.is_weight}


def _rounded_args(fb: ForwardBackward, values: dict[int, np.ndarray]) -> list:
    """The core's inputs with ``values`` in place, rounded to the run's dtype (so the twin
    sees exactly the same numbers)."""
    args = list(fb.args)
    for i, moved in values.items():
        args[i] = tf.cast(tf.constant(moved, tf.float64), fb.dtype)
    return args


def _draws(rng: np.random.Generator, shape: tuple, entries: tuple | None) -> np.ndarray:
    """Random offsets for one input. A run over some entries of a larger batch (a sweep's
    suspects, ``entries`` = (the batch's shape, the entries' flat indices)) draws for the
    whole batch and keeps its entries', so each entry is judged as in the batch."""
    if entries is None:
        return _signed(rng, shape)
    batch, where = entries
    size = int(np.prod(batch))
    if not isinstance(rng.bit_generator, np.random.PCG64) or where.size == 0:
        return _signed(rng, batch).reshape(-1)[where].reshape(shape)
    # The same numbers, drawn for the entries' span only: _signed's uniform(-1, 1) takes one
    # 64-bit output per value and is -1 + 2 u (exact scaling, one rounding), so the span's
    # u, and a skip of the outputs before and after it, give the batch's draws bit for bit.
    first, last = int(where.min()), int(where.max())
    rng.bit_generator.advance(first)
    u = rng.random(last - first + 1)[where - first]
    rng.bit_generator.advance(size - last - 1)
    r = -1.0 + 2.0 * u
    r += np.copysign(0.5, r)
    return r.reshape(shape)


def _like_rounding(pairs: Sequence[tuple[np.ndarray, np.ndarray]], eps: float) -> np.ndarray:
    """Per entry, whether the low-precision error ``value - exact`` at the input (the first of
    ``pairs``; the neighbours' follow) looks like rounding (module docstring, 2): relative to
    ``|exact|``, within ``SAFETY`` of its spread over the neighbours.

    Where the derivative vanishes over the whole window (a row of one entry normalized,
    ``x / |x|``), it is 0 in exact arithmetic while the terms it is computed from
    (``1/|x| - x^2/|x|^3``) are not: the low dtype rounds them to a few of its ulps, the twin
    to a few of float64's, and an error relative to the twin's value only compares the two
    roundings. There (every ``|exact|`` within ``SAFETY * eps64 / eps`` of the largest low
    error: the twin's value can be float64's rounding of the terms that gave it), the
    error is rounding where it is the twin's rounding scaled by ``eps / eps64`` within
    ``SAFETY`` (``_modes._scales_with_eps``'s rule: two dtypes rounding the same terms),
    or else where the errors themselves say so, which is all there is where the twin
    computes exactly 0 (at powers of two every float64 operation can be exact, while
    TensorFlow's float32 ``rsqrt`` is not): they spread as above and reach 0 or change sign
    over the input and its neighbours (0 and two quanta of the terms' ulp at 0.0625). A
    rule of the low dtype alone (``0.05 x^2`` where float64 takes 0) keeps its sign and
    its size, within the few percent the neighbours move x, and stays away from 0."""
    errors = np.stack([np.asarray(value) - exact for value, exact in pairs])
    exacts = np.stack([np.abs(exact) for _, exact in pairs])
    ratio = machine_eps("float64") / eps
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        largest_exact, largest_error = exacts.max(axis=0), np.abs(errors).max(axis=0)
        flat = largest_exact <= SAFETY * ratio * largest_error
        stack = errors / np.where(flat, 1.0, exacts)
        spread = np.fmax.reduce(stack, axis=0) - np.fmin.reduce(stack, axis=0)
        like = np.abs(stack[0]) <= SAFETY * spread
        scaled = np.abs(errors[0]) <= SAFETY * largest_exact / ratio
        straddles = (errors.min(axis=0) <= 0) & (errors.max(axis=0) >= 0)
        return np.where(flat, scaled | (straddles & like), like)


def overflow_clause(fb: ForwardBackward) -> str:
    """What an element rejected by :func:`overflowed` adds to its message."""
    return (f"; an intermediate of the {fb.dtype.name} backward pass is Inf or NaN "
            f"at this input (past {fb.dtype.name}'s range, {float(fb.dtype.max):.6g}), while "
            f"the derivative fits it: rewrite that intermediate to stay in range (sqrt(1 + x * "
            f"x) as |x| sqrt(1 + 1 / (x * x)) for large |x|) or compute it in float32")
