"""A VJP must be linear in the upstream gradient ``dy``: checked with two cotangents and their sum.

A custom gradient that forgets to multiply by ``dy`` (or squares it, or adds a constant) is
wrong for every cotangent but the one it happens to match; finite differences show it only as
a mismatch somewhere. Linearity names the cause: with the core's cotangent ``v1``, a second
one ``v2`` and their sum, ``g(v1) + g(v2)`` must equal ``g(v1 + v2)``. Backward passes on the
core's recorded tape, no call of the target, made only where the comparison with finite
differences could have let such a gradient through (:func:`compare_then_linearity`).

The cotangents. Scaling by a power of two is exact in binary floating point, and a linear VJP
computes each entry from terms that are each linear in ``dy``: scale every ``dy`` entry by -2
and every term, every rounding of a sum of terms and so the result scale by exactly -2 (short
of overflow, and of underflow into subnormals). So three tests, each with cotangents that
are exact power-of-two multiples of ``v1``:

1. ``v2 = -2 v1`` (``v1 + v2 = -v1``): a linear VJP repeats its own rounding bit for bit;
   ``|dy|``, ``dy**2``, a constant added, a clipped or ignored ``dy`` do not;
2. ``v2 = s v1`` with ``s`` drawn per output row from 1, -2 and -1/2 (``1 + s`` a power of two
   too): exact again where each row's gradient is computed from that row's cotangent alone
   (batch-independent targets); a VJP that bends ``dy`` by a quantity over the whole batch
   (``dy |dy| / max |dy|``, which -2 scales like a linear one) does not;
3. the same with ``s`` drawn per entry: exact where each entry's gradient is computed from
   its own cotangent (elementwise targets, rows of one entry); a VJP that scales with each
   row's ``dy`` yet is not linear (bent by the row's largest ``|dy|``, ``|dy|`` sorted within
   the row: a review found tests 1 and 2 blind to them) does not. Where a row's entries
   mix, it rounds like the random cotangent it replaces, against the tolerance below;
4. where a param passes all three, ``g(S v1) / S`` must equal ``g(v1)``, ``S`` the loss scale
   Keras' mixed precision starts with, 2^15 (less where the dtype could not hold ``S v1``
   times unit-sized terms: 2^7 in float16): the drawn ``|dy|`` of 0.5 to 1.5 never reaches a
   clip of ``dy`` at 5, which loss scaling does. Entries that overflow are not judged.

Random cotangents showed rounding wherever a gradient's terms cancel: ``x / |x|`` (a row of
one entry, normalized) has a derivative of 0 computed from terms of size ``1 / |x|``, and
three VJPs rounding such terms differently missed linearity by ulps of ``1 / |x|``, with
gradients of 0 or ulps themselves: nothing the tolerance below could tell from a bug.

Tolerance, for what is not exact: a weight's gradient sums over rows, rows a batch statistic
couples sum over each other, and values at the edges of the dtype's range round anew. Each VJP
is a chain of operations in the input's dtype, each within ``ANALYTIC_ULPS`` roundings (the
core's allowance for an analytic chain) of its terms. A term of an input's gradient is at most
``|v|max * max(1, |x|max, |y|max)`` (the scale of the chain-rule terms that the mode check
uses too); a weight entry sums one such term per output it feeds, at most ``y.size``. A term
is also taken to be as large as the largest gradient entry of its row (along the batch axis;
of the whole param for a weight): where the Jacobian is far larger than the input
(``x / max(|x|, eps)`` scales a row by ``1 / |x|``, a normalization at a zero row by
``1 / sqrt(eps)``), entries that cancel to 0 are rounded at that size. Per row, not over the
batch: one steep row would otherwise blunt the check of every other (a VJP bending ``dy`` in
bfloat16 only passed next to a zero row). So an entry may miss linearity by ``ANALYTIC_ULPS *
eps * (|g1| + |g2| + |g12| + 3 * term_size)``, ``term_size`` the larger of the two. A gradient
that ignores ``dy`` misses it by about ``|g|`` itself, so it still shows wherever its entries
exceed ``3 * ANALYTIC_ULPS * eps`` of their row's largest one.

Where tests 2 or 3 still flag a param, its terms may be larger than any of that shows: a
scalar parameter's gradient summed from terms that cancel (``expm1(b x) / b`` at small ``b``
has terms of ``x / b`` and a gradient of ``x^2 / 2``; a fresh corpus flagged 35 of 60 such
items, float64 included). Two more backward passes, at ``3 v`` and ``5 v``, show the VJP's
own rounding, and the terms it implies are taken too (:func:`_terms_seen_rounding`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _index, _max_abs_finite
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._records import Add, ForwardBackward

__all__ = ["check_dy_linearity", "check_loss_scaled", "compare_then_linearity"]

#: dy2 / dy1 per row, then per entry: each s with 1 + s a power of two up to sign as well, so
#: that dy2 and dy1 + dy2 are exact multiples of dy1 row by row, entry by entry (module
#: docstring).
_SCALES = (1.0, -2.0, -0.5)

#: Backward passes with the core's cotangent that :func:`_varies` compares with the first: a
#: noisy gradient's pass can land within the linearity tolerance of it by chance (one in 16
#: for tests/shared_targets.py's noise of 1e-4), three in a row about one in 4,000.
_REPEATS = 3

#: Uniform cotangent scales that are not powers of two: a linear VJP's result scales by them,
#: its roundings do not (:func:`_terms_seen_rounding`). Both above the tests' factors of
#: ``v`` (1/2 to 2): a probe that crossed a threshold in ``|dy|`` (a dead zone that drops
#: ``|dy| < 0.45``) would take the threshold's jump for rounding and excuse it. TensorFlow's
#: flush of a subnormal ``dy x`` to 0, a threshold no bug made, is left out by
#: :func:`_clear_of_underflow` instead.
_PROBE_SCALES = (3.0, 5.0)


def compare_then_linearity(run: Any) -> bool | None:
    """``run.compare()`` (reference and finite differences), then :func:`check_dy_linearity`
    only where it can add something; the report is the one linearity-first would give.

    Linearity only names the cause of what finite differences catch anyway: the cotangent
    ``v`` is random, signed and non-uniform, so a VJP ``G(v)`` that is not ``J^T v`` (it
    ignores, squares, takes |.| of or adds a constant to ``dy``) differs from ``v . J u``
    wherever it is compared strictly. A strict comparison is central differences within
    their bound, per element, row or line. So the two backward passes are skipped where
    every entry was judged so and passed (``run.inconclusive`` false, no finding): then a
    VJP that is not linear in ``dy`` agreed with ``J^T v`` at this ``v`` everywhere it
    was looked at, which only a ``dy``-dependence below the comparison's tolerance does.
    Everywhere else (a finding, an entry accepted as a subgradient at a kink, one-sided or
    unjudged samples, a seeded noisy target's allowance, a user's rtol/atol, a low dtype's
    rounding window, NaN/Inf output, no reference, a failed evaluation) it runs, and where
    it flags a param (``run.check_linearity()``, :func:`check_dy_linearity` on the run's
    records), the comparison is redone without that param, as if linearity had come first.
    The declared ``gradient=`` path runs it first: that comparison is against the
    declaration, not ``J^T v``. Where every entry passed strictly and the run compares
    execution modes, test 4 alone still runs (:func:`check_loss_scaled`): a dy clipped
    beyond the drawn cotangents is exact at them, so finite differences cannot see it.

    This is an orchestrating step: it reruns ``run.compare()`` and restores the run's random
    state and domain flag for it, so it takes the run."""
    mark = len(run.report.findings)
    state, cut = run.rng.bit_generator.state, run.cut_by_domain
    compared = run.compare()
    if compared and not run.inconclusive and len(run.report.findings) == mark:
        if run.modes:  # loss scaling is how mixed precision trains: checked with the modes
            for k in check_loss_scaled(run.first_order_record(), run.vjp, add=run.add):
                run.params[k].grad = None
        return compared
    later = run.report.findings[mark:]
    del run.report.findings[mark:]
    if not run.check_linearity():
        run.report.findings.extend(later)
        return compared
    run.rng.bit_generator.state, run.cut_by_domain = state, cut
    return run.compare()


def check_dy_linearity(fb: ForwardBackward, vjp: Callable[[np.ndarray], Sequence],
                       *, add: Add) -> list[int]:
    """Report each param whose VJP is not linear in the cotangent; their indices (the run
    stops checking them: finite differences would only restate it as a generic mismatch).

    ``vjp(v)``: the gradients of step 1's output for the cotangent ``v``, one per param (on
    its recorded tape: no call of the target). Four tests, each with cotangents whose
    entries are exact power-of-two multiples of the core's ``v`` (module docstring); the
    first that a param fails is reported."""
    usable = [p for p in fb.params if p.grad is not None]
    if not usable or not fb.y64.size:
        return []
    rng = np.random.default_rng((fb.seed, 8))  # its own stream: the core's draws unchanged
    shape = fb.y64.shape
    per_row = rng.choice(_SCALES, size=shape[:1]).reshape(shape[:1] + (1,) * (len(shape) - 1))
    per_entry = rng.choice(_SCALES, size=shape)
    large = _large_scale(fb)
    cotangents = (-2.0 * fb.v, -fb.v, per_row * fb.v, (1.0 + per_row) * fb.v,
                  per_entry * fb.v, (1.0 + per_entry) * fb.v, large * fb.v)
    try:
        grads = [list(vjp(c)) for c in cotangents]
    except Exception:  # noqa: BLE001 - the first backward pass worked; nothing more to learn
        return []
    eps, scale = _precision(fb)
    rounded: list | None = None  # the rounding probes' gradients, made where first needed
    found = []
    for k, p in enumerate(fb.params):
        if p.grad is None:  # none to compare (an overflowing weight gradient, step 1 said so)
            continue
        mine = [_usable(g[k], p) for g in grads]
        if any(g is None for g in mine):
            continue
        a = p.grad
        rows = (not p.is_weight and a.ndim >= 1 and fb.y64.ndim >= 1
                and a.shape[0] == fb.y64.shape[0])
        judged = _clear_of_underflow(fb, p, eps)
        for b, c, how in ((mine[0], mine[1], "dy2 = -2 dy1"),
                          (mine[2], mine[3], "dy2 = dy1 times 1, -2 or -1/2 per row"),
                          (mine[4], mine[5], "dy2 = dy1 times 1, -2 or -1/2 per entry")):
            with np.errstate(invalid="ignore", over="ignore"):
                term_size = np.maximum(fb.y64.size * scale if p.is_weight else scale,
                                       _largest(a, b, c, per_row=rows))
                defect = np.abs(a + b - c)
                tol = ANALYTIC_ULPS * eps * (np.abs(a) + np.abs(b) + np.abs(c) + 3 * term_size)
                bad = (defect > tol) & judged  # NaN/Inf entries are not judged here
                if bad.any() and how != "dy2 = -2 dy1":  # tests 2 and 3 are not exact
                    if rounded is None:
                        rounded = _rounding_probes(fb, vjp)
                    seen = _terms_seen_rounding(rounded, k, p, eps, per_row=rows)
                    term_size = np.maximum(term_size, seen)
                    tol = ANALYTIC_ULPS * eps * (np.abs(a) + np.abs(b) + np.abs(c)
                                                 + 3 * term_size)
                    bad = (defect > tol) & judged
            if not bad.any():
                continue
            j = int(np.argmax(np.where(bad, defect - tol, -np.inf)))
            idx = _index(j, a.shape)
            if _varies(fb, vjp, k, p, tol, add=add):
                found.append(k)
                break
            add("gradient_mismatch",
                f"the gradient for {p.label} does not scale with the upstream gradient: at "
                f"index {idx}, the gradients for the cotangents dy1, dy2 ({how}) and "
                f"dy1 + dy2 are {a.flat[j]:.6g}, {b.flat[j]:.6g} and {c.flat[j]:.6g}, but a "
                f"gradient is linear in dy ({a.flat[j] + b.flat[j]:.6g} expected); does the "
                f"custom gradient multiply by dy? ({int(bad.sum())} / {bad.size} entries)",
                param=p.label, index=list(idx), cause="not_linear_in_dy",
                dy1=a.flat[j], dy2=b.flat[j], sum=c.flat[j], tolerance=tol.flat[j])
            found.append(k)
            break
        else:  # linear for cotangents of unit size: and for a loss-scaled one?
            if _loss_scale_fails(fb, p, mine[6], large, eps, scale, rows, judged, add=add):
                found.append(k)
    return found


def check_loss_scaled(fb: ForwardBackward, vjp: Callable[[np.ndarray], Sequence], *,
                      add: Add) -> list[int]:
    """Test 4 of :func:`check_dy_linearity` alone, where the comparison passed and the
    other three are not run (:func:`compare_then_linearity`): a dy clipped at 5 or 100
    is exact for the drawn ``|dy|`` of 0.5 to 1.5, so finite differences pass it. One
    backward pass on the recorded tape. The indices of the params it reports."""
    usable = [p for p in fb.params if p.grad is not None]
    if not usable or not fb.y64.size:
        return []
    large = _large_scale(fb)
    try:
        scaled = list(vjp(large * fb.v))
    except Exception:  # noqa: BLE001 - the first backward pass worked; nothing more to learn
        return []
    eps, scale = _precision(fb)
    found = []
    for k, p in enumerate(fb.params):
        mine = None if p.grad is None else _usable(scaled[k], p)
        rows = (not p.is_weight and p.grad is not None and p.grad.ndim >= 1
                and fb.y64.ndim >= 1 and p.grad.shape[0] == fb.y64.shape[0])
        if mine is not None and _loss_scale_fails(fb, p, mine, large, eps, scale, rows,
                                                  _clear_of_underflow(fb, p, eps), add=add):
            found.append(k)
    return found


def _clear_of_underflow(fb: ForwardBackward, p: Any, eps: float) -> np.ndarray | bool:
    """Where the tests may judge param ``p``'s entries: all of them, except, for an input of
    the output's shape, those whose ``|x|`` lies from the dtype's smallest normal number
    ``tiny`` up to ``tiny / eps``. Scaling ``dy`` is exact short of underflow, and
    TensorFlow's CPU kernels flush a subnormal result to 0: ``x log x`` at x = 1.2e-38 in
    float32 computes ``(dy x) / x``, which is ``dy`` for ``|dy| >= 1`` and 0 below, a
    threshold in ``dy`` that no bug put there. Products of ``dy`` (at least ``eps``, as the
    tests draw it) with an ``x`` above that zone stay normal; at 0, or a subnormal ``x``
    (read as 0), they are 0 whatever ``dy`` is."""
    if p.is_weight or p.value.shape != fb.y64.shape:
        return True
    size = np.abs(p.value)
    return ~((size >= fb.tiny) & (size < fb.tiny / eps))


def _precision(fb: ForwardBackward) -> tuple[float, float]:
    """The machine epsilon the VJP rounds at (a target that computes in a shorter dtype
    than it claims rounds in that one) and the size of an input's chain-rule terms."""
    eps = max(machine_eps(fb.dtype.name), machine_eps(fb.y_dtype.name))
    x_max = max([1.0] + [float(np.max(np.abs(p.value), initial=0.0))
                         for p in fb.params if not p.is_weight])
    return eps, float(np.max(np.abs(fb.v))) * max(x_max, _max_abs_finite(fb.y64))


