"""Execution-mode agreement: eager, ``tf.function`` and ``tf.function(jit_compile=True)``.

Training does not call a target the way a unit test does: it runs inside ``tf.function``, often
XLA-compiled. After the first-order check, :func:`check_modes` runs the same forward pass and the
same VJP (same inputs, weights and cotangent ``v``) under each requested mode and compares the
output and every gradient with the eager ones the core already computed.

Modes (option ``modes`` of :func:`gradcheck.check`):

* ``"eager"``: the baseline, always computed by the core;
* ``"function"`` (on by default): ``tf.function`` with a bounded input signature;
* ``"xla"`` (opt-in): ``tf.function(jit_compile=True)``. XLA compiles once per input *shape*
  (0.2-0.4 s each here, measured in ``bench/beyond_cost.py``), and fuzzing draws a new shape
  for almost every example, so by default it would multiply a fuzz run's time several times;
  ask for it with ``modes=("eager", "function", "xla")``.
* where TensorFlow sees a GPU, the eager pass is also run on ``/CPU:0`` and compared with the
  one on the default device (the GPU): a ``mode_mismatch`` then names both devices.

``modes=()`` (or ``("eager",)``) turns the check off.

Tolerance. Both runs compute the same operations, each rounding in the target's dtype ``d``;
compilation only reorders, fuses and approximates them (XLA's own exp/tanh, fused float16 chains
kept in float32). Each side is within ``ANALYTIC_ULPS`` roundings (the core's allowance for an
analytic chain) of the same value, so they may differ by ``2 * ANALYTIC_ULPS * eps_d`` times
the magnitude of the values involved. The magnitude is taken over the whole tensor (as in a
norm-wise comparison): ``max(1, |T_eager|max, |T_mode|max, S)``, with ``S`` the size of the
intermediates the tensor is computed from: the largest input entry for the output (``x *
sigmoid(x)``, ``(x - mean) / std``), and ``|v|max * max(1, |x|max, |y|max)`` for a gradient
(the scale of the chain-rule terms, as in the core's low-precision floor). Entries that are
NaN/Inf eagerly must be NaN/Inf in the mode as well, and finite ones finite. Where a float64
twin exists, the tolerance also grows by twice the eager run's own error against it, the
largest at the input, at four inputs nearby and at four a few ulps away
(``_conditioning.mode_allowance``): a computation whose intermediates cancel rounds far
beyond a few ulps in every mode alike, and one input's error is only one sample of that
rounding. Where the mode still differs by more, the float64 twin run eagerly and in the mode
tells rounding from another formula: rounding shrinks with eps (:func:`_scales_with_eps`).
Real mode bugs are not subtle (a stale Python value captured at trace time, a different
branch): they differ by O(1), far beyond a few ulps.

A target that cannot run in a mode (a ``.numpy()`` call, ``float(tensor)``, Python control
flow on a tensor value, a variable created per call, an op XLA cannot compile) is reported as
``mode_mismatch`` too: it agrees with eager nowhere. The message names the mode and the original
exception; ``details`` holds ``mode``, ``exception`` and ``traceback_tail``, like an ``error``
finding. (It is not an ``error``: the target runs fine where the core called it.)

Tracing cost. One ``tf.function`` per target, mode and signature is cached (an LRU keyed by the
target object's id, holding a reference to it so the id cannot be reused). The signature fixes
dtypes and ranks and leaves every dimension ``None``, so fuzzing over shapes does not retrace.
A target whose trace needs static shapes (``x.shape[-1]`` used as a Python int, which Keras
layers legitimately do since their feature dimensions are fixed) is traced again with the exact
shapes; if that works, the target is remembered as shape-specialized and cached per shape. Only
a failure with exact shapes as well is a finding.

Training traces with other shapes still: a Keras model's input spec leaves the batch axis None
and fixes the feature axes, and a static feature axis can change the graph (Keras' sparsemax
then constant-folds a float16 ``tf.range`` that has no kernel). So each target is also traced
once that way, per mode, dtypes and ranks, for the first feature shapes it is checked with;
later inputs with the same feature shapes run that trace instead of the shape-agnostic one (one
trace, not one per shape; one traced call per check). Across a fuzz run both traces run: the
shape-agnostic one for every other feature shape.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _index, _max_abs_finite, _said, _tail
from ._conditioning import TwinGradients, mode_allowance
from ._numerics import ANALYTIC_ULPS, SAFETY, machine_eps
from ._records import Add, ForwardBackward, Reference

__all__ = ["check_modes"]

_LABELS = {"function": "tf.function", "xla": "tf.function(jit_compile=True)"}

# (id(object), mode, signature key, weight ids) -> (object, traced function). Bounded: a fuzz
# session builds a layer per feature shape, and each holds its traced graph.
_CACHE: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_CACHE_SIZE = 64
# The same keys -> the tf.function's one concrete function (its signature is fixed).
_CONCRETE: dict[tuple, Any] = {}
# id(object) -> object, for targets whose trace needs static shapes.
_STATIC: OrderedDict[int, Any] = OrderedDict()
# (id(object), mode, dtypes, ranks) -> (object, the signature shapes of its one model-like trace)
_MODEL_SHAPES: OrderedDict[tuple, tuple[Any, tuple]] = OrderedDict()


def check_modes(fb: ForwardBackward, ref: Reference, modes: Sequence[str], *, add: Add,
                twin: TwinGradients) -> None:
    """Compare the eager output and VJP of step 1 (``fb``) with those under each of ``modes``;
    ``ref`` and ``twin`` (the float64 twin and its gradients) give the eager run's own error
    (:func:`_conditioning.mode_allowance`). Findings go to ``add``."""
    found = _Found(fb, ref, twin)
    eager = _Eager.of(fb)
    failed = False  # XLA fails wherever tf.function does: one finding says it
    for mode in modes:
        model = _in_model_shapes(fb, mode)
        if model is None:
            failed |= _judge(found, mode, _LABELS[mode], _in_mode(fb, mode), eager, failed)
            continue
        # One traced call: the model-shaped trace, where it applies. Where it shows something,
        # the shape-agnostic trace tells whether the static feature axes are to blame (the
        # finding names the model's input shape) or tracing at all (it does not); a target
        # found to need exact shapes there is traced with them alone, as on the other inputs.
        mark = len(found.findings)
        shape, result = model
        label = f"{_LABELS[mode]} traced with the input shape {shape} of a Keras model"
        raised = _judge(found, mode, label, result, eager, failed)
        if not raised and len(found.findings) == mark:
            continue
        shown = found.findings[mark:]
        del found.findings[mark:]
        plain = _judge(found, mode, _LABELS[mode], _in_mode(fb, mode), eager, failed)
        if not plain and len(found.findings) == mark and not _static(fb):
            found.findings.extend(shown)
            failed |= raised
        failed |= plain
    accelerators = gpu_devices()
    if accelerators:  # the core ran on the default device, the first GPU: now on the CPU
        on_cpu = _on_device(fb, "/CPU:0")
        mode = f"/CPU:0 vs {accelerators[0]}"
        if isinstance(on_cpu, BaseException):
            _report_error(found, mode, f"eager on /CPU:0 (it ran on {accelerators[0]})", on_cpu)
        else:
            _compare(found, "eagerly on /CPU:0", mode, eager, on_cpu,
                     f"eagerly on {accelerators[0]}")
    for kind, message, details in found.findings:
        add(kind, message, **details)


class _Found:
    """The mode check's findings, kept until it is done (a model-shaped trace's findings are
    dropped where the shape-agnostic trace shows they are not the feature axes' doing), with
    what judging them reads."""

    def __init__(self, fb: ForwardBackward, ref: Reference, twin: TwinGradients):
        self.fb, self.ref, self.twin = fb, ref, twin
        self.findings: list[tuple[str, str, dict]] = []

    def add(self, kind: str, message: str, **details: Any) -> None:
        self.findings.append((kind, message, details))


def _judge(found: _Found, mode: str, label: str, result: Any, eager: _Eager,
           failed: bool) -> bool:
    """Report what one trace's ``result`` shows (an error only when no earlier mode failed);
    True when it raised."""
    if isinstance(result, BaseException):
        if not failed:
            _report_error(found, mode, label, result)
        return True
    _compare(found, f"under {label} (mode {mode!r})", mode, eager, result, "eagerly")
    return False


def gpu_devices() -> list[str]:
    """The visible GPUs' logical device names (the CPU-vs-GPU comparison runs when any)."""
    return [d.name for d in tf.config.list_logical_devices("GPU")]


