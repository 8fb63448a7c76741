"""Where a NaN/Inf gradient comes from: the first op of the backward graph that makes one.

A non-finite gradient behind a finite output has several causes: the ``tf.where`` NaN trap (a
branch not taken back-propagates ``0 * inf``), an intermediate that overflows in a low dtype
(RMSNorm's ``rsqrt`` gradient ``-y^3 / 2`` past 65504 in float16), a ``log`` or ``sqrt`` at 0.
A cause is named only with evidence: the forward and backward pass are traced once more as a
graph, every floating intermediate is fetched, and the first op (in graph order) whose output
is not finite while all its inputs are is the culprit. The ``tf.where`` trap is named when
that op's non-finite value reaches a ``Select`` (``tf.where``) of the forward pass's gradient.
Where the trace fails (code that does not trace), no cause is given. A plain function's trace
is kept for its next checks at the same shapes and dtypes (``_TRACES``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _backward
from ._records import ForwardBackward
from ._targets import Target

__all__ = ["nonfinite_cause", "overflowed_at"]

_SELECT = ("Select", "SelectV2")


def nonfinite_cause(run: Any) -> str:
    """A sentence naming the op that first makes a NaN/Inf in ``run``'s forward + backward
    pass, or "" when it cannot be found."""
    key = _key(run)
    kept = _TRACES.get(key) if key is not None else None
    if kept is not None and kept[0] is run.tgt.fn:
        _TRACES.move_to_end(key)
        try:
            hint = _first_nonfinite(run, kept[1], reused=True)
        except Exception:  # noqa: BLE001 - a kept trace that fails is traced afresh
            hint = ""
        if hint:
            return hint
    try:
        traced = _trace(run.tgt, run.args, run.params, tf.TensorSpec(run.y.shape, run.y.dtype))
        if key is not None:
            _TRACES[key] = (run.tgt.fn, traced)
            while len(_TRACES) > _TRACES_KEPT:
                _TRACES.popitem(last=False)
        return _first_nonfinite(run, traced)
    except Exception:  # noqa: BLE001 - no evidence, no hint
        return ""


#: Traces of plain functions (not layers, whose state is theirs to change), reused while the
#: same function is checked at inputs of the same shapes and dtypes (fuzzing's shrinking, a
#: sweep repeated): tracing and instantiating the graph is most of a hint's cost. A kept
#: trace is used only where it computes bitwise the eager pass's output and gradients (a
#: function that reads Python state which has changed is traced afresh) and shows a culprit.
#: The most recent few are kept.
_TRACES: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_TRACES_KEPT = 8


def _key(run: Any) -> tuple | None:
    """What a kept trace is for (None: never kept): the function, the shapes and dtypes."""
    if type(run.tgt) is not Target:
        return None
    try:
        return (id(run.tgt.fn), tuple((tuple(a.shape), a.dtype) for a in run.args),
                tuple(run.y.shape), run.y.dtype,
                tuple(id(p.weight) for p in run.params if p.is_weight))
    except (AttributeError, TypeError):
        return None


def _trace(target: Any, args: Sequence, params: Sequence, y_spec: tf.TensorSpec) -> Any:
    """The forward and backward pass of ``target`` as one graph of (args..., cotangent)
    returning the output, the gradients for the floating args and ``params``' weights, and
    every floating intermediate."""
    floats = [i for i, a in enumerate(args) if a.dtype.is_floating]
    weights = [p.weight for p in params if p.is_weight]

    def forward_backward(*inputs):  # graph mode: tf.gradients, not a tape
        args, v = list(inputs[:-1]), inputs[-1]
        y = tf.convert_to_tensor(target(args))
        grads = tf.compat.v1.gradients(y, [args[i] for i in floats] + weights, grad_ys=v)
        ops = [op for op in tf.compat.v1.get_default_graph().get_operations()
               if op.outputs and op.type not in ("Placeholder", "Const", "VarHandleOp")]
        return y, [g for g in grads if g is not None], [
            op.outputs[0] for op in ops
            if op.outputs[0].dtype.is_floating and op.outputs[0].dtype != tf.resource]

    specs = [tf.TensorSpec(a.shape, a.dtype) for a in args]
    return tf.compat.v1.wrap_function(forward_backward, specs + [y_spec])


def _first_nonfinite(run: Any, traced: Any, reused: bool = False) -> str:
    """The hint from ``traced`` at the run's inputs; "" also where a ``reused`` trace computes
    another output or gradients than the run's eager pass."""
    fetches = traced.structured_outputs[2]
    if not fetches:
        return ""
    v = tf.constant(run.v, run.y.dtype)
    y, grads, values = traced(*run.args, v)
    if reused:
        eager = [g for g in _backward(run.tape, run.y, run.sources, v) if g is not None]
        if not all(np.array_equal(_as_array(a), _as_array(b), equal_nan=True)
                   for a, b in zip([y, *grads], [run.y, *eager])) or len(grads) != len(eager):
            return ""
    finite = {t.name: _all_finite(value) for t, value in zip(fetches, values)}
    for t, value in zip(fetches, values):
        if finite[t.name]:
            continue
        inputs = [i for i in t.op.inputs if i.name in finite]
        if all(finite[i.name] for i in inputs):
            what = "NaN" if np.isnan(_as_array(value)).any() else "Inf"
            hint = (f"the first {what} is made by op {t.op.type} ({t.op.name!r}) from finite "
                    f"inputs")
            if what == "Inf" and run.dtype in (tf.float16, tf.bfloat16):
                hint += f": a value past {run.dtype.name}'s range ({float(run.dtype.max):.6g})"
            if _reaches_select(t.op):
                hint += ("; it reaches a tf.where: the tf.where NaN trap? (a branch not taken "
                         "still back-propagates 0 * inf; compute the unsafe branch on safe "
                         "inputs)")
            return hint
    return ""


