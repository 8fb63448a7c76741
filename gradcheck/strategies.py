"""Hypothesis strategies for gradient checks: dtypes, shapes, tensors, and whole inputs.

In the style of ``hypothesis.extra.numpy``: every argument is keyword-only, bad arguments raise
:class:`hypothesis.errors.InvalidArgument` at once with a message saying what to pass, and each
strategy has a readable ``repr``. Tensors are NumPy arrays (``bfloat16`` through
``ml_dtypes.bfloat16``, which TensorFlow accepts); every value is exactly representable in the
array's dtype and lies inside the requested domain.

Values mix draws spread over the domain (uniformly, and log-uniformly in magnitude down to the
dtype's smallest normal) with *edge values*, the inputs where gradient bugs
live: 0, +-tiny (the dtype's smallest normal), +-1, the domain's ends, the declared kinks and
the largest magnitudes that the dtype and domain allow. Everything shrinks toward small shapes
and simple values (0, then 1).
"""

from __future__ import annotations

import functools
import math
from numbers import Real
from typing import Any, Callable, Sequence

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ._options import DTYPES

__all__ = ["FLOAT_DTYPES", "float_dtypes", "shapes", "tensors", "inputs_for", "edge_values"]

#: The floating dtypes gradcheck draws, by name.
FLOAT_DTYPES = DTYPES

# float_dtypes() shrinks toward its first dtype: float32 is the most common and the easiest to
# read in a failure message.
_DEFAULT_DTYPE_ORDER = ("float32", "float64", "float16", "bfloat16")

# Sizes are kept small: a gradient check costs a few calls of the target per example, and most
# shape bugs (broadcasting, batch coupling) show with a handful of rows.
_DEFAULT_MAX_SIDE = 4
_DEFAULT_BATCH = (1, 8)

# Some code changes at a size past those: a top-k with k = 5 keeps every entry of a row of 4, a
# backward pass in chunks of 8 rows never reaches its second chunk. In one example in
# _WIDE_ODDS the batch is drawn from just past the default batch to twice it, and so is, by a
# choice of its own, the last axis, from just past the default side to 4 times it (rows of 9 to
# 17, 5 to 16 features; the axes between stay narrow: at most 4,352 entries). The choices
# shrink to "narrow".
_WIDE_ODDS = 8
_WIDE_BATCH = (_DEFAULT_BATCH[1] + 1, 2 * _DEFAULT_BATCH[1] + 1)
_WIDE_SIDE = (_DEFAULT_MAX_SIDE + 1, 4 * _DEFAULT_MAX_SIDE)
_MAX_DIMS = 32  # numpy's limit


def _named(name: str) -> Callable[[Callable[..., Any]], Callable[..., st.SearchStrategy]]:
    """``st.composite`` whose strategies print as ``name(arguments)``.

    The strategy is called with every argument by keyword; those equal to the draw function's
    defaults are left out of the call (and so of the repr), as Hypothesis's own reprs do.
    """

    def decorate(draw_fn: Callable[..., Any]) -> Callable[..., st.SearchStrategy]:
        draw_fn.__name__ = draw_fn.__qualname__ = name
        defaults = dict(draw_fn.__kwdefaults__ or {})
        strategy = st.composite(draw_fn)

        def call(**kwargs: Any) -> st.SearchStrategy:
            given = {k: v for k, v in kwargs.items()
                     if k not in defaults or not _same(v, defaults[k])}
            return strategy(**given)

        return call

    return decorate


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays or strategies: just show the argument
        return False


# --- argument checking -----------------------------------------------------------------------