# --------------------------------------------------------------------------------------------
# One forward + VJP, eager or traced


class _Eager:
    """What the core computed eagerly, in float64 NumPy: output and one gradient per param."""

    def __init__(self, y: np.ndarray, dtype: tf.DType, grads: list):
        self.y, self.dtype, self.grads = y, dtype, grads

    @classmethod
    def of(cls, fb: ForwardBackward) -> "_Eager":
        # p.grad is None both for a None gradient and for one the core found unusable (wrong
        # shape, dtype, NaN): compare only what the core could use, and None-ness.
        grads = [None if p.grad_missing else p.grad for p in fb.params]
        return cls(fb.y64, fb.y_dtype, grads)


def _sources(fb: ForwardBackward) -> tuple[list[int], list[Any]]:
    floats = [p.arg_index for p in fb.params if not p.is_weight]
    weights = [p.weight for p in fb.params if p.is_weight]
    return floats, weights


def _forward_backward(call: Any, floats: list[int], weights: list[Any]):
    """The function every mode runs: the target's (``call``'s) output and its VJP with
    cotangent v."""

    def forward_backward(*tensors):
        *args, v = tensors
        with tf.GradientTape() as tape:
            for i in floats:
                tape.watch(args[i])
            y = call(list(args))
        y = tf.convert_to_tensor(y)
        grads = tape.gradient(y, [args[i] for i in floats] + list(weights), output_gradients=v)
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in grads]
        return y, grads

    return forward_backward


