"""A layer's finite-difference values through one traced graph, where that is cheaper.

Finite differences call the numerical reference 8 to 12 times per check of a layer (four
samples per route, the probes, the input itself), for its values only. Eagerly, each call
pays Keras' ``Layer.__call__`` for the layer and every layer it holds, then one dispatch per
op: a ``Dense(activation=...)`` call took 0.60 ms here and a ``Sequential`` of Dense and a
PReLU 0.86 ms, against 0.21-0.22 ms for a call of the same layer's concrete function (each
example layer called alone, float64; a layer of three ops: 0.14-0.18 ms eagerly, 0.20 ms
traced; a check's whole cost before and after is in ``bench/layer_checks.py``). So a
layer whose graph holds at least :data:`MIN_OPS` ops that compute (the break-even of those
figures: about 0.1 ms of ``__call__`` plus 0.03 ms an op against 0.21 ms a call) is called
through its concrete function for those values, traced as a Keras model traces it: the
batch axis ``None``, the other axes as in the input (a stacked call of the per-element route
has more rows, nothing else).

Only where it pays and stands for the eager call:

* a reference layer met in an earlier check (a fuzz run's twin, built once per item): a
  trace of an example layer cost 3-9 ms here (39 ms the process's first), more than one
  check saves, so a layer checked once stays eager;
* at every check, the traced output must be the eager one, at the input (the reference's
  own first call) and at an input moved by up to 1/16 of max(1, |x|) per entry, within
  ``2 * ANALYTIC_ULPS`` roundings of float64 at the scale ``max(1, |y|, |x|)``: two
  computations of one value (as ``FunctionTarget`` and the mode check hold them), NaN where
  NaN. A layer that branches on ``tf.executing_eagerly()``, or reads a Python value the
  trace froze and that has changed since, differs by far more, and is called eagerly from
  then on. The second input, because the first alone can hide it: at x = 0 every formula
  ``k * x`` agrees (a review found a layer whose changed slope passed there and failed
  the samples). Between the two, the samples a few steps h away agree too; and the check
  then takes the input's value from the trace, so that every value it differences comes
  from the same graph. Together one eager call more and two traced ones, against 8-12
  eager calls saved.

Everything else that runs the reference (its gradients, the mode check's eager twin) calls
the layer as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _f64, _max_abs_finite
from ._conditioning import _WINDOW
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._targets import LayerTarget
from ._training import TrainingLayerTarget

__all__ = ["traced_values", "MIN_OPS"]

#: Ops that compute (not placeholders, variable reads, identities, constants) from which a
#: traced call is cheaper than an eager one (see the module docstring).
MIN_OPS = 4
#: The second input the trace is held to lies as far from the check's, relative to max(1,
#: |x|), as ``_conditioning``'s neighbours (``_WINDOW``, derived there): far enough that
#: every intermediate moves, so that two formulas agreeing at the input (``k * x`` at 0)
#: part there. Its draw is fixed: same input, same verdict.
_NEARBY_SEED = 16
_BOOKKEEPING = {"Placeholder", "ReadVariableOp", "Identity", "NoOp", "Const"}

# id(layer) -> (layer, {signature key: concrete function, or None where eager stays}). A
# layer's first appearance leaves an empty dict: traced from its second check on. Bounded,
# and holding the layer so that its id is not reused.
_TRACES: OrderedDict[int, tuple[Any, dict]] = OrderedDict()
_SIZE = 64

Values = Callable[[Sequence[tf.Tensor]], Any]


def traced_values(ref: Any, reference_args: Callable[[], list], y: tf.Tensor
                  ) -> tuple[Values, np.ndarray] | None:
    """The reference's value calls through its traced graph, and its output at the check's
    inputs from that graph; None where they stay eager (see the module docstring). ``ref``
    is the reference target, ``reference_args()`` makes the check's inputs in the
    reference's dtype (asked for only where a trace may be used: a cast is a pass over the
    input) and ``y`` is the reference's eager output there."""
    if type(ref) not in _PLAIN_CALLS:
        return None
    layer = ref.layer
    hit = _TRACES.get(id(layer))
    if hit is None or hit[0] is not layer:
        _TRACES[id(layer)] = (layer, {})
        while len(_TRACES) > _SIZE:
            _TRACES.popitem(last=False)
        return None  # its first check: a layer checked once is not worth a trace
    _TRACES.move_to_end(id(layer))
    traces = hit[1]
    args = reference_args()
    key = (_signature(args), ref.training)
    if key not in traces:
        traces[key] = _trace(ref, args, key[0])
    concrete = traces[key]
    if concrete is None:
        return None
    nearby = _nearby(args)
    try:
        traced = concrete(*args)
        same = (_same_values(traced, y, args)
                and _same_values(concrete(*nearby), ref(nearby), nearby))
    except Exception:  # noqa: BLE001 - the eager calls report what fails
        same = False
    if not same:
        traces[key] = None  # another formula when traced: eager from now on
        return None
    return (lambda a: concrete(*a)), _f64(traced)