def _loss_scale_fails(fb: ForwardBackward, p: Any, scaled: np.ndarray, large: float,
                      eps: float, scale: float, rows: bool, judged: np.ndarray | bool,
                      *, add: Add) -> bool:
    """Test 4 for one param: ``g(large v) / large`` against ``g(v)``, at the entries
    ``judged`` (:func:`_clear_of_underflow`: power-of-two scaling is exact short of overflow
    and of a product of dy flushed to 0); reports a failure."""
    a = p.grad
    with np.errstate(invalid="ignore", over="ignore"):
        b = scaled / large  # exact: a power of two
        # First the sums: |sum(a - b)| is within the sum of the entries' tolerances below
        # wherever every entry is within its own (each entry's term size at most the
        # largest), so a check that passes costs a few reductions, not the entries' test.
        size_a, size_b = np.abs(a), np.abs(b)
        largest = max(fb.y64.size * scale if p.is_weight else scale,
                      float(np.max(size_a, initial=0.0)), float(np.max(size_b, initial=0.0)))
        total = float(np.sum(size_a)) + float(np.sum(size_b)) + 2 * a.size * largest
        if abs(float(np.sum(a)) - float(np.sum(b))) <= ANALYTIC_ULPS * eps * total:
            return False
        term_size = np.maximum(fb.y64.size * scale if p.is_weight else scale,
                               _largest(a, b, per_row=rows))
        defect = np.abs(a - b)
        bad = defect > ANALYTIC_ULPS * eps * (np.abs(a) + np.abs(b) + 2 * term_size)
        bad &= np.isfinite(b)  # overflow past the dtype's range is not judged
    bad &= judged
    if not bad.any():
        return False
    j = int(np.argmax(np.where(bad, defect, -np.inf)))
    idx = _index(j, a.shape)
    add("gradient_mismatch",
        f"the gradient for {p.label} does not scale with the upstream gradient: at index "
        f"{idx}, dy {large:g} times larger (as loss scaling makes it in mixed precision) "
        f"gives {scaled.flat[j]:.6g}, not {large:g} x {a.flat[j]:.6g}; is dy clipped or "
        f"thresholded in the custom gradient? ({int(bad.sum())} / {bad.size} entries)",
        param=p.label, index=list(idx), cause="not_linear_in_dy",
        dy_scale=large, scaled=scaled.flat[j], unscaled=a.flat[j])
    return True