def _inputs(fb: ForwardBackward) -> list[tf.Tensor]:
    """The target's inputs and the cotangent, as tensors: made once per check (its cotangent
    array, held here so that its identity stays its own) rather than once per traced call."""
    global _LAST_INPUTS
    if _LAST_INPUTS is None or _LAST_INPUTS[0] is not fb.v or _LAST_INPUTS[1] is not fb.args:
        _LAST_INPUTS = (fb.v, fb.args, [*fb.args, tf.constant(fb.v, fb.y_dtype)])
    return _LAST_INPUTS[2]


_LAST_INPUTS: tuple | None = None  # (cotangent, args, tensors) of the latest check


def _signature_shapes(tensors: list[tf.Tensor], shapes: str) -> tuple:
    """The traced shapes: "dynamic" (every dimension None), "exact", or "batch" (axis 0 None
    where it is the batch axis of the first input, every other dimension exact: what a Keras
    model's input spec gives tf.function in training)."""
    if shapes == "dynamic":
        return tuple((None,) * t.shape.rank for t in tensors)
    exact = tuple(tuple(t.shape.as_list()) for t in tensors)
    if shapes == "exact":
        return exact
    batch = exact[0][0] if exact and exact[0] else None
    return tuple((None,) + s[1:] if len(s) >= 2 and s[0] == batch else s for s in exact)


def _traced(fb: ForwardBackward, mode: str, shapes_policy: str):
    """The cached traced function for this target, mode and signature."""
    floats, weights = _sources(fb)
    owner = fb.target.layer if fb.target.layer is not None else fb.target.fn
    tensors = _inputs(fb)
    shapes = _signature_shapes(tensors, shapes_policy)
    key = (id(owner), mode, tuple(t.dtype.name for t in tensors), shapes,
           tuple(id(w) for w in weights), fb.target.training)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not owner:
        signature = [tf.TensorSpec(shape, t.dtype) for shape, t in zip(shapes, tensors)]
        fn = tf.function(_forward_backward(fb.target, floats, weights),
                         input_signature=signature, jit_compile=(mode == "xla"),
                         reduce_retracing=False)
        hit = _CACHE[key] = (owner, fn)
        _CONCRETE.pop(key, None)
        while len(_CACHE) > _CACHE_SIZE:
            _CONCRETE.pop(_CACHE.popitem(last=False)[0], None)
    _CACHE.move_to_end(key)
    if key not in _CONCRETE:  # traced here (a failing trace raises, every time)
        _CONCRETE[key] = hit[1].get_concrete_function()
    return _CONCRETE[key]  # called directly: a tf.function's dispatch costs ~0.1 ms a call


def _static(fb: ForwardBackward) -> bool:
    """Whether the target is known to trace only with exact shapes."""
    owner = fb.target.layer if fb.target.layer is not None else fb.target.fn
    return _STATIC.get(id(owner)) is owner


