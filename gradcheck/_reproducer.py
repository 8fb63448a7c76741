"""Reproducers: one line of Python that re-runs the check that failed, as printed.

They assume what a test module has imported: ``gradcheck``, ``numpy as np``, ``tensorflow as
tf``, ``keras`` and the target's own module namespace (the target, its gradient= function).
A Keras layer is written as a constructor call in the checked dtype (a class is no target):
``MyLayer(units=3, dtype='float16')``, with the constructor arguments its ``get_config()``
reports that are plain literals; a check()'s layer is given the weights it was checked with,
and a fuzzed one, where fuzzing moved them (``_weight_moves``), the moved values, after a
first call builds the layer.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from ._options import Expression, check_call
from ._weight_moves import weights_code

__all__ = ["check_reproducer", "declared_reproducer", "as_code", "layer_expression"]

_LITERALS = (bool, int, float, str, type(None))


#: Inputs and weights longer than this many numbers are written as ``...``.
_MOST_SHOWN = 64


def check_reproducer(tgt: Any, args: Sequence[Any], options: dict[str, Any]) -> str:
    """``gradcheck.check(<target>, tf.constant(...), ..., option=value)``; a layer with
    weights is built on the inputs first and given the weights it was checked with (a fresh
    one draws its own: a wrong gradient at a weight of 3 is not one at 1)."""
    parts = []
    for a in args:
        # NumPy's cast, not TensorFlow's: a CPU kernel reads a subnormal as 0 (5e-39 in float32
        # printed as 0.0, and the reproducer checked another input).
        values = (np.asarray(a.numpy(), dtype=np.float64) if a.dtype.is_floating
                  else np.asarray(a)).tolist()
        literal = repr(values) if np.size(values) <= _MOST_SHOWN else "..."
        parts.append(f"tf.constant({literal}, tf.{a.dtype.name})")
    layer = getattr(tgt, "layer", None)
    weights = layer.get_weights() if layer is not None else []
    if not weights or not parts:
        return check_call(target_expression(tgt), parts, as_code(options))
    # A small layer's weights (a 16 x 16 kernel) are worth a longer line than its inputs.
    shown = weights_code(weights) if sum(w.size for w in weights) <= 4 * _MOST_SHOWN else "..."
    names = ["x", *parts[1:]]
    return (f"x = {parts[0]}; layer = {target_expression(tgt)}; layer({', '.join(names)}); "
            f"layer.set_weights({shown}); " + check_call("layer", names, as_code(options)))


def as_code(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with a ``gradient=`` function written as its source."""
    if options.get("gradient") is None:
        return options
    from ._declared_gradient import expression_of

    return {**options, "gradient": Expression(expression_of(options["gradient"]))}


def declared_reproducer(entry: Any, instance: Any, dtype: str, inputs: Sequence[np.ndarray],
                        options: dict[str, Any], weights: str | None = None) -> str:
    """The ``gradcheck.check(...)`` call for a declared target (a registry entry) that failed
    at ``inputs`` in fuzzing; ``instance``: the Keras layer instance checked, if any;
    ``weights``: the layer's weights as code, where fuzzing moved them from the initial ones
    (``_weight_moves``): the layer is then built on the input and given them first."""
    arrays = [f"np.array({a.astype(np.float64).tolist()!r}, dtype={dtype!r})" for a in inputs]
    expression = _declared_expression(entry, instance, dtype)
    if weights is None:
        call = check_call(expression, arrays, as_code(options))
    else:
        call = (f"x = {arrays[0]}; layer = {expression}; layer({', '.join(['x', *arrays[1:]])}); "
                f"layer.set_weights({weights}); "
                + check_call("layer", ["x", *arrays[1:]], as_code(options)))
    if (entry.declaration.kind == "layer" and instance is None
            and not isinstance(entry.target, type) and dtype != "float32"):
        # A factory builds in Keras' dtype policy, which is what the item sets.
        return f"keras.config.set_dtype_policy({dtype!r}); {call}"
    return call


def _declared_expression(entry: Any, instance: Any, dtype: str) -> str:
    """A declared target as code: its name, a factory called, a class built in ``dtype``."""
    name, decl = entry.name, entry.declaration
    if instance is not None:
        return layer_expression(instance)
    if decl.kind == "layer" and isinstance(entry.target, type):
        init = "".join(f"{k}={v!r}, " for k, v in decl.init.items())
        return f"{name}({init}dtype={dtype!r})"
    if decl.kind == "layer":
        return f"{name}()"
    return name


def target_expression(tgt: Any) -> str:
    """The target as code: a layer as a constructor call, a Lambda as keras.layers.Lambda."""
    layer = getattr(tgt, "layer", None)
    if layer is not None:
        return layer_expression(layer)
    if tgt.name.startswith("Lambda("):
        return f"keras.layers.{tgt.name}"
    return tgt.name


def layer_expression(layer: Any) -> str:
    """``MyLayer(arg=value, ..., dtype='float16')`` from the layer's class and config."""
    cls = type(layer)
    try:
        config = dict(layer.get_config())
        accepted = inspect.signature(cls.__init__).parameters
    except Exception:  # noqa: BLE001 - a layer without a usable config: its dtype only
        config, accepted = {}, {}
    kwargs = [f"{k}={v!r}" for k, v in config.items()
              if k in accepted and k not in ("name", "dtype", "trainable") and _literal(v)
              and not _is_default(accepted[k], v)]
    policy = getattr(getattr(layer, "dtype_policy", None), "name", None) or getattr(
        layer, "dtype", None)
    if isinstance(policy, str):
        kwargs.append(f"dtype={policy!r}")
    name = cls.__qualname__
    if cls.__module__.split(".")[0] in ("keras", "tf_keras") and hasattr(
            _keras_layers(cls.__module__), name):
        name = f"{cls.__module__.split('.')[0]}.layers.{name}"  # Keras' own layers
    return f"{name}({', '.join(kwargs)})"


def _literal(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_literal(v) for v in value)
    return isinstance(value, _LITERALS)


def _is_default(parameter: inspect.Parameter, value: Any) -> bool:
    default = parameter.default
    return default is not parameter.empty and type(default) is type(value) and default == value


def _keras_layers(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module.split(".")[0]).layers
    except (ImportError, AttributeError):
        return None