def _large_scale(fb: ForwardBackward) -> float:
    """The factor of the fourth test's cotangent: 2^15, the loss scale Keras' mixed
    precision starts with, or the largest power of two below it that keeps the cotangent
    under the square root of the dtype's largest value (2^7 in float16), so that the VJP's
    products of dy with unit-sized terms do not overflow."""
    largest = float(np.finfo(fb.y_dtype.as_numpy_dtype).max)  # a floating output: step 1
    room = np.sqrt(largest) / max(float(np.max(np.abs(fb.v), initial=0.0)), 1.0)
    return float(2.0 ** min(15, max(0, int(np.floor(np.log2(room))))))


def _rounding_probes(fb: ForwardBackward, vjp: Callable[[np.ndarray], Sequence]) -> list:
    """The VJP at ``3 v`` and ``5 v``, ``v`` the core's cotangent: see
    :func:`_terms_seen_rounding`. Empty where a pass fails."""
    try:
        return [(s, list(vjp(s * fb.v))) for s in _PROBE_SCALES]
    except Exception:  # noqa: BLE001 - the first backward pass worked; no probe, no allowance
        return []


def _terms_seen_rounding(rounded: list, k: int, p: Any, eps: float, *,
                         per_row: bool) -> np.ndarray | float:
    """The size of the terms param ``k``'s VJP rounds, as its own rounding shows it.

    Tests 2 and 3 are exact only where no sum mixes differently scaled cotangent entries;
    a weight's (or a broadcast argument's) gradient sums over them, and where its terms
    cancel (``expm1(b x) / b`` at small ``b``: terms of ``x / b`` leave ``x^2 / 2``) the sum
    rounds at the terms' size, which neither the inputs nor the gradient show. A uniform
    scale by 3 or 5 is not a power of two: a linear VJP computes ``s`` times the same value
    with every rounding made anew, so ``|g(s v) / s - g(v)|`` is that rounding (plus ``v``'s
    own rounding in the dtype times ``J``). Each rounding is within ``eps`` of the terms it
    rounds, so terms are at least that difference over ``eps``. The VJPs tests 2 and 3 are
    there for bend ``dy`` by a quantity of the whole batch or row and are positively
    homogeneous (``dy |dy| / max |dy|``, a row's ``|dy|`` sorted): scaled by ``s`` they
    scale by ``s`` too, so the probe shows only their rounding, never their bend. The
    largest over the probes, per row or over the param (as ``_largest``)."""
    seen = []
    for s, grads in rounded:
        g = _usable(grads[k], p)
        if g is None:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            seen.append(np.abs(g / s - p.grad))
    if not seen:
        return 0.0
    return _largest(*seen, per_row=per_row) / eps


