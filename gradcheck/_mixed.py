"""Mixed precision (layers): the layer under its Keras' mixed-precision policies.

Under ``mixed_float16`` / ``mixed_bfloat16`` a Keras layer keeps its variables in float32 (an
optimizer's small updates vanish in float16) and computes in float16/bfloat16: inputs and
variables are cast to the compute dtype on the way in, the output stays in it, and gradients
are cast back to float32 on the way to the variables. Layers that hard-code a dtype break
there, and only there:

* ``self.add_weight(..., dtype=self.compute_dtype)`` or ``dtype="float16"``: a float16
  variable -> ``dtype_mismatch``;
* ``tf.cast(x, self.dtype)`` in ``call`` (``self.dtype`` is the *variable* dtype, float32; the
  compute dtype is ``self.compute_dtype``): a float32 output -> ``dtype_mismatch``, or an
  ``error`` where it meets a float16 tensor;
* intermediates that overflow float16 (a sum of squares beyond 65504, ``exp`` beyond 11) or
  an epsilon below its range (``1e-8`` is 0 in float16): a NaN/Inf output or gradient ->
  ``nonfinite_output`` / ``nonfinite_gradient``; an output that collapsed to a wrong finite
  value (``x * rsqrt(inf)`` is 0) -> ``dtype_mismatch`` (the layer does not compute in that
  dtype: the kind the core and fuzzing use for "fails only in some dtypes");
* gradients that do not reach the float32 variables (a ``None``), or arrive wrong:
  ``disconnected_gradient`` / ``gradient_mismatch``;
* a layer that raises under the policy (a float32 constant meeting a float16 tensor): ``error``.

Each finding is one of the existing kinds, its message starting with ``under policy <name>``
and its details holding ``policy``.

How: the layer is rebuilt under the policy -- from ``reference`` (the declaration's builder,
which accepts the policy names) or from ``get_config()`` with ``dtype=<policy>`` -- with the
global Keras dtype policy set to the same policy while it is built and first called (so
sublayers created without a dtype follow it, as they do when an application sets the policy),
and always restored. Its weights are copied from the layer under test. Every variable must be
float32. Then one forward pass and one VJP (a random signed cotangent ``v``, rounded to the
compute dtype) run on it with float32 inputs, which the layer casts as in training, and the
same on the float32 layer (the layer under test, or its float32 copy) at the inputs and weights
rounded to the compute dtype, as Keras' autocast rounds them for the mixed layer (not rounded
for a layer with ``autocast=False``, which computes from the float32 input itself: Keras'
LayerNormalization) -- the reference the issue asks for: the output must be in the compute
dtype, and output and gradients (input and every variable) finite and close to the float32 ones
within the compute dtype's precision (tolerances in :func:`_compare`). The core's finite-
difference check is not repeated on the mixed layer: its low-precision floors grow with ``|x|``
and would pass an RMS norm whose output collapsed to 0, which the direct comparison cannot
miss; the float32 layer itself was verified by the first-order check. Execution modes and
second order are not repeated under the policy.

Cost: building the layer under each policy, one forward + VJP of it, and three of the float32
layer (the reference and its rounding window) -- measured in ``bench/beyond_cost.py``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from . import _kerases as kerases
from ._arrays import _backward, _f64, _index, _signed, _said, _smallest_normal, _tail
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._options import policies as policy_names
from ._records import Add, ForwardBackward, Skip
from ._targets import LayerTarget, weights_set_to

__all__ = ["normalize_policies", "check_policies", "policy_scope"]

#: The compute dtype of each policy.
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def normalize_policies(policies: Any, tgt: Any) -> tuple[str, ...]:
    names = policy_names(policies)
    if names and tgt.layer is None:
        raise TypeError(f"policies={names!r} applies to Keras Layer instances; "
                        f"{tgt.name} is a function: a policy only changes how a layer casts "
                        f"its inputs and variables, so check the function in float16 or "
                        f"bfloat16 instead")
    return names


@contextmanager
def policy_scope(policy: str, layer: Any = None) -> Iterator[None]:
    """Set the global dtype policy of ``layer``'s Keras (Keras 3 or tf-keras; Keras 3 when
    ``layer`` is None) to ``policy`` for the block; always restored."""
    module = kerases.keras_of(layer) if layer is not None else None
    if module is None:
        import keras as module
    with kerases.dtype_scope(policy, [module], set_floatx=False):
        yield


def check_policies(fb: ForwardBackward, policies: Sequence[str], *, add: Add,
                   skip: Skip) -> None:
    """Check ``fb``'s layer under each of ``policies`` against its float32 self: findings
    through ``add``, a comparison that cannot run through ``skip``."""
    cotangent = _Cotangent(fb.rng)  # one per check: every policy gets the same
    for policy in policies:
        _check_policy(fb, policy, cotangent, add, skip)


class _Cotangent:
    """A random, signed cotangent per output shape, drawn from the check's generator on
    first use (the mixed layer and its float32 reference get the same)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.shape, self.value = rng, None, None

    def of(self, shape: Any, compute: str) -> tf.Tensor:
        """The cotangent for an output of ``shape``, rounded to the compute dtype."""
        key = tuple(shape.as_list())
        if self.value is None or self.shape != key:
            self.shape, self.value = key, _signed(self.rng, key)
        return tf.cast(tf.cast(self.value, compute), tf.float32)


