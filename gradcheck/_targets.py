"""Targets: one way to call a function or a Keras layer, with its weights swappable.

A :class:`Target` hides the difference between a plain function (or ``tf.custom_gradient`` /
``tf.function`` / ``keras.layers.Lambda``) and a Keras ``Layer`` instance: both are called with a
list of input tensors, and both can be evaluated with their trainable weights temporarily set to
other values, which is what directional finite differences along a weight need.

A ``tf.function`` target is a :class:`FunctionTarget`: the user's decorated function, traced by
its own ``tf.function`` (same options, same trace cache), but called in one way throughout a
check, see its docstring.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from . import _kerases as kerases
from ._arrays import _f64, _max_abs_finite
from ._numerics import ANALYTIC_ULPS, machine_eps


class Target:
    """A callable under test, with its name, weights and a way to run it in another dtype."""

    #: A call on inputs stacked along axis 0 may stand for separate calls on each part (where
    #: the target is elementwise: _Run.stacked checks it); not for one that draws noise per call.
    stackable = True
    #: The ``training=`` a layer is called with (``_training.TrainingLayerTarget``); None: none.
    training: bool | None = None

    def __init__(self, fn: Any, name: str, arg_names: list[str]):
        self.fn = fn
        self.name = name
        self.arg_names = arg_names
        self.layer = None

    # Overridden by LayerTarget.
    def __call__(self, args: Sequence[tf.Tensor]) -> Any:
        return self.fn(*args)

    def tracked_weights(self) -> list[tf.Variable] | None:
        """Weights the framework knows about (None: no such notion, e.g. a function)."""
        return None

    def twin(self, dtype: tf.DType, args: Sequence[tf.Tensor],
             weights: Sequence[tf.Variable]) -> tuple["Target", list[tf.Variable]] | None:
        """The same computation in ``dtype``, with weights matching ``weights``; None if impossible.

        A function can run in another dtype only when it touches no variables (a variable's
        dtype is fixed); its inputs are cast by the caller.
        """
        return (self, []) if not weights else None

    def float64_reference(self, args: Sequence[tf.Tensor], weights: Sequence[tf.Variable],
                          shape: Any = None, own: tf.Tensor | None = None
                          ) -> tuple["Target", list, tf.Tensor] | None:
        """The numerical reference in float64: the :meth:`twin` in float64 when it runs there
        and returns a float64 tensor (of ``shape``, when given), as ``(twin, its weights, its
        output at args)``; None otherwise, and the caller uses the target's own dtype.
        ``own``: the target's output at ``args``, where the caller has it."""
        twin = self.twin(tf.float64, args, weights)
        if twin is None:
            return None
        ref, ref_weights = twin
        try:
            y = ref([tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in args])
        except Exception:  # noqa: BLE001 - does not run in float64: use its own dtype
            return None
        if (isinstance(y, tf.Tensor) and y.dtype == tf.float64
                and (shape is None or y.shape == shape)):
            return ref, ref_weights, y
        return None


