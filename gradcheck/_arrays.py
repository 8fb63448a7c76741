"""Small array helpers shared by the core and its extra checks (modes, policies, order 2).

TensorFlow tensors, variables and NumPy arrays in; NumPy float64 arrays and plain values out.
"""

from __future__ import annotations

import hashlib
import traceback
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

def _f64(t: Any) -> np.ndarray:
    """A float64 NumPy array of a tensor, variable or array. A float64 tensor's own buffer is
    returned read-only, not copied: these arrays are only ever read. A variable's value is
    copied, since assigning to the variable may reuse its buffer."""
    variable = isinstance(t, tf.Variable) or hasattr(t, "assign")
    t = tf.convert_to_tensor(t)
    if t.dtype == tf.bfloat16:  # NumPy has no bfloat16 of its own
        t = tf.cast(t, tf.float32)
    a = np.asarray(t)
    if variable:
        return np.array(a, dtype=np.float64)
    if a.dtype == np.float64:
        a = a.view()
        a.flags.writeable = False
        return a
    return a.astype(np.float64)


def _backward(tape: tf.GradientTape, y: Any, sources: list, cotangent: Any = None) -> list:
    """``tape.gradient(y, sources, output_gradients=cotangent)`` as a list, one entry per
    source. One source is passed alone: TF's nest packs a list of gradients through a
    runtime-checkable Protocol's isinstance, ~40 us a call on Python 3.11, a quarter of a
    small backward pass, and the one-input case is the common one (an activation)."""
    if len(sources) == 1:
        return [tape.gradient(y, sources[0], output_gradients=cotangent)]
    return tape.gradient(y, sources, output_gradients=cotangent)


def _abs(a: np.ndarray) -> np.ndarray:
    """|a| as a new float64 array, 0-d included (a ufunc returns a scalar for a 0-d input),
    for a chain of in-place operations: each full-size temporary costs page faults at
    n >= 1e5 (bench/numpy_pages.py), so the core keeps their number down."""
    return np.abs(a, out=np.empty(np.shape(a)))


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| as one new float64 array (see :func:`_abs`)."""
    out = np.empty(np.broadcast_shapes(np.shape(a), np.shape(b)))
    np.subtract(a, b, out=out)
    return np.abs(out, out=out)


def _max_abs_finite(t: np.ndarray) -> float:
    """The largest |entry| among the finite entries of ``t`` (0 when none)."""
    if not t.size:
        return 0.0
    largest = max(float(t.max()), -float(t.min()))  # NaN or Inf when t holds any
    if np.isfinite(largest):
        return largest
    return float(np.max(np.abs(t), where=np.isfinite(t), initial=0.0))


def _shapes(arrays) -> tuple[tuple[int, ...], ...]:
    """The shapes of a tuple of arrays, as plain ints (a key per input shapes)."""
    return tuple(tuple(int(s) for s in np.shape(a)) for a in arrays)


def _shapes_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    return " ".join(str(tuple(s)) for s in shapes)


def _total_size(arrays) -> int:
    return sum(np.size(a) for a in arrays)


def _all_finite(a: np.ndarray) -> bool:
    """No NaN/Inf in ``a``: one sum (NaN and Inf propagate through it), checked entrywise
    only when the sum is not finite, since finite entries can overflow it too."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):
            return True
    return bool(np.isfinite(a).all())


def _signed(rng: np.random.Generator, shape) -> np.ndarray:
    """Random signs times magnitudes in [0.5, 1.5): never zero, never uniform."""
    r = rng.uniform(-1.0, 1.0, size=tuple(int(s) for s in shape))
    r += np.copysign(0.5, r)  # |r| in [0, 1) -> magnitude in [0.5, 1.5), sign kept
    return r


def _index(flat: int, shape) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), tuple(shape))) if shape else ()


def _smallest_normal(dtype: tf.DType) -> float:
    if dtype == tf.bfloat16:
        return 2.0 ** -126  # bfloat16 has float32's exponent range
    return float(np.finfo(dtype.as_numpy_dtype).tiny)


def _said(exc: BaseException) -> str:
    """``str(exc)``, or what stands for it where the exception's own ``__str__`` raises (a
    target's exception class is the user's code: formatting it must not fail the check)."""
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001
        return f"<its str() raised {type(inner).__name__}>"


def _tail(exc: BaseException, lines: int = 4) -> str:
    text = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(text[-lines:]).strip()


def _seed_of(inputs: Sequence[np.ndarray]) -> int:
    """A check seed that depends only on the input, so a replay reaches the same verdict."""
    digest = 0
    for chunk in _identity(inputs):
        digest = zlib.crc32(chunk, digest)
    return digest & 0x7FFFFFFF


def _digest(inputs: Sequence[np.ndarray]) -> bytes:
    """Which input this is, hashed (so -0.0 is not 0.0)."""
    digest = hashlib.blake2b(digest_size=16)
    for chunk in _identity(inputs):
        digest.update(chunk)
    return digest.digest()


def _identity(inputs: Sequence[np.ndarray]) -> Iterator[bytes]:
    """The bytes that tell one input from another: each array's dtype, shape and bytes."""
    for a in inputs:
        yield f"{a.dtype.name}{a.shape}".encode()
        yield np.ascontiguousarray(a).tobytes()
