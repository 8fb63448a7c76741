"""What a declaration says is intended: a surrogate gradient, a known failure, Keras' own
call arguments. Validators for those options of :class:`gradcheck._declare.Declaration`, kept
free of TensorFlow so that declaring stays cheap.

- ``gradient=``: a function ``(x, dy, *args) -> expected VJP`` for gradients that are *meant*
  to differ from the derivative (gradient reversal, straight-through estimators, clipped or
  scaled gradients); :mod:`gradcheck._declared_gradient` compares against it.
- ``xfail=``: a reason (every dtype) or ``{dtype: reason}``: the pytest items of those dtypes
  are expected to fail (reported xfailed, or xpassed once they pass).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

__all__ = ["KERAS_CALL_ARGUMENTS", "gradient_option", "xfail_option", "xfail_reason",
           "check_keras_call_arguments"]

#: Arguments of a Layer's call() that Keras fills in, never tensor inputs to fuzz.
KERAS_CALL_ARGUMENTS = ("training", "mask")


def gradient_option(value: Any, order: int) -> Callable | None:
    """Validate ``gradient=``: None or a callable; not with ``order=2``."""
    if value is None:
        return None
    if not callable(value) or isinstance(value, type):
        raise TypeError("gradient must be a function (x, dy, *args) -> the expected gradient "
                        f"for x, e.g. gradient=lambda x, dy: -dy, got {type(value).__name__} "
                        f"{value!r:.60}")
    if order == 2:
        raise ValueError("gradient= declares a gradient that is not f's derivative, so the "
                         "gradient of the gradient has nothing to be compared with: use "
                         "order=1 (the default) with gradient=")
    return value


def xfail_option(value: Any, dtypes: tuple[str, ...]) -> str | dict[str, str] | None:
    """Validate ``xfail=``: None, a non-empty reason, or ``{dtype name: reason}``."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("xfail must give a reason, e.g. xfail='overflows in float16 "
                             "(issue 12)', got an empty string")
        return value
    if not isinstance(value, Mapping):
        raise TypeError("xfail must be a reason (a string, for every dtype) or a dict "
                        f"{{dtype: reason}}, got {type(value).__name__} {value!r:.60}")
    reasons: dict[str, str] = {}
    for dtype, reason in value.items():
        name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None)
        if name not in dtypes:
            raise ValueError(f"xfail: unknown dtype {dtype!r}; expected names from {dtypes}")
        if not isinstance(reason, str) or not reason.strip():
            raise TypeError(f"xfail[{name!r}] must be a non-empty reason, got {reason!r}")
        reasons[name] = reason
    return reasons


def xfail_reason(xfail: str | Mapping[str, str] | None, dtype: str) -> str | None:
    """The reason the item of ``dtype`` is expected to fail, or None."""
    if xfail is None or isinstance(xfail, str):
        return xfail
    return xfail.get(dtype)


def check_keras_call_arguments(args: Mapping[str, Any], where: str) -> None:
    """A layer's ``args`` must not name ``training``/``mask``: Keras passes them itself."""
    keras_own = [name for name in args if name in KERAS_CALL_ARGUMENTS]
    if keras_own:
        raise TypeError(f"{where}: args must not name {keras_own[0]!r}: Keras passes it to "
                        "call() itself, and gradcheck checks a layer whose call accepts "
                        "training with training=False and training=True; drop "
                        f"{keras_own[0]!r} from args")