class FunctionTarget(Target):
    """A ``tf.function``: always the user's decorated function, called in one way per check.

    * Traced with the input's shapes in the first check of each dtype, then with every
      dimension ``None``, once per dtypes and ranks. Called directly, a tf.function traces
      again for every new input shape and dtype: a fuzz run draws a new shape for about
      every third example, and each such trace with its gradient graph costs 40-70 ms here
      against about 10 ms for a whole check. So the first check in a dtype calls the function
      as it is (a graph that only static shapes break fails there, as for any caller), and
      later checks call its ``get_concrete_function`` with ``None`` dimensions: the user's
      own function, options (``jit_compile``, ``autograph``) and trace cache included. That
      trace is the one the mode check's dynamic trace makes too, and TensorFlow then calls it
      for every input of those dtypes and ranks anyway (it dispatches to a traced
      supertype). A function whose trace needs static shapes (``x.shape[-1]`` as a Python
      int) fails there and is called as it is, traced per shape. Inside another trace (the
      mode check's) it is called as it is.
    * Always under a gradient tape. TensorFlow runs a tf.function under a tape and without one
      as two graphs that grappler optimizes separately: without a tape, ``x * sigmoid(x)`` is
      fused into one oneDNN kernel whose last bit differs; under one, ``sigmoid(x)`` is kept
      for the backward pass. The core's call is taped and its other calls (the determinism
      probe, finite differences) must reach the same outputs, or a correct function looks
      non-deterministic.
    * Its float64 reference is its Python code run eagerly, where that matches it: see
      :meth:`float64_reference`.
    """

    def __init__(self, fn: Any, name: str, arg_names: list[str], reference: bool = False):
        super().__init__(fn, name, arg_names)
        self.relaxed: dict[tuple, bool] = {}  # this check's way per key, decided at its first call
        self.reference = reference  # a reference in another dtype: relaxed from the first call

    def twin(self, dtype, args, weights):
        if weights:
            return None
        return FunctionTarget(self.fn, self.name, self.arg_names, reference=True), []

    def float64_reference(self, args, weights, shape=None, own=None):
        """The function's Python code run eagerly in float64, where it gives the function's
        own values at ``args``; else the traced float64 twin (:meth:`Target.float64_reference`).

        Finite differences need only the function's values, and an eager call costs a sixth
        of a tf.function call here (the call op alone takes ~0.2 ms), for the 5 to 9
        reference calls of a check, and no float64 trace per rank. Eager and traced are the
        same formulas unless the code branches on ``tf.executing_eagerly()`` or on a Python
        value, which changes values by far more than rounding. So the eager float64 values
        must match the function's own (traced, in its dtype ``d``) at ``args``: each within
        ``ANALYTIC_ULPS`` roundings of its dtype of the same value, at the scale ``max(1,
        |y|, |x|)`` of the output and input (as in the mode check), hence ``ANALYTIC_ULPS *
        (eps_d + eps64) * max(1, |y|, |x|)``; NaN and Inf where the other is too. The
        samples lie within a few steps h of the input, where formulas that match at the
        input still do."""
        if not weights:
            found = self._eager_reference(args, shape, own)
            if found is not None:
                return found
        return super().float64_reference(args, weights, shape)

    def _eager_reference(self, args, shape, own=None):
        # ``own``: the core's output at args (the same taped call), so the function is not
        # called again: a taped call of its trace costs ~0.25 ms here, twice an eager call
        eager = Target(self.fn.python_function, self.name, self.arg_names)
        cast = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in args]
        try:
            own, y = (self(args) if own is None else own), eager(cast)
        except Exception:  # noqa: BLE001 - runs only traced: the traced twin
            return None
        if (not isinstance(y, tf.Tensor) or not isinstance(own, tf.Tensor)
                or y.dtype != tf.float64 or not own.dtype.is_floating
                or y.shape != own.shape or (shape is not None and y.shape != shape)):
            return None
        traced, direct = _f64(own), y.numpy()
        scale = max([1.0] + [_max_abs_finite(t) for t in (direct, *(
            c.numpy() for c in cast if c.dtype.is_floating))])
        tolerance = ANALYTIC_ULPS * (machine_eps(own.dtype.name) + machine_eps("float64")) * scale
        with np.errstate(invalid="ignore", over="ignore"):
            same = (traced == direct) | (np.abs(traced - direct) <= tolerance)
        same |= np.isnan(traced) & np.isnan(direct)
        return (eager, [], y) if same.all() else None

    def __call__(self, args: Sequence[tf.Tensor]) -> Any:
        floats = [a for a in args if a.dtype.is_floating]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(floats)
            return self._call(args)

    def _call(self, args: Sequence[tf.Tensor]) -> Any:
        key = tuple((a.dtype, a.shape.rank) for a in args)
        if (None in (rank for _, rank in key) or not tf.executing_eagerly()
                or self.fn.input_signature is not None):  # a signature: it never retraces
            return self.fn(*args)
        traces = _relaxed_traces(self.fn)
        dtypes = tuple(dtype for dtype, _ in key)
        if key not in self.relaxed:  # as called in the dtype's first check and where needed
            self.relaxed[key] = ((self.reference or dtypes in traces)
                                 and traces.get(key, _UNTRACED) is not None)
        if not self.relaxed[key]:
            result = self.fn(*args)
            traces.setdefault(dtypes, True)
            return result
        try:
            if traces.get(key, _UNTRACED) is _UNTRACED:
                traces[key] = self.fn.get_concrete_function(
                    *[tf.TensorSpec([None] * rank, dtype) for dtype, rank in key])
            return traces[key](*args)
        except Exception:  # noqa: BLE001 - needs static shapes: call it as it is
            result = self.fn(*args)  # the target's own error, if it fails here too
            traces[key] = None
            self.relaxed[key] = False
            return result