def _check_policy(fb: ForwardBackward, policy: str, cotangent: _Cotangent, add: Add,
                  skip: Skip) -> None:
    compute = COMPUTE[policy]
    where = f"under policy {policy} (compute dtype {compute}, variables float32)"
    floats = [i for i, a in enumerate(fb.args) if a.dtype.is_floating]
    inputs = [tf.cast(a, tf.float32) if a.dtype.is_floating else a for a in fb.args]
    # The inputs' labels are the core's (one param per floating input, in order).
    input_labels = [p.label for p in fb.params if not p.is_weight]
    try:
        mixed = _build(fb.target, policy, inputs)
    except Exception as exc:  # noqa: BLE001 - the layer's own failure is a finding
        add("error", f"{where}: raised {type(exc).__name__} when built and called: {_said(exc)}",
            policy=policy, exception=type(exc).__name__, traceback_tail=_tail(exc))
        return
    for w in mixed.weights:
        if _dtype_name(w) != "float32":
            add("dtype_mismatch",
                f"{where}: variable {w.name!r} is {_dtype_name(w)}; mixed precision keeps "
                f"variables in float32 (an optimizer's small updates vanish in "
                f"{compute}): create it with self.add_weight(...) without dtype=, or with "
                f"dtype=self.variable_dtype, not self.compute_dtype",
                policy=policy, variable=w.name, expected="float32", found=_dtype_name(w))
    reference = _reference(fb)
    mine = LayerTarget(mixed, fb.target.name)
    try:
        y, grads, labels = _forward_backward(mine, inputs, floats, mine.tracked_weights(),
                                             None, cotangent, compute, input_labels)
    except Exception as exc:  # noqa: BLE001
        add("error", f"{where}: raised {type(exc).__name__} when called and "
            f"differentiated: {_said(exc)}", policy=policy, exception=type(exc).__name__,
            traceback_tail=_tail(exc))
        return
    if y.dtype.name != compute:
        add("dtype_mismatch",
            f"{where}: output dtype is {y.dtype.name}, expected the compute dtype {compute} "
            f"(a hard-coded cast? under a mixed policy self.dtype is the variable dtype, "
            f"float32: cast with self.compute_dtype)",
            policy=policy, expected=compute, found=y.dtype.name)
    if reference is None:
        skip(f"{policy}: gradients not compared (no float32 copy of the layer could be built)")
        return
    ref, ref_weights = reference
    # What the mixed layer computes from: Keras casts a layer's floating inputs, and reads
    # its variables, in the compute dtype only where the layer autocasts. Keras'
    # LayerNormalization and GroupNormalization do not (autocast=False): they normalize the
    # float32 input in float32, and the float32 layer at inputs rounded to float16 would be
    # the wrong reference (a row of nearly equal values loses its spread there).
    autocast = kerases.autocasts(mixed)
    rounded = [tf.cast(tf.cast(a, compute), tf.float32) if a.dtype.is_floating and autocast
               else a for a in inputs]
    values = ([tf.cast(tf.cast(w, compute), w.dtype) for w in ref_weights] if autocast
              else [tf.identity(w) for w in ref_weights])
    y_ref, grads_ref, _ = _forward_backward(ref, rounded, floats, ref_weights, values,
                                            cotangent, compute, input_labels)
    # The rounding window: the reference again with every input and weight moved by
    # +-ANALYTIC_ULPS roundings of the compute dtype (one random sign pattern, both ways, so
    # that a pre-activation within rounding of a ReLU kink lands on each side once).
    delta = ANALYTIC_ULPS * machine_eps(compute)
    window = []
    signs = [_signed(fb.rng, tuple(t.shape)) > 0 for t in rounded if t.dtype.is_floating]
    w_signs = [_signed(fb.rng, tuple(w.shape)) > 0 for w in ref_weights]
    for side in (1.0, -1.0):
        moved = list(rounded)
        for i, sign in zip(floats, signs):
            moved[i] = rounded[i] * tf.constant(1 + side * delta * np.where(sign, 1, -1),
                                                tf.float32)
        w_moved = [v * tf.constant(1 + side * delta * np.where(sign, 1, -1), v.dtype)
                   for v, sign in zip(values, w_signs)]
        window.append(_forward_backward(ref, moved, floats, ref_weights, w_moved, cotangent,
                                        compute, input_labels)[1])
    _compare(fb, add, cotangent.value, where, policy, compute, _f64(y), _f64(y_ref),
             list(zip(labels, grads, grads_ref, [inputs[i].dtype for i in floats]
                      + [tf.float32] * (len(labels) - len(floats)), *window)))