def _in_mode(fb: ForwardBackward, mode: str):
    """(y, grads) as float64 NumPy under ``mode``, or the exception it raised."""
    owner = fb.target.layer if fb.target.layer is not None else fb.target.fn
    static = _STATIC.get(id(owner)) is owner
    try:
        return _numpy(*_traced(fb, mode, "exact" if static else "dynamic")(*_inputs(fb)))
    except Exception as exc:  # noqa: BLE001 - the target's failure in this mode is a finding
        if static:
            return exc
        first = exc
    try:  # does it trace with the exact shapes (a static x.shape[-1])?
        result = _numpy(*_traced(fb, mode, "exact")(*_inputs(fb)))
    except Exception:  # noqa: BLE001
        return first
    _STATIC[id(owner)] = owner
    while len(_STATIC) > _CACHE_SIZE:
        _STATIC.popitem(last=False)
    return result


def _in_model_shapes(fb: ForwardBackward, mode: str):
    """(the first input's traced shape, (y, grads) or the exception raised) under ``mode``
    traced as a Keras model traces it (batch axis None, feature axes static); None where
    that adds nothing.

    A trace with static feature axes can take other paths than the dynamic one (constant
    folding: keras' sparsemax builds a float16 tf.range that then has no kernel). One such
    trace per target, mode, dtypes and ranks, for the first feature shapes seen: tracing per
    shape would cost a trace for almost every fuzz example. Deterministic for a given input:
    later inputs with those feature shapes run it, others do not."""
    owner = fb.target.layer if fb.target.layer is not None else fb.target.fn
    if _STATIC.get(id(owner)) is owner:
        return None  # already traced with exact shapes
    tensors = _inputs(fb)
    shapes = _signature_shapes(tensors, "batch")
    if shapes == _signature_shapes(tensors, "dynamic"):
        return None
    key = (id(owner), mode, tuple(t.dtype.name for t in tensors), tuple(map(len, shapes)))
    seen = _MODEL_SHAPES.setdefault(key, (owner, shapes))
    if seen[0] is not owner:  # the id was reused by a new object
        seen = _MODEL_SHAPES[key] = (owner, shapes)
    while len(_MODEL_SHAPES) > _CACHE_SIZE:
        _MODEL_SHAPES.popitem(last=False)
    if seen[1] != shapes:
        return None
    try:
        result = _numpy(*_traced(fb, mode, "batch")(*tensors))
    except Exception as exc:  # noqa: BLE001 - the target's failure in this mode is a finding
        result = exc
    return list(shapes[0]), result


def _on_device(fb: ForwardBackward, device: str):
    """(y, grads) of the eager forward + VJP with every op placed on ``device``."""
    floats, weights = _sources(fb)
    try:
        with tf.device(device):
            return _numpy(*_forward_backward(fb.target, floats, weights)(*_inputs(fb)))
    except Exception as exc:  # noqa: BLE001
        return exc


def _numpy(y: Any, grads: Sequence[Any]):
    return (y.dtype, np.asarray(y.shape.as_list()), _f64(y),
            [None if g is None else (g.dtype, g.shape.as_list(), _f64(g)) for g in grads])


# --------------------------------------------------------------------------------------------
# Verdict


def _tolerance(eps: float, *tensors: np.ndarray, intermediates: float) -> float:
    """2 * ANALYTIC_ULPS roundings of d at the tensors' magnitude (see the module doc)."""
    size = max([1.0, intermediates] + [_max_abs_finite(t) for t in tensors])
    return 2 * ANALYTIC_ULPS * eps * size