# id(tf.function) -> (the function, {(dtype, rank) per input: its concrete function with None
# dimensions, _UNTRACED before it is made, None where that trace fails; the dtypes of the
# inputs: True once a check called it as it is in those}). Bounded, and holding the function
# so that its id is not reused.
_RELAXED: OrderedDict[int, tuple[Any, dict]] = OrderedDict()
_RELAXED_SIZE = 64
_UNTRACED = object()


def _relaxed_traces(fn: Any) -> dict:
    hit = _RELAXED.get(id(fn))
    if hit is None or hit[0] is not fn:
        hit = _RELAXED[id(fn)] = (fn, {})
        while len(_RELAXED) > _RELAXED_SIZE:
            _RELAXED.popitem(last=False)
    _RELAXED.move_to_end(id(fn))
    return hit[1]


class LayerTarget(Target):
    """A Keras Layer instance: inputs go to ``layer(*args)``; weights are its variables."""

    def __init__(self, layer: Any, name: str, builder: Callable[[str], Any] | None = None):
        super().__init__(layer, name, ["inputs"])
        self.layer = layer
        self.builder = builder

    def __call__(self, args: Sequence[tf.Tensor]) -> Any:
        return self.layer(*args)

    def tracked_weights(self) -> list[tf.Variable]:
        return [_as_tf_variable(w) for w in self.layer.trainable_weights]

    def twin(self, dtype, args, weights):
        """A fresh copy of the layer from its config in ``dtype``, weights copied and cast.

        Returns None when the layer cannot be rebuilt that way (no usable get_config, weights the
        layer does not track, a build that fails): the caller then uses the layer's own dtype.
        """
        tracked = {id(v) for v in self.tracked_weights()}
        if any(id(w) not in tracked for w in weights):
            return None  # an untracked variable cannot be carried over to a copy
        try:
            if self.builder is not None:
                copy = self.builder(dtype.name)
            else:
                config = dict(self.layer.get_config())
                config["dtype"] = dtype.name
                copy = type(self.layer).from_config(config)
            if not getattr(copy, "built", False):  # a builder's cached copy: built before
                copy(*[tf.cast(a, dtype) if a.dtype.is_floating else a for a in args])
            values = self.layer.get_weights()
            copy.set_weights([v.astype(dtype.as_numpy_dtype) if v.dtype.kind == "f" else v
                              for v in values])
        except Exception:  # noqa: BLE001 - any failure means: no twin, use the layer itself
            return None
        if any(_floating_dtype(w) not in (None, dtype) for w in copy.weights):
            # A variable made with a fixed dtype (keras.Variable(0.1) in __init__) stays
            # float32 under a float64 policy: the copy would compute partly in float32 and its
            # finite differences along that weight round in float32. No float64 twin then;
            # the caller uses the layer's own dtype and says so.
            return None
        own = self.tracked_weights()
        theirs = [_as_tf_variable(w) for w in copy.trainable_weights]
        if len(own) != len(theirs):
            return None
        by_id = {id(v): t for v, t in zip(own, theirs)}
        return LayerTarget(copy, self.name), [by_id[id(w)] for w in weights]