def _reference(fb: ForwardBackward):
    """The layer in float32 with the same weights (the layer itself if it is float32)."""
    tgt = fb.target
    own = tgt.tracked_weights()
    if tgt.layer.compute_dtype == "float32" and all(_dtype_name(w) == "float32" for w in own):
        return tgt, own
    return tgt.twin(tf.float32, [tf.cast(a, tf.float32) if a.dtype.is_floating else a
                                 for a in fb.args], own)


def _forward_backward(target: Any, inputs: list, floats: list[int], weights: list,
                      values: list | None, cotangent: _Cotangent, compute: str,
                      input_labels: list[str]):
    """Output and VJP (float64 NumPy per source, None for a None gradient) with the check's
    cotangent rounded to the compute dtype; the weights hold ``values`` for the call (for the
    reference: rounded to the compute dtype, as Keras' autocast does in the mixed layer), and
    are restored."""
    with weights_set_to(weights, values):
        with tf.GradientTape() as tape:
            for i in floats:
                tape.watch(inputs[i])
            y = tf.convert_to_tensor(target(inputs))
        v = cotangent.of(y.shape, compute)
        sources = [inputs[i] for i in floats] + list(weights)
        grads = _backward(tape, y, sources, tf.cast(v, y.dtype))
    labels = list(input_labels) + [f"weight {w.name!r}" for w in weights]
    out = []
    for g in grads:
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        out.append(None if g is None else (g.dtype.name, _f64(g)))
    return y, out, labels


