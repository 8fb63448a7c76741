"""check()'s inputs: converted to tensors (with a clear error for what cannot be checked), and
shown back as plain lists in a finding."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _all_finite, _f64
from ._targets import Target


def as_tensors(tgt: Target, inputs: Sequence[Any]) -> list[tf.Tensor]:
    """check()'s inputs as tensors, a layer's floating ones in its compute dtype; a clear
    error for no input, one TensorFlow cannot convert, NaN/Inf, or no floating input."""
    if not inputs:
        raise TypeError(f"gradcheck: no inputs given for {tgt.name}; pass at least one array, "
                        f"e.g. gradcheck.check({tgt.name}, np.linspace(-3, 3, 7))")
    out = []
    for i, value in enumerate(inputs):
        try:
            tensor = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"gradcheck: input {i} of {tgt.name} is not convertible to a "
                            f"tensor ({type(value).__name__}): {exc}") from None
        if tensor.dtype.is_floating and not _all_finite(_f64(tensor)):
            raise ValueError(f"gradcheck: input {i} of {tgt.name} contains NaN or Inf; "
                             f"gradients are checked at finite inputs only")
        out.append(tensor)
    layer_dtype = getattr(tgt.layer, "compute_dtype", None)
    if layer_dtype:
        out = [tf.cast(t, layer_dtype) if t.dtype.is_floating else t for t in out]
    if not any(t.dtype.is_floating for t in out):
        raise TypeError(f"gradcheck: no floating-point input for {tgt.name}; got dtypes "
                        f"{[t.dtype.name for t in out]}")
    return out


def plain_inputs(tgt: Target, args, dtype) -> dict[str, Any]:
    """The inputs as plain lists by argument name, and the dtype: what a finding shows."""
    shown: dict[str, Any] = {}
    for i, a in enumerate(args):
        name = tgt.arg_names[i] if i < len(tgt.arg_names) else ("x" if i == 0 else f"x{i}")
        shown[name] = _f64(a).tolist() if a.dtype.is_floating else a.numpy().tolist()
    shown["dtype"] = dtype.name
    return shown


def checked_seed(seed: Any, name: str) -> int:
    """check()'s ``seed`` as an int: NumPy's seeding error was the only word on a bad one."""
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r} (checking {name}); "
                        "pass e.g. seed=0")
    return int(seed)


def checkable_input(tgt: Target, args: Sequence[tf.Tensor], domain: Any) -> None:
    """A clear error where check() could compare nothing and would say "gradients OK": every
    floating input empty, or a first input with entries outside the declared ``domain``
    (finite differences step only inside it, so nothing about them would be checked)."""
    floating = [a for a in args if a.dtype.is_floating]
    if floating and all(a.shape.num_elements() == 0 for a in floating):
        raise ValueError(f"gradcheck: every floating input of {tgt.name} is empty (shapes "
                         f"{[tuple(a.shape) for a in floating]}): there is no gradient to "
                         "check; pass at least one entry")
    x = args[0]
    if domain is None or not x.dtype.is_floating:
        return
    values = _f64(x)
    # Against the ends as the dtype holds them: float32's 0.3 is 0.30000001, above 0.3.
    ends = [float(np.asarray(end, x.dtype.as_numpy_dtype)) for end in domain]
    outside = (values < min(ends[0], domain[0])) | (values > max(ends[1], domain[1]))
    if outside.any():
        j = int(np.argmax(outside))
        raise ValueError(f"gradcheck: the first input of {tgt.name} has {int(outside.sum())} "
                         f"entries outside domain=({domain[0]:g}, {domain[1]:g}), e.g. "
                         f"{values.flat[j]:g}: check it inside the domain, or widen domain=")
