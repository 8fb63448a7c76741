"""The inputs a sweep checks: every finite value of a 16-bit dtype, a dense grid of a wide one.

Pure NumPy, no TensorFlow. Every value returned is exactly representable in its dtype (it went
through a cast to it), lies inside the requested interval, and the arrays are sorted and free of
duplicates (one zero).

* float16 / bfloat16: all 65 536 bit patterns, the finite ones.
* float32 / float64: ``PER_BINADE`` mantissas in every binade [2^e, 2^(e+1)) of the dtype,
  subnormal ones included, both signs; ``LINEAR`` points evenly over the declared domain (or the
  default fuzzing domain, where an activation's shape lives); and ``NEIGHBOURS`` consecutive
  values on each side of zero, the underflow threshold (smallest normal), the overflow threshold
  (the largest finite value), the domain's ends and every declared kink, plus a log-spaced
  approach to each kink from ulp size to max(1, |kink|).
* :func:`between` fills the gap between two swept values evenly in *ulps* (consecutive
  representable values), which is how a sweep narrows down where a target changes regime.
"""

from __future__ import annotations

import functools
import math

import ml_dtypes
import numpy as np

#: Mantissas per binade for the wide dtypes: float32 has 277 binades (subnormals included), so
#: 32 per binade and sign is ~18 000 values; float64's 2 098 binades get 16 (~67 000).
PER_BINADE = {"float32": 32, "float64": 16}
#: Points evenly spaced over the domain, where the binade grid thins out (|x| near its ends).
LINEAR = 4097
#: Consecutive representable values checked on each side of each special point.
NEIGHBOURS = 16
#: Where the sweep's linear grid goes when no domain is declared: the default fuzzing domain.
DEFAULT_SPAN = (-10.0, 10.0)

_INT = {"float16": np.int16, "bfloat16": np.int16, "float32": np.int32, "float64": np.int64}


def np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def finfo(name: str):
    return ml_dtypes.finfo(np_dtype(name))


def exhaustive(name: str) -> bool:
    """Whether a sweep in this dtype checks every finite value (16-bit dtypes)."""
    return name in ("float16", "bfloat16")


def _representable(values: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np_dtype(name)).astype(np.float64)


def _clean(values: np.ndarray, name: str, low: float, high: float) -> np.ndarray:
    values = _representable(values, name)
    values = values[np.isfinite(values) & (values >= low) & (values <= high)]
    return np.unique(values + 0.0)  # + 0.0 turns -0.0 into 0.0: one zero


def bounds(name: str, domain: tuple[float, float] | None) -> tuple[float, float]:
    """The domain (default: the dtype's whole finite range) clipped to finite values and rounded
    inward to the dtype."""
    biggest = float(finfo(name).max)
    if domain is None:
        return -biggest, biggest
    low, high = max(domain[0], -biggest), min(domain[1], biggest)
    low_r, high_r = (float(_representable(np.array([v]), name)[0]) for v in (low, high))
    if low_r < low:
        low_r = float(step(np.array([low_r]), name, +1)[0])
    if high_r > high:
        high_r = float(step(np.array([high_r]), name, -1)[0])
    return low_r, high_r


@functools.lru_cache(maxsize=64)
def values(name: str, domain: tuple[float, float] | None = None,
           kinks: tuple[float, ...] = ()) -> np.ndarray:
    """The sorted float64 values a sweep of dtype ``name`` checks inside ``domain`` (cached,
    read-only)."""
    swept = _values(name, domain, tuple(kinks))
    swept.flags.writeable = False
    return swept


def _values(name: str, domain: tuple[float, float] | None,
            kinks: tuple[float, ...]) -> np.ndarray:
    low, high = bounds(name, domain)
    if low > high:
        return np.zeros(0)
    if exhaustive(name):
        bits = np.arange(1 << 16, dtype=np.uint16).view(np_dtype(name))
        with np.errstate(invalid="ignore"):  # the NaN patterns
            return _clean(bits.astype(np.float64), name, low, high)
    info = finfo(name)
    smallest = float(info.smallest_subnormal)
    exponents = np.arange(math.floor(math.log2(smallest)), int(info.maxexp))
    mantissas = 1.0 + np.arange(PER_BINADE[name]) / PER_BINADE[name]
    magnitudes = np.ldexp(mantissas[None, :], exponents[:, None]).ravel()
    span = domain if domain is not None else DEFAULT_SPAN
    linear = np.linspace(max(span[0], low), min(span[1], high), LINEAR)
    specials = [0.0, float(info.smallest_normal), -float(info.smallest_normal),
                float(info.max), -float(info.max), low, high, *kinks]
    parts = [magnitudes, -magnitudes, linear, np.array([0.0])]
    parts += [neighbours(p, name) for p in specials]
    parts += [approach(k, name) for k in kinks]
    return _clean(np.concatenate(parts), name, low, high)


def neighbours(point: float, name: str, count: int = NEIGHBOURS) -> np.ndarray:
    """``count`` consecutive representable values on each side of ``point`` (and it)."""
    center = _ordinal(_representable(np.array([point]), name), name)[0]
    return _from_ordinal(np.arange(center - count, center + count + 1), name)


def approach(kink: float, name: str) -> np.ndarray:
    """kink +- d for d from the kink's ulp to max(1, |kink|), four per binade of d."""
    info = finfo(name)
    top = max(1.0, abs(kink))
    ulp = max(abs(kink) * float(info.eps), float(info.smallest_subnormal))
    offsets = np.exp2(np.arange(math.log2(ulp), math.log2(top) + 0.25, 0.25))
    return np.concatenate([kink - offsets, kink + offsets])


def between(a: np.ndarray, b: np.ndarray, name: str, count: int) -> np.ndarray:
    """Up to ``count`` values strictly between each a[i] < b[i], evenly spaced in ulps."""
    oa, ob = _ordinal(a, name), _ordinal(b, name)
    fractions = np.arange(1, count + 1) / (count + 1)
    inner = oa[:, None] + np.floor((ob - oa)[:, None] * fractions[None, :]).astype(np.int64)
    inner = inner[(inner > oa[:, None]) & (inner < ob[:, None])]
    return _from_ordinal(np.unique(inner), name)


def step(x: np.ndarray, name: str, direction: int) -> np.ndarray:
    """The next representable value up (+1) or down (-1)."""
    return _from_ordinal(_ordinal(x, name) + direction, name)


def _ordinal(x: np.ndarray, name: str) -> np.ndarray:
    """Representable floats as integers in the same order, consecutive values 1 apart: the bit
    pattern for x >= 0, minus the magnitude's pattern for x < 0 (so -0 and 0 coincide)."""
    bits = np.asarray(x, dtype=np.float64).astype(np_dtype(name)).view(_INT[name]).astype(np.int64)
    magnitude = bits & np.int64(np.iinfo(_INT[name]).max)
    return np.where(bits < 0, -magnitude, magnitude)


def _from_ordinal(ordinal: np.ndarray, name: str) -> np.ndarray:
    int_type = _INT[name]
    limit = int(np.iinfo(int_type).max)
    ordinal = np.clip(np.asarray(ordinal, dtype=np.int64), -limit, limit)
    sign = np.int64(np.iinfo(int_type).min)
    bits = np.where(ordinal < 0, (-ordinal) | sign, ordinal).astype(int_type)
    with np.errstate(invalid="ignore"):
        out = bits.view(np_dtype(name)).astype(np.float64)
    return out[np.isfinite(out)]