def _dtype_name(value: Any, argname: str = "dtype") -> str:
    """The canonical name of a floating dtype given as a name, numpy type/dtype or tf.DType."""
    try:
        name = np.dtype(value).name
    except TypeError:
        name = getattr(value, "name", value)
    name = {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
    if name not in FLOAT_DTYPES:
        raise InvalidArgument(
            f"{argname}={value!r} is not a floating dtype gradcheck draws; pass one of "
            f"{', '.join(map(repr, FLOAT_DTYPES))}")
    return name


def _np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


@functools.lru_cache(maxsize=None)
def _finfo(name: str) -> Any:
    return ml_dtypes.finfo(_np_dtype(name))


def _check_int(value: Any, argname: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{argname}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise InvalidArgument(f"{argname}={value!r} must be an integer >= {minimum}")
    return int(value)


def _check_order(argname: str, low: int, high: int) -> None:
    if low > high:
        raise InvalidArgument(
            f"min_{argname}={low} is greater than max_{argname}={high}; pass "
            f"min_{argname} <= max_{argname}")


def _check_domain(domain: Any, argname: str = "domain") -> tuple[float, float]:
    ok = (isinstance(domain, (tuple, list)) and len(domain) == 2
          and all(isinstance(v, Real) and not isinstance(v, bool) and not math.isnan(v)
                  for v in domain))
    if not ok:
        raise InvalidArgument(
            f"{argname}={domain!r} must be a pair of numbers (low, high), e.g. (-10, 10)")
    low, high = float(domain[0]), float(domain[1])
    if low > high:
        raise InvalidArgument(f"{argname}={domain!r} has low > high; pass (low, high), "
                              f"e.g. ({high:g}, {low:g})")
    return low, high


def _check_kinks(kinks: Any) -> tuple[float, ...]:
    if isinstance(kinks, Real) or not isinstance(kinks, Sequence) or isinstance(kinks, str):
        raise InvalidArgument(f"kinks={kinks!r} must be a sequence of numbers, e.g. (0.0,)")
    for kink in kinks:
        if isinstance(kink, bool) or not isinstance(kink, Real) or not math.isfinite(kink):
            raise InvalidArgument(
                f"kinks={kinks!r} contains {kink!r}; every kink must be a finite number")
    return tuple(float(k) for k in kinks)


def _check_shape(shape: Any, argname: str = "shape") -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise InvalidArgument(
            f"{argname}={shape!r} must be a tuple of sizes, an int, or a strategy of shapes "
            f"such as gradcheck.strategies.shapes()")
    return tuple(_check_int(side, f"{argname} entry") for side in shape)


def _check_batch(batch: Any) -> tuple[int, int] | None:
    if batch is None:
        return None
    if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
        size = _check_int(batch, "batch")
        return size, size
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        low, high = (_check_int(v, "batch entry") for v in batch)
        if low > high:
            raise InvalidArgument(f"batch={batch!r} has low > high; pass (low, high)")
        return low, high
    raise InvalidArgument(
        f"batch={batch!r} must be None (the first axis is drawn like the others), a fixed "
        f"size, or a (low, high) pair of sizes, e.g. (1, 8)")


# --- dtypes and shapes -----------------------------------------------------------------------

def float_dtypes(*, dtypes: Sequence[Any] = _DEFAULT_DTYPE_ORDER) -> st.SearchStrategy[str]:
    """A strategy for floating dtype names, e.g. ``'float32'`` or ``'bfloat16'``.

    Names are what :class:`gradcheck.Declaration` and :func:`tensors` take. Draws shrink toward
    the first dtype given (by default float32).

    Args:
        dtypes: the dtypes to choose from: names, numpy types or dtypes, or ``tf.DType``.

    Raises:
        InvalidArgument: ``dtypes`` is empty or names something other than float16,
            bfloat16, float32 or float64.
    """
    if isinstance(dtypes, str) or not isinstance(dtypes, Sequence) or not dtypes:
        raise InvalidArgument(
            f"dtypes={dtypes!r} must be a non-empty sequence of dtype names, e.g. "
            f"('float32', 'float64')")
    names = tuple(dict.fromkeys(_dtype_name(d, "dtypes entry") for d in dtypes))
    return _float_dtypes(dtypes=names)


@_named("float_dtypes")
def _float_dtypes(draw, *, dtypes=_DEFAULT_DTYPE_ORDER):
    return draw(st.sampled_from(dtypes))


def shapes(*, min_dims: int = 1, max_dims: int = 4, min_side: int = 1,
           max_side: int = _DEFAULT_MAX_SIDE,
           batch: int | tuple[int, int] | None = _DEFAULT_BATCH) -> st.SearchStrategy:
    """A strategy for array shapes whose first axis is a batch axis.

    The batch size is drawn from ``batch`` (by default 1 to 8, so a batch of one row is always
    possible), every other side from ``min_side`` to ``max_side``. Shapes shrink toward
    ``min_dims`` axes, a batch of ``batch[0]`` and sides of ``min_side``.

    Args:
        min_dims, max_dims: bounds on the rank (0 to 32).
        min_side, max_side: bounds on the size of each axis after the first.
        batch: bounds ``(low, high)`` on the first axis, a fixed batch size, or None to draw
            the first axis like the others.

    Raises:
        InvalidArgument: a bound is not a non-negative integer, or min exceeds max.
    """
    min_dims = _check_int(min_dims, "min_dims")
    max_dims = _check_int(max_dims, "max_dims")
    if max_dims > _MAX_DIMS:
        raise InvalidArgument(f"max_dims={max_dims} is more than numpy allows; pass at most "
                              f"{_MAX_DIMS}")
    _check_order("dims", min_dims, max_dims)
    min_side = _check_int(min_side, "min_side")
    max_side = _check_int(max_side, "max_side")
    _check_order("side", min_side, max_side)
    bounds = _check_batch(batch)
    return _shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                   max_side=max_side, batch=bounds)


@_named("shapes")
def _shapes(draw, *, min_dims=1, max_dims=4, min_side=1, max_side=_DEFAULT_MAX_SIDE,
            batch=_DEFAULT_BATCH):
    ndim = draw(st.integers(min_dims, max_dims))
    if ndim == 0:
        return ()
    first = _integers(*batch) if batch is not None else _integers(min_side, max_side)
    side = _integers(min_side, max_side)
    # one integer per axis, not st.lists: a list's span and its per-item "one more?" choices
    # cost more than the sides themselves, and the sides shrink alike
    return (draw(first), *(draw(side) for _ in range(ndim - 1)))


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@_named("sometimes_wide")
def _sometimes_wide(draw, *, min_dims=1, pattern=None):
    """A fuzzed input's shape: :func:`shapes` with a batch axis (``min_dims`` to 4 axes), or
    a declared ``pattern``'s (None entries drawn, the first as a batch; ints fixed); the batch
    and the last axis each drawn wide one time in ``_WIDE_ODDS`` (``_WIDE_BATCH``,
    ``_WIDE_SIDE``)."""
    if pattern is None:
        pattern = (None,) * draw(_integers(min_dims, 4))
    sides = []
    for axis, entry in enumerate(pattern):
        if entry is not None:  # validated by inputs_for
            sides.append(entry)
            continue
        bounds, wide = ((_DEFAULT_BATCH, _WIDE_BATCH) if axis == 0 else
                        ((1, _DEFAULT_MAX_SIDE), _WIDE_SIDE if axis == len(pattern) - 1 else None))
        if wide is not None and draw(_integers(0, _WIDE_ODDS - 1)) == _WIDE_ODDS - 1:
            bounds = wide  # each axis's own choice: a counterexample stays narrow elsewhere
        sides.append(draw(_integers(*bounds)))
    return tuple(sides)


# --- values ------------------------------------------------------------------------------------

def _representable(value: float, name: str) -> float:
    """``value`` rounded to the nearest value of the dtype, as a Python float."""
    return float(np.asarray(value, dtype=np.float64).astype(_np_dtype(name)))


def _round_into(value: float, name: str, direction: float) -> float:
    """The value of the dtype nearest ``value`` on its ``direction`` side (+1 up, -1 down)."""
    dtype = _np_dtype(name)
    cast = np.asarray(value, dtype=np.float64).astype(dtype)
    if (float(cast) - value) * direction < 0:  # rounded the wrong way: one step further
        cast = np.nextafter(cast, np.asarray(direction * math.inf).astype(dtype))
    return float(cast)


def _bounds(name: str, domain: tuple[float, float]) -> tuple[float, float]:
    """The domain clipped to the dtype's finite range, ends rounded inward to the dtype."""
    biggest = float(_finfo(name).max)
    low = _round_into(max(domain[0], -biggest), name, +1.0)
    high = _round_into(min(domain[1], biggest), name, -1.0)
    if low > high:
        raise InvalidArgument(
            f"domain={domain!r} contains no {name} value; pass a wider domain")
    return low, high


def edge_values(dtype: Any, domain: tuple[float, float] = (-10.0, 10.0),
                kinks: Sequence[float] = ()) -> tuple[float, ...]:
    """The edge values :func:`tensors` mixes in, simplest first, as Python floats.

    0, 1, -1, +-tiny (smallest normal), the domain's ends (clipped to the dtype's finite
    range and rounded inward), the largest finite magnitudes, and each kink (rounded to the
    dtype; both neighbours when the kink is not representable) -- only those in the domain.
    """
    name = _dtype_name(dtype)
    domain = _check_domain(domain)
    low, high = _bounds(name, domain)
    info = _finfo(name)
    tiny, biggest = float(info.smallest_normal), float(info.max)
    candidates = [0.0, 1.0, -1.0, tiny, -tiny, low, high, biggest, -biggest]
    for kink in _check_kinks(kinks):
        nearest = _representable(kink, name)
        candidates.append(nearest)
        if nearest != kink:
            other = np.nextafter(np.asarray(nearest).astype(_np_dtype(name)),
                                 np.asarray(math.copysign(math.inf, kink - nearest))
                                 .astype(_np_dtype(name)))
            candidates.append(float(other))
    found = [v for v in candidates if low <= v <= high]
    return tuple(dict.fromkeys(found))


def tensors(*, shape: Any, dtype: Any, domain: tuple[float, float] = (-10.0, 10.0),
            kinks: Sequence[float] = ()) -> st.SearchStrategy[np.ndarray]:
    """A strategy for NumPy arrays of a floating dtype with values in ``domain``.

    Values are drawn in float64 and cast, so each is exactly representable in ``dtype`` and,
    because the domain's ends are rounded inward first, still inside the domain. An array
    holds 1 to 16 distinct values (3 to 4 on average; at most one per entry), each drawn by
    Hypothesis: edge values (see :func:`edge_values`), and values spread over the domain
    uniformly and log-uniformly in magnitude; one drawn byte per entry says which value it
    takes. Drawing every entry cost more than checking a small input. Arrays
    shrink toward all zeros (or the simplest edge value inside the domain): one value, then
    0, in every entry.

    Args:
        shape: a tuple of sizes, an int, or a strategy of shapes (e.g. :func:`shapes`).
        dtype: 'float16', 'bfloat16', 'float32' or 'float64' (numpy and TF dtypes work), or
            a strategy of those (e.g. :func:`float_dtypes`).
        domain: ``(low, high)``; infinite ends are clipped to the dtype's finite range.
        kinks: points where the function is not differentiable, drawn as edge values.

    Raises:
        InvalidArgument: a bad shape, dtype, domain or kink, or a domain holding no value of
            ``dtype``.
    """
    if not isinstance(shape, st.SearchStrategy):
        shape = _check_shape(shape)
    if not isinstance(dtype, st.SearchStrategy):
        dtype = _dtype_name(dtype)
    domain = _check_domain(domain)
    kinks = _check_kinks(kinks)
    if isinstance(dtype, str):
        _bounds(dtype, domain)  # fail now, not at the first draw
    return _tensors(shape=shape, dtype=dtype, domain=domain, kinks=kinks)


@_named("tensors")
def _tensors(draw, *, shape, dtype, domain=(-10.0, 10.0), kinks=()):
    if isinstance(shape, st.SearchStrategy):
        shape = _check_shape(draw(shape), "drawn shape")
    name = _dtype_name(draw(dtype)) if isinstance(dtype, st.SearchStrategy) else dtype
    size = math.prod(shape)
    if size == 0:
        return np.zeros(shape, _np_dtype(name))
    values = draw(_distinct(_elements(name, domain, kinks), min(size, _MAX_DISTINCT)))
    if len(values) == 1:
        return np.full(shape, values[0], np.float64).astype(_np_dtype(name))
    # Where each value goes: one byte per entry, a single draw (drawing every entry through
    # Hypothesis cost ~0.1 ms each, more than the check of a small input). Entry i takes
    # value (i + byte_i) mod k: all zero bytes, where shrinking goes, cycle through the values.
    layout = np.frombuffer(draw(_layouts(size)), np.uint8)
    chosen = (np.arange(size) + layout) % len(values)
    return np.asarray(values, np.float64)[chosen].reshape(shape).astype(_np_dtype(name))


# At most this many distinct values per array, drawn through Hypothesis (so each shrinks on its
# own toward 0 and the edge values); the layout spreads them over the entries. Hypothesis's
# lists favour short ones: 3 to 4 values on average (an entry each cost ~0.1 ms to draw).
_MAX_DISTINCT = 16


@functools.cache
def _distinct(elements: st.SearchStrategy[float], most: int) -> st.SearchStrategy[list]:
    return st.lists(elements, min_size=1, max_size=most)


@functools.lru_cache(maxsize=256)
def _layouts(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


@functools.lru_cache(maxsize=256)
def _elements(name: str, domain: tuple[float, float],
              kinks: tuple[float, ...]) -> st.SearchStrategy[float]:
    """Edge values first (so they shrink first), then float64 draws inside the dtype's bounds."""
    low, high = _bounds(name, domain)
    spread = [st.sampled_from(edge_values(name, domain, kinks)), st.floats(low, high)]
    return st.one_of(*spread, *_log_uniform(name, low, high))


def _log_uniform(name: str, low: float, high: float) -> list[st.SearchStrategy[float]]:
    """Magnitudes log-uniform from the dtype's smallest normal to the domain's largest |x|, one
    strategy per sign the domain allows: uniform draws almost never land at |x| < 1e-3 or,
    in a wide domain, below its top decade, where underflow and overflow bugs live."""
    tiny = float(_finfo(name).smallest_normal)
    parts = []
    for sign, lo, hi in ((1.0, max(low, tiny), high), (-1.0, max(-high, tiny), -low)):
        if hi > lo > 0:
            exponents = st.floats(math.log2(lo), math.log2(hi))
            parts.append(exponents.map(lambda e, s=sign, a=lo, b=hi: s * min(max(2.0 ** e, a),
                                                                             b)))
    return parts


# --- whole inputs ----------------------------------------------------------------------------

def inputs_for(declaration: Any, dtype: Any) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """A strategy for the inputs of a declared target: ``(x, *args)`` as NumPy arrays.

    ``x`` takes its shape from ``declaration.input_shape`` (None entries drawn, the first as a
    batch axis of 1 to 8; ints fixed) or, without one, from :func:`shapes` (batch axis first;
    rank 1 to 4 for an elementwise activation, 2 to 4 for anything else: Keras' convention
    is axis 0 = batch, and a layer or a softmax acts on the last axis, which at rank 1 would be
    the batch itself); its values from ``declaration.domain`` and ``declaration.kinks``. Then one
    array per ``declaration.args`` entry, in order: ``(low, high)`` gives a scalar,
    ``(shape, low, high)`` an array of that shape. All arrays are in ``dtype``.

    Args:
        declaration: a :class:`gradcheck._declare.Declaration` (or anything with its fields).
        dtype: the dtype of every array (a name, numpy or TF dtype).

    Raises:
        InvalidArgument: a malformed input_shape or args entry, or a bad dtype.
    """
    name = _dtype_name(dtype)
    pattern = getattr(declaration, "input_shape", None)
    if pattern is None:
        batched = (getattr(declaration, "kind", "activation") == "layer"
                   or not getattr(declaration, "elementwise", True))
        x_shape = _sometimes_wide(min_dims=2 if batched else 1)
    elif isinstance(pattern, (tuple, list)):
        x_shape = _sometimes_wide(pattern=tuple(
            entry if entry is None else _check_int(entry, "input_shape entry")
            for entry in pattern))
    else:
        raise InvalidArgument(
            f"input_shape={pattern!r} must be a tuple of sizes and None entries, e.g. (None, 4)")
    parts = [tensors(shape=x_shape, dtype=name, domain=declaration.domain,
                     kinks=getattr(declaration, "kinks", ()))]
    for arg, spec in dict(getattr(declaration, "args", None) or {}).items():
        parts.append(_arg_tensors(arg, spec, name))
    return st.tuples(*parts)


def _arg_tensors(arg: str, spec: Any, dtype: str) -> st.SearchStrategy[np.ndarray]:
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        shape, low, high = (), *spec
    elif isinstance(spec, (tuple, list)) and len(spec) == 3:
        shape, low, high = spec
    else:
        raise InvalidArgument(
            f"args[{arg!r}]={spec!r} must be (low, high) for a scalar or (shape, low, high) "
            f"for a tensor, e.g. (0.5, 2.0) or ((4,), -1.0, 1.0)")
    return tensors(shape=_check_shape(shape, f"args[{arg!r}] shape"), dtype=dtype,
                   domain=_check_domain((low, high), f"args[{arg!r}] domain"))