def _compare(fb: ForwardBackward, add: Add, v: np.ndarray, where: str, policy: str,
             compute: str, y: np.ndarray, y_ref: np.ndarray, grads: list) -> None:
    """Output finite where the reference is (and representable) and close to it; each
    gradient present, float32 for variables, finite, and close to the reference's.

    Tolerances. The reference ran at the same inputs and weights rounded to the compute dtype,
    so what is left is the mixed layer's own rounding of intermediates in that dtype,
    ANALYTIC_ULPS roundings of eps_c each (the core's allowance for an analytic chain), judged
    norm-wise (over the whole tensor, against its largest entry):

    The reference is also run with every input and weight moved by +-ANALYTIC_ULPS roundings
    (one random sign pattern, both ways): a gradient entry passes anywhere between those runs'
    values, widened by the tolerance, since a pre-activation within rounding of a ReLU kink may
    land on either side of it in the mixed run.

    * output: ``2 * ANALYTIC_ULPS * eps_c * max(|y|, |y_ref|)``, plus eps_c's smallest normal
      number (values below it flush to zero). An intermediate that overflows to inf (a sum of
      squares in float16 beyond 65504) turns the output into 0 or NaN: far outside. A wrong
      finite output is reported as ``dtype_mismatch`` (the layer does not compute in this
      dtype), a NaN/Inf one as ``nonfinite_output``.
    * gradient: a sum over the batch and features adds up the roundings of its terms, whose
      number is that of the output entries each gradient entry sums (``n = y.size / g.size``,
      at least 1) and whose independent, signed errors grow as ``sqrt(n)``; the terms are at
      most the gradient's largest entry, or the cotangent times the output's scale times a
      lever (the backward pass multiplies ``v`` by quantities of the output's size --
      softmax's ``s * v``, tanh's ``(1 - y^2) * v``, where a saturated layer's gradient is a
      cancellation far below its terms -- and then by what the differentiated quantity
      multiplies: the input for a weight, as in the core's parameter lever, the weights for
      the input). So ``|g - g_ref| <= ANALYTIC_ULPS * eps_c * (sqrt(n) * max(|g|, |g_ref|) +
      |v| max(1, |y_ref|) lever + n * tiny_c)``, ``lever = max(1, |x|)`` for a weight and
      ``max(1, |w|)`` for an input (largest entries). Such floors are loose where inputs are
      large (as the core's low-precision ones are); the output check above is what catches an
      overflowing intermediate there."""
    eps = machine_eps(compute)
    tiny = _smallest_normal(tf.as_dtype(compute))
    big = float(tf.as_dtype(compute).max)
    bad = ~np.isfinite(y) & np.isfinite(y_ref) & (np.abs(y_ref) <= big)
    if bad.any():
        j = int(np.argmax(bad))
        add("nonfinite_output",
            f"{where}: output is {y.flat[j]} at index {_index(j, y.shape)} where the "
            f"float32 layer gives {y_ref.flat[j]:.6g}, which {compute} can hold "
            f"({int(bad.sum())} / {bad.size} entries); an intermediate overflows "
            f"{compute} (a sum of squares, exp)? compute it in float32",
            policy=policy, index=list(_index(j, y.shape)), count=int(bad.sum()),
            reference=y_ref.flat[j])
        return
    if not np.isfinite(y).all():
        return  # the reference overflows too: nothing to compare
    y_size = max(float(np.max(np.abs(y), initial=0.0)), float(np.max(np.abs(y_ref), initial=0.0)))
    tol = 2 * ANALYTIC_ULPS * eps * y_size + tiny
    diff = np.abs(y - y_ref)
    if (diff > tol).any():
        j = int(np.argmax(diff))
        add("dtype_mismatch",
            f"{where}: the output differs from the float32 layer's at index "
            f"{_index(j, y.shape)}: {y.flat[j]:.6g} vs {y_ref.flat[j]:.6g} (difference "
            f"{diff.flat[j]:.3g}, tolerance {tol:.3g}: {2 * ANALYTIC_ULPS:g} roundings of "
            f"{compute} at the output's size {y_size:.3g}); {int((diff > tol).sum())} / "
            f"{y.size} entries differ: the layer does not compute in {compute}; an "
            f"intermediate that overflows or underflows it (a sum of squares beyond "
            f"{big:.6g}, an epsilon below {tiny:.3g}) or cancels? compute it in float32",
            policy=policy, index=list(_index(j, y.shape)), value=y.flat[j],
            reference=y_ref.flat[j], difference=diff.flat[j], tolerance=tol,
            mismatched=int((diff > tol).sum()), total=int(y.size))
    chain = float(np.max(np.abs(v), initial=0.0)) * max(
        1.0, float(np.max(np.abs(y_ref), initial=0.0)))
    levers = {kind: max([1.0] + [float(np.max(np.abs(p.value), initial=0.0))
                                 for p in fb.params if p.is_weight == is_weight])
              for kind, is_weight in (("input", False), ("weight", True))}
    for label, ours, theirs, dtype, *window in grads:
        if theirs is None:
            continue  # None in float32 too: the first-order check judged it
        if ours is None:
            add("disconnected_gradient",
                f"{where}: the gradient for {label} is None, but not in float32; a cast "
                f"through a non-float type or a tf.stop_gradient on the mixed path?",
                policy=policy, param=label)
            continue
        (g_dtype, g), (_, g_ref) = ours, theirs
        if g_dtype != dtype.name:
            add("dtype_mismatch",
                f"{where}: the gradient for {label} is {g_dtype}, expected {dtype.name} "
                f"(gradients reach float32 variables in float32)",
                policy=policy, param=label, expected=dtype.name, found=g_dtype)
            continue
        bad = ~np.isfinite(g) & np.isfinite(g_ref)
        if bad.any():
            j = int(np.argmax(bad))
            add("nonfinite_gradient",
                f"{where}: the gradient for {label} is {g.flat[j]} at index "
                f"{_index(j, g.shape)} where the float32 layer's is {g_ref.flat[j]:.6g} "
                f"({int(bad.sum())} / {bad.size} entries); an intermediate overflows "
                f"{compute}? (loss scaling does not fix an overflow in the layer itself)",
                policy=policy, param=label, index=list(_index(j, g.shape)),
                count=int(bad.sum()), reference=g_ref.flat[j])
            continue
        finite = np.isfinite(g_ref)
        if not finite.any():
            continue
        terms = max(1.0, y.size / max(1, g.size))
        size = max(float(np.max(np.abs(g[finite]))), float(np.max(np.abs(g_ref[finite]))))
        lever = levers["input"] if label.startswith("weight") else levers["weight"]
        tol = ANALYTIC_ULPS * eps * (np.sqrt(terms) * size + chain * lever + terms * tiny)
        lo, hi = g_ref, g_ref
        for other in window:
            if other is not None and other[1].shape == g_ref.shape:
                lo, hi = np.fmin(lo, other[1]), np.fmax(hi, other[1])
        with np.errstate(invalid="ignore"):
            diff = np.where(finite, np.maximum(np.maximum(lo - g, g - hi), 0.0), 0.0)
        if not (diff > tol).any():
            continue
        j = int(np.argmax(diff))
        add("gradient_mismatch",
            f"{where}: the gradient for {label} differs from the float32 layer's at "
            f"index {_index(j, g.shape)}: {g.flat[j]:.6g} vs {g_ref.flat[j]:.6g} "
            f"(difference {diff.flat[j]:.3g}, tolerance {tol:.3g}: {ANALYTIC_ULPS:g} "
            f"roundings of {compute} at the gradient's size {size:.3g}, summed over "
            f"{terms:g} terms); "
            f"{int((diff > tol).sum())} / {g.size} entries differ; an intermediate that "
            f"overflows or underflows {compute}, or loses its precision (a sum of squares, "
            f"a small epsilon)? compute it in float32",
            policy=policy, param=label, index=list(_index(j, g.shape)),
            value=g.flat[j], reference=g_ref.flat[j], difference=diff.flat[j],
            tolerance=tol, mismatched=int((diff > tol).sum()), total=int(g.size))


def _build(tgt: Any, policy: str, inputs: list) -> Any:
    """The layer under test rebuilt under ``policy``, called once, with its weights."""
    with policy_scope(policy, tgt.layer):
        built, first = None, None
        if tgt.builder is not None:
            try:
                built = tgt.builder(policy)
            except Exception as exc:  # noqa: BLE001 - try get_config() next
                first = exc
        if built is None:
            config = dict(tgt.layer.get_config())
            config["dtype"] = policy
            try:
                built = type(tgt.layer).from_config(config)
            except Exception:  # noqa: BLE001
                if first is not None:
                    raise first from None
                raise
        built(*inputs)
    ours, theirs = tgt.layer.weights, built.weights
    if len(ours) != len(theirs):
        raise ValueError(f"the layer built under {policy} has {len(theirs)} weights, the layer "
                         f"under test {len(ours)}")
    for mine, other in zip(ours, theirs):
        other.assign(tf.cast(np.asarray(mine.numpy()), _dtype_name(other)))
    return built


def _dtype_name(variable: Any) -> str:
    """A variable's dtype name: Keras 3 gives a string, tf-keras a tf.DType."""
    return tf.as_dtype(variable.dtype).name
