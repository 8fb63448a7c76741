"""What fuzz() and the plot check: a target's registry entry with the options given to the
call, or a new entry for an undeclared function or Keras layer; and the dtype argument.
TensorFlow-free and Hypothesis-free: the plot resolves its targets here too."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from . import _kerases as kerases
from ._declare import OPTIONS, Declaration, Registered, registry
from ._options import dtype as dtype_name

__all__ = ["resolve_target", "dtype_arg", "is_layer_instance", "name_of", "fitted_to_instance"]


def resolve_target(target: Any, options: dict[str, Any], caller: str = "gradcheck.fuzz",
                   own_options: str = "dtype, max_examples, seed") -> tuple[Registered, bool]:
    """What :func:`fuzz` and :func:`gradcheck.plot.derivatives` check: ``target``'s registry
    entry (or ``target`` itself, a Registered) updated with the declaration ``options``, or a
    new entry (a Keras Layer class or instance: a layer; anything else: an activation); and
    whether ``target`` is a Layer instance. Errors name ``caller`` and list its
    ``own_options`` among the valid ones."""
    unknown = [key for key in options if key not in OPTIONS]
    if unknown:
        raise TypeError(f"{caller}: unknown option {unknown[0]!r}; valid options are "
                        f"{own_options} and the declaration fields {', '.join(OPTIONS)}")
    found = target if isinstance(target, Registered) else next(
        (r for r in reversed(registry()) if r.target is target), None)
    is_instance = is_layer_instance(target)
    try:
        if found is not None:
            declaration = dataclasses.replace(found.declaration, **options)
            return dataclasses.replace(found, declaration=declaration), is_instance
        kind = "layer" if is_instance or kerases.is_layer_class(target) else "activation"
        if kind == "layer":
            options = {"elementwise": False, **options}
        declaration = Declaration(kind=kind, **options)
    except (TypeError, ValueError) as exc:
        name = found.name if found is not None else name_of(target)
        raise type(exc)(f"{caller}({name}): {exc}") from None
    if not callable(target):
        raise TypeError(f"{caller}: expected a function of tensors or a Keras layer, got "
                        f"{type(target).__name__} {target!r:.60}")
    module = getattr(target, "__module__", None) or type(target).__module__
    return Registered(target=target, declaration=declaration, module=module,
                      name=name_of(target)), is_instance


def dtype_arg(dtype: Any) -> str:
    """The dtype name of ``dtype`` (a name or a dtype), one of DTYPES, or a clear error
    (``_options.dtype``'s)."""
    try:
        return dtype_name(dtype)
    except ValueError as exc:
        raise ValueError(f"gradcheck.fuzz: {exc}") from None


def is_layer_instance(target: Any) -> bool:
    """A Keras 3 or tf-keras Layer instance other than a Lambda (checked like its function)."""
    return kerases.is_layer(target) and not kerases.is_lambda(target)


def name_of(target: Any) -> str:
    """The target's qualified name (a tf.function's Python function's), else its type's."""
    for candidate in (target, getattr(target, "python_function", None), type(target)):
        name = getattr(candidate, "__qualname__", None)
        if isinstance(name, str):
            return name
    return type(target).__name__


def fitted_to_instance(instance: Any, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """``inputs`` for a built layer instance: the first input refit (``np.resize``: its values
    repeated, the batch axis as drawn) to the feature axes the layer was built for. A model
    feeds one instance one feature shape: a Dense built for 2 features raises at 1, and a
    layer that broadcasts its per-feature weight over 1 feature computes what no model asks
    of it. (A declared class or factory is built anew per feature shape instead.) An instance
    not built yet is built by the first input it is checked at."""
    inputs = tuple(inputs)
    features = kerases.built_feature_shape(instance)
    x = inputs[0] if inputs else None
    if features is None or x is None or not x.ndim:
        return inputs
    same_rank = x.ndim - 1 == len(features)
    if same_rank and all(f is None or f == s for f, s in zip(features, x.shape[1:])):
        return inputs
    sides = [f if f is not None else (x.shape[1 + i] if same_rank else 1)
             for i, f in enumerate(features)]
    return (np.resize(x, (x.shape[0], *sides)), *inputs[1:])