def _compare(found: _Found, where: str, mode: str, eager: _Eager, result, baseline: str) -> None:
    fb = found.fb
    y_dtype, y_shape, y, grads = result
    if y_dtype != eager.dtype or tuple(y_shape) != eager.y.shape:
        found.add("mode_mismatch",
                  f"{where}, the output is {y_dtype.name} of shape {list(y_shape)} but "
                  f"{baseline} {eager.dtype.name} of shape {list(eager.y.shape)}", mode=mode,
                  found=[y_dtype.name, list(y_shape)],
                  expected=[eager.dtype.name, list(eager.y.shape)])
        return
    x_max = max([1.0] + [_max_abs_finite(p.value) for p in fb.params if not p.is_weight])
    if _differs(found, where, baseline, mode, "the output", eager.y, y,
                _tolerance(fb.eps, eager.y, y, intermediates=x_max), rounding_seen=None):
        return
    y_max = _max_abs_finite(eager.y)
    chain = _max_abs_finite(fb.v) * max(1.0, x_max, y_max)
    for k, (p, ours, theirs) in enumerate(zip(fb.params, eager.grads, grads)):
        if p.grad is None and not p.grad_missing:
            continue  # unusable eagerly (shape, dtype, NaN): the core reported it
        if (ours is None) != (theirs is None):
            found.add("mode_mismatch",
                      f"{where}, the gradient for {p.label} is "
                      f"{'None' if theirs is None else 'a tensor'} but {baseline} "
                      f"{'None' if ours is None else 'a tensor'}", mode=mode, param=p.label)
            continue
        if ours is None:
            continue
        g_dtype, g_shape, g = theirs
        if g_dtype != p.dtype or tuple(g_shape) != ours.shape:
            found.add("mode_mismatch",
                      f"{where}, the gradient for {p.label} is {g_dtype.name} of shape "
                      f"{list(g_shape)} but {baseline} {p.dtype.name} of shape "
                      f"{list(ours.shape)}",
                      mode=mode, param=p.label)
            continue
        _differs(found, where, baseline, mode, f"the gradient for {p.label}", ours, g,
                 _tolerance(fb.eps, ours, g, intermediates=chain), rounding_seen=k,
                 param=p.label)


def _differs(found: _Found, where: str, baseline: str, mode: str, what: str, ours: np.ndarray,
             theirs: np.ndarray, tol: float, rounding_seen: int | None, **extra: Any) -> bool:
    with np.errstate(invalid="ignore", over="ignore"):
        diff = theirs - ours  # NaN or Inf wherever either side is not finite
    if not diff.size or max(float(diff.max()), -float(diff.min())) <= tol:
        return False  # all finite on both sides and within tol
    finite = np.isfinite(ours)
    with np.errstate(invalid="ignore"):
        diff = np.where(finite, np.abs(theirs - ours), 0.0)
    bad = (finite & ~(diff <= tol)) | (~finite & np.isfinite(theirs))
    if bad.any() and (finite & ~(diff <= tol)).any():
        # The eager run's own error against the float64 twin (module doc, _conditioning.py)
        tol += mode_allowance(found.fb, found.ref, found.twin, rounding_seen)
        bad = (finite & ~(diff <= tol)) | (~finite & np.isfinite(theirs))
        if (finite & bad).any() and _scales_with_eps(found, mode, rounding_seen,
                                                     float(np.max(diff[finite]))):
            bad &= ~finite
    if not bad.any():
        return False
    with np.errstate(invalid="ignore"):
        j = int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf, posinf=np.inf), -1.0)))
    idx = _index(j, ours.shape)
    found.add("mode_mismatch",
              f"{where}, {what} differs at index {idx}: {theirs.flat[j]:.9g} vs "
              f"{ours.flat[j]:.9g} {baseline} (difference "
              f"{abs(theirs.flat[j] - ours.flat[j]):.3g}, tolerance {tol:.3g}); "
              f"{int(bad.sum())} / {bad.size} entries differ. {_causes(theirs.flat[j])}",
              mode=mode, index=list(idx), value=theirs.flat[j], eager=ours.flat[j],
              difference=abs(theirs.flat[j] - ours.flat[j]), tolerance=tol,
              mismatched=int(bad.sum()), total=int(bad.size), **extra)
    return True


def _causes(value: float) -> str:
    """What to suspect where a mode's value differs from eager's: a value it made NaN/Inf
    (eager's is finite) can be TensorFlow's graph optimizer reordering the arithmetic until
    an intermediate overflows (a float16 norm's gradient with an unknown batch size)."""
    usual = ("A Python value frozen at trace time, a Python side effect, or code that "
             "branches on tf.executing_eagerly()?")
    if np.isfinite(value):
        return usual
    return (f"{usual} Or, where the dtype is short, TensorFlow's graph optimizer computing it "
            f"in another order in which an intermediate overflows (compute it in float32, or "
            f"rescale the intermediate).")