def _nearby(args: Sequence[tf.Tensor]) -> list:
    """The floating inputs moved by up to ``_WINDOW`` of max(1, |x|), each entry its own
    way."""
    rng = np.random.default_rng(_NEARBY_SEED)
    moved = []
    for a in args:
        if a.dtype.is_floating:
            x = _f64(a)
            step = _WINDOW * np.maximum(1.0, np.abs(x)) * rng.uniform(-1.0, 1.0, x.shape)
            a = tf.constant(x + step, a.dtype)
        moved.append(a)
    return moved


def _signature(args: Sequence[tf.Tensor]) -> tuple:
    """Each input's dtype and shape, axis 0 None where it is the first input's batch axis."""
    batch = args[0].shape[0] if args and args[0].shape.rank else None
    return tuple((a.dtype, (None,) + tuple(a.shape[1:]) if a.shape.rank and a.shape[0] == batch
                  else tuple(a.shape)) for a in args)


def _trace(ref: Any, args: Sequence[tf.Tensor], signature: tuple) -> Any:
    """The concrete function of ``ref``'s call with ``signature``, where its graph computes
    with at least MIN_OPS ops and the trace works; else None."""
    try:
        concrete = tf.function(lambda *a: ref(list(a))).get_concrete_function(
            *[tf.TensorSpec(shape, dtype) for dtype, shape in signature])
    except Exception:  # noqa: BLE001 - does not trace (a .numpy(), a variable per call)
        return None
    ops = sum(op.type not in _BOOKKEEPING for op in concrete.graph.get_operations())
    return concrete if ops >= MIN_OPS else None


def _same_values(traced: Any, y: tf.Tensor, args: Sequence[tf.Tensor]) -> bool:
    """``traced`` is ``y`` within 2 * ANALYTIC_ULPS roundings of float64 at the scale
    max(1, |y|, |x|); NaN and Inf where the other has the same."""
    if (not isinstance(traced, tf.Tensor) or traced.dtype != y.dtype
            or traced.shape != y.shape):
        return False
    ours, theirs = _f64(traced), _f64(y)
    scale = max([1.0, _max_abs_finite(theirs)]
                + [_max_abs_finite(_f64(a)) for a in args if a.dtype.is_floating])
    tolerance = 2 * ANALYTIC_ULPS * machine_eps("float64") * scale
    with np.errstate(invalid="ignore", over="ignore"):
        same = (ours == theirs) | (np.abs(ours - theirs) <= tolerance)
    return bool((same | (np.isnan(ours) & np.isnan(theirs))).all())


# The layer targets whose call is the plain ``layer(*args[, training=])``; a subclass that
# changes it (one that reseeds TensorFlow per call) stays eager.
_PLAIN_CALLS = (LayerTarget, TrainingLayerTarget)