def as_target(target: Any, name: str | None = None,
              builder: Callable[[str], Any] | None = None) -> Target:
    """Wrap what the user passed; TypeError with a hint if it cannot be a target.

    ``builder`` (layers only) builds the same layer in a given dtype name, for the reference.
    """
    if kerases.is_layer_class(target):
        raise TypeError(
            f"gradcheck: expected a Layer instance or a function, got the class "
            f"{target.__name__}; pass an instance, e.g. gradcheck.check({target.__name__}(), x)")
    if kerases.is_lambda(target):
        fn, kwargs = target.function, dict(getattr(target, "arguments", None) or {})
        label = name or f"Lambda({_name_of(fn)})"
        if _is_tf_function(fn) and not kwargs:
            return FunctionTarget(fn, label, _arg_names(fn))
        wrapped = (lambda *a: fn(*a, **kwargs)) if kwargs else fn
        return Target(wrapped, label, _arg_names(fn))
    if kerases.is_layer(target) or _looks_like_layer(target):
        return LayerTarget(target, name or type(target).__name__, builder)
    if _is_tf_function(target):
        return FunctionTarget(target, name or _name_of(target), _arg_names(target))
    if not callable(target):
        raise TypeError(f"gradcheck: expected a callable target (a function of tensors or a "
                        f"Keras Layer instance), got {type(target).__name__}: {target!r:.80}")
    return Target(target, name or _name_of(target), _arg_names(target))


@contextmanager
def weights_set_to(weights: Sequence[tf.Variable], values: Sequence[Any] | None) -> Iterator[None]:
    """Temporarily assign ``values`` to ``weights`` (no-op for None); always restores them."""
    if not values:
        yield
        return
    with weights_restored(weights):
        assign_weights(weights, values)
        yield


@contextmanager
def weights_restored(weights: Sequence[tf.Variable]) -> Iterator[None]:
    """On exit, ``weights`` hold their values on entry again, whatever was assigned within:
    several evaluations at moved weights save and restore them once (a read and an assign
    per weight, ~0.1 ms a weight on a Keras layer's variables)."""
    saved = [w.read_value() for w in weights]
    try:
        yield
    finally:
        for w, v in zip(weights, saved):
            w.assign(v)


def assign_weights(weights: Sequence[tf.Variable], values: Sequence[Any]) -> None:
    """Assign ``values`` (arrays or tensors, cast to each weight's dtype) to ``weights``."""
    for w, v in zip(weights, values):
        w.assign(tf.cast(v, w.dtype))


def _looks_like_layer(target: Any) -> bool:
    """A layer-like object of no Keras gradcheck knows (see _kerases): duck-type it."""
    return (callable(target) and not isinstance(target, type)
            and all(hasattr(target, a) for a in ("trainable_weights", "get_weights",
                                                 "set_weights", "get_config")))


def _is_tf_function(target: Any) -> bool:
    """A ``tf.function`` (TensorFlow's Function, duck-typed across versions)."""
    return callable(target) and all(hasattr(target, a) for a in (
        "python_function", "get_concrete_function", "experimental_get_tracing_count"))



def _floating_dtype(weight: Any) -> tf.DType | None:
    """A weight's dtype when it is floating, else None."""
    try:
        dtype = tf.as_dtype(weight.dtype)
    except (TypeError, AttributeError):
        return None
    return dtype if dtype.is_floating else None


def _as_tf_variable(weight: Any) -> Any:
    """Keras 3 wraps the tf.Variable a tape watches; unwrap it so identities compare."""
    inner = getattr(weight, "value", None)
    return inner if isinstance(inner, tf.Variable) else weight


def _name_of(fn: Any) -> str:
    for attr in ("__qualname__", "__name__"):
        value = getattr(fn, attr, None)
        if isinstance(value, str):
            return value
    inner = getattr(fn, "python_function", None) or getattr(fn, "__wrapped__", None)
    return _name_of(inner) if inner is not None else type(fn).__name__


def _arg_names(fn: Any) -> list[str]:
    fn = getattr(fn, "python_function", fn)
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