def _varies(fb: ForwardBackward, vjp: Callable[[np.ndarray], Sequence], k: int, p: Any,
            tol: np.ndarray, *, add: Add) -> bool:
    """Whether param ``k``'s gradient differs between two backward passes with the core's
    own cotangent (random ops in a custom gradient, whose forward the determinism probe saw
    repeat): then it is reported as ``nondeterministic``, not as a VJP that ignores dy. The
    two may differ by the linearity test's own tolerance (``tol``: a GPU's reductions)."""
    for _ in range(_REPEATS):  # noise of 1e-4 falls within tol in one pass of 16
        try:
            again = _usable(list(vjp(fb.v))[k], p)
        except Exception:  # noqa: BLE001 - no second pass: the linearity finding stands
            return False
        if again is None:
            return False
        with np.errstate(invalid="ignore"):
            differs = np.abs(again - p.grad) > tol
        if differs.any():
            break
    else:
        return False
    j = int(np.argmax(differs))
    add("nondeterministic",
        f"two backward passes at the same input and upstream gradient give different "
        f"gradients for {p.label}: {p.grad.flat[j]:.6g} vs {again.flat[j]:.6g} at index "
        f"{_index(j, p.grad.shape)}, while the outputs repeat: random ops in the custom "
        f"gradient? A gradient must be a function of x and dy; draw noise in the forward "
        f"pass (seeded, tf.random.stateless_*) if it is meant to be there",
        param=p.label, index=list(_index(j, p.grad.shape)), cause="backward_varies")
    return True


def _usable(g: Any, p: Any) -> np.ndarray | None:
    """A VJP's gradient for ``p`` as float64 NumPy, None where there is none to compare."""
    if g is None:
        return None
    g = _f64(tf.convert_to_tensor(g))
    return g if g.shape == p.grad.shape else None


def _largest(*grads: np.ndarray, per_row: bool) -> np.ndarray | float:
    """The largest finite |entry| of ``grads``: per row along axis 0 (shaped to broadcast
    against a gradient), or over everything."""
    if not per_row:
        return max(_max_abs_finite(g) for g in grads)
    with np.errstate(invalid="ignore"):
        stacked = np.abs(np.stack(grads))
    stacked[~np.isfinite(stacked)] = 0.0
    axes = (0,) + tuple(range(2, stacked.ndim))
    return stacked.max(axis=axes, initial=0.0).reshape((-1,) + (1,) * (grads[0].ndim - 1))