def _reaches_select(op: Any, limit: int = 200) -> bool:
    """Whether a Select (tf.where, or its gradient's) consumes the output of ``op``."""
    seen, frontier = set(), [op]
    while frontier and len(seen) < limit:
        current = frontier.pop()
        for out in current.outputs:
            for consumer in out.consumers():
                if consumer.type in _SELECT:
                    return True
                if consumer.name not in seen:
                    seen.add(consumer.name)
                    frontier.append(consumer)
    return False


def _as_array(value: Any) -> np.ndarray:
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.bfloat16:
        value = tf.cast(value, tf.float32)
    return np.asarray(value)


def _all_finite(value: Any) -> bool:
    return bool(np.isfinite(_as_array(value)).all())


def overflowed_at(fb: ForwardBackward, shape: tuple) -> np.ndarray | None:
    """Per entry of a tensor of ``shape``: whether a floating intermediate of that shape in
    ``fb``'s backward pass (traced once more as a graph, run at its inputs and cotangent) that
    the gradients are computed from is NaN or Inf there, the evidence that the dtype's range,
    not its precision, shaped a gradient (``x * x`` past 65504 in float16 makes ``1 / sqrt(1
    + x * x)`` 0). Forward intermediates do not count, nor backward ones no gradient is
    computed from: a ``tf.where`` branch not taken (a Taylor branch's ``(pi x)^2``)
    overflows harmlessly, and so does its power's gradient for the exponent (``dy y log
    x``). None where the target does not trace."""
    try:
        traced = _trace(fb.target, fb.args, fb.params, tf.TensorSpec(fb.y64.shape, fb.y_dtype))
        _, _, values = traced(*fb.args, tf.constant(fb.v, fb.y_dtype))
    except Exception:  # noqa: BLE001 - no trace, no evidence
        return None
    feeding = _ancestors(traced.structured_outputs[1])
    where = np.zeros(shape, dtype=bool)
    for tensor, value in zip(traced.structured_outputs[2], values):
        if tensor.op.name.startswith(_BACKWARD) and tensor.op.name in feeding:
            value = _as_array(value)
            if value.shape == shape:
                where |= ~np.isfinite(value)
    return where


def _ancestors(tensors: Sequence) -> set[str]:
    """The names of the ops ``tensors`` are computed from (theirs included)."""
    seen: set[str] = set()
    frontier = [t.op for t in tensors]
    while frontier:
        op = frontier.pop()
        if op.name not in seen:
            seen.add(op.name)
            frontier.extend(t.op for t in op.inputs)
    return seen


#: The name scope ``tf.compat.v1.gradients`` puts the backward pass's ops in (a custom
#: gradient's function included).
_BACKWARD = "gradients"