def _scales_with_eps(found: _Found, mode: str, param_index: int | None,
                     difference: float) -> bool:
    """Whether the mode's largest ``difference`` from eager (in the output, or the gradient
    of ``fb.params[param_index]``) is the rounding of the formula, not another formula.

    The float64 twin, the same code, is run eagerly and in ``mode`` too. A rounding
    difference is the same graph rounded in another order: in float64 it shrinks with eps,
    to about ``difference * eps64 / eps`` (a conditioning of 3e4, as in ``mean(x^2) -
    mean(x)^2`` at a constant row, multiplies both alike). A different formula (a value
    frozen at trace time, a branch on ``tf.executing_eagerly()``, a constant of another
    dtype) differs in float64 by as much as in the low dtype, or only by float64's own
    rounding where the twin's fresh trace freezes the value it reads now. So the
    difference is rounding where the twin's, scaled back by ``eps / eps64``, is the same
    within ``SAFETY`` either way (NUMERICS.md's factor between an estimate and what it must
    cover: two samples of rounding differ by that much). A different formula within that
    of the rounding at this input is indistinguishable from it here. Only where the eager
    run's own error did not cover it; the twin's trace is made for it alone, with the
    input's exact shapes (not kept: one per such check)."""
    fb, ref = found.fb, found.ref
    if ref.dtype != tf.float64 or fb.dtype == tf.float64:
        return False
    floats, _ = _sources(fb)
    run = _forward_backward(ref.call, floats, list(ref.weights))
    tensors = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in fb.args]
    tensors.append(tf.constant(fb.v, tf.float64))
    try:
        eager = _numpy(*run(*tensors))
        traced = _numpy(*tf.function(run, jit_compile=(mode == "xla"))(*tensors))
        if param_index is None:
            ours, theirs = eager[2], traced[2]
        else:
            ours, theirs = eager[3][param_index][2], traced[3][param_index][2]
        with np.errstate(invalid="ignore", over="ignore"):
            twin = float(np.max(np.abs(theirs - ours)))
    except Exception:  # noqa: BLE001 - no twin to compare: not explained
        return False
    scaled = twin * fb.eps / machine_eps("float64")
    return difference / SAFETY <= scaled <= difference * SAFETY


def _report_error(found: _Found, mode: str, label: str, exc: BaseException) -> None:
    found.add("mode_mismatch",
              f"runs eagerly but not under {label} (mode {mode!r}): raised "
              f"{type(exc).__name__}: {_first_line(exc)}. Under tracing, tensors are symbolic: "
              f"no .numpy() or float(tensor), Python control flow on a tensor value must be "
              f"tf.cond/tf.where, variables are created once"
              + (", and every op needs an XLA kernel (no tf.numpy_function/py_function)"
                 if mode == "xla" else "")
              + _constant_hint(exc)
              + (f"; pass modes=() or leave {mode!r} out of modes= if it is never run this way"),
              mode=mode, exception=type(exc).__name__, traceback_tail=_tail(exc))


def _constant_hint(exc: BaseException) -> str:
    """A graph op converts a Python number before it knows the other operands' dtype (the
    first operand of tf.maximum, either branch of tf.where): float32. Eagerly the op infers it
    from all operands, so only the trace fails."""
    if not re.search(r"has type \w+ that does not match type float32", _said(exc)):
        return ""
    return (", and a Python number in an op with a tensor of another dtype "
            "(tf.maximum(0.0, x), tf.where(c, 1.0, y)) can be a float32 constant in a graph: "
            "build it in the tensor's dtype (tf.zeros_like(x), tf.cast(1.0, x.dtype))")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The error itself: TensorFlow wraps a tracing error as "in user code: <frames> <error>";
    keep the error and the user's innermost frame (file, line, code)."""
    text = re.sub(r"\[_XlaMustCompile[^\]]*\]", "", _said(exc))  # graph attributes: noise
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # Keras 3's bold
    # Keras (3 and tf-keras) appends the layer's call arguments after the error: not the error.
    text = re.split(r"\n\s*(?:Call arguments|Arguments) received by ", text)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if line == "in user code:" and len(lines) > 1:
        line = lines[-1]
        frames = [i for i, text in enumerate(lines[:-1]) if text.startswith('File "')]
        if frames:
            i = frames[-1]
            where = lines[i].split(", in ")[0].replace('File "', "").replace('"', "")
            code = lines[i + 1] if i + 1 < len(lines) - 1 else ""
            line += f" (at {where}: {code})" if code else f" (at {where})"
    prefix = f"{type(exc).__name__}: "
    line = line[len(prefix):] if line.startswith(prefix) else line
    return line if len(line) <= limit else line[: limit - 3] + "..."
