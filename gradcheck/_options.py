"""The options of a check: their names, defaults and validators, free of TensorFlow.

One table each of dtype names, derivative orders, execution modes and mixed-precision policies,
and one validator per option, so that the declarations (``gradcheck._declare``, which holds
a :class:`CheckOptions` and adds only which kind of target an option applies to),
:func:`gradcheck.check`, the sweep, fuzzing, the plot, the CLI and the pytest plugin spell and
check each option the same way. Validators raise ``TypeError``/``ValueError``
saying what was given and what is valid, without a prefix: each caller adds where the value
came from (``gradcheck: ...``, ``@gradcheck.layer on MyLayer: ...``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

from ._intent import gradient_option

__all__ = ["DTYPES", "ORDERS", "MODES", "DEFAULT_MODES", "POLICIES", "CHECK_DEFAULTS",
           "CheckOptions", "check_options", "check_call", "Expression", "describe", "number",
           "tolerance", "names", "order", "modes", "compared_modes", "policies", "flag",
           "flag_or_none", "interval", "dtypes", "input_shape", "args", "kinks", "max_examples",
           "init"]

#: The floating dtypes a target can be checked in, narrowest first.
DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Derivative orders: 1, the gradient; 2, also the gradient of the gradient.
ORDERS = (1, 2)
#: Execution modes that must agree with eager, the baseline first (see ``_modes.py``).
MODES = ("eager", "function", "xla")
#: What check() compares when ``modes`` is not given: cheap enough to run on every example.
DEFAULT_MODES = ("eager", "function")
#: Keras mixed-precision policies a layer can be checked under (see ``_mixed.py``).
POLICIES = ("mixed_float16", "mixed_bfloat16")

@dataclass(frozen=True)
class CheckOptions:
    """The options that decide a check's verdict besides the target and its inputs, validated
    once, here. :func:`gradcheck.check` builds one from its keywords, a declaration gives its
    own (:meth:`of`), fuzzing, the plot and the sweep pass that on, and a reproducer writes out
    the fields that differ from these defaults (:func:`check_call`). The per-call keywords
    (``seed``, ``name``, ``reference``, ``training``) are not part of it."""

    elementwise: bool | None = None
    batch_independent: bool | None = None
    rtol: float | None = None
    atol: float | None = None
    order: int = 1
    modes: tuple[str, ...] | None = None
    policies: tuple[str, ...] = ()
    domain: tuple[float, float] | None = None
    gradient: Callable | None = None

    def __post_init__(self) -> None:
        checked = {"elementwise": flag_or_none("elementwise", self.elementwise),
                   "batch_independent": flag_or_none("batch_independent",
                                                     self.batch_independent),
                   "rtol": tolerance("rtol", self.rtol), "atol": tolerance("atol", self.atol),
                   "order": order(self.order), "modes": modes(self.modes),
                   "policies": policies(self.policies), "domain": interval(self.domain),
                   "gradient": gradient_option(self.gradient, self.order)}
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, declaration: Any) -> CheckOptions:
        """The options a :class:`gradcheck._declare.Declaration` fixes (it holds them, validated
        when it was made): the same for every caller, so that fuzzing, the plot and the sweep
        reach the same verdict."""
        return declaration.options

    def keywords(self) -> dict[str, Any]:
        """As keyword arguments of :func:`gradcheck.check`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: check()'s defaults of the options in :class:`CheckOptions` (a reproducer writes out only
#: those that differ).
CHECK_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CheckOptions)}


def check_options(declaration: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`gradcheck.check` that ``declaration`` fixes
    (:meth:`CheckOptions.of`)."""
    return CheckOptions.of(declaration).keywords()


def check_call(target: str, inputs: Sequence[str], options: Mapping[str, Any]) -> str:
    """The source of the :func:`gradcheck.check` call that repeats a check (a reproducer):
    ``target`` and ``inputs`` as source text, then each of ``options`` that differs from
    check()'s default, in the order of :data:`CHECK_DEFAULTS`, ``seed`` (default 0) last."""
    defaults = {**CHECK_DEFAULTS, "training": None, "seed": 0}
    keywords = [f"{name}={options[name]!r}" for name, default in defaults.items()
                if name in options and options[name] != default]
    return f"gradcheck.check({', '.join([target, *inputs, *keywords])})"


class Expression(str):
    """Source text that ``repr`` leaves as is (an option value written as code)."""

    def __repr__(self) -> str:
        return str(self)


def describe(value: Any) -> str:
    """A value as an error message quotes it: its type and a repr of at most 60 characters."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def number(option: str, value: Any) -> float:
    """A finite real number, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{option} must be a real number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{option} must be finite, got {value!r}; use a large finite bound "
                         "such as 1e30 instead")
    return value


def tolerance(option: str, value: Any) -> float | None:
    """``rtol``/``atol``: None (the tolerance derived from the error estimate) or a number
    >= 0 that replaces it."""
    if value is None:
        return None
    value = number(option, value)
    if value < 0:
        raise ValueError(f"{option} must be >= 0, got {value!r}")
    return value


def names(option: str, one: str, value: Any, valid: tuple[str, ...], *, hint: str = "",
          allow_none: bool = False) -> tuple[str, ...] | None:
    """``value``, a name (a ``one``) or a tuple/list of names from ``valid``, as a tuple
    without repeats; None stays None where ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{option} must be a tuple of names from {valid}, got "
                        f"{describe(value)}")
    unknown = [name for name in value if name not in valid]
    if unknown:
        raise ValueError(f"unknown {one} {unknown[0]!r} in {option}={tuple(value)!r}; valid "
                         f"{option} are {valid}{hint}")
    return tuple(dict.fromkeys(value))


def order(value: Any) -> int:
    """The derivative order, 1 or 2."""
    if isinstance(value, bool) or value not in ORDERS:
        raise ValueError(f"order must be 1 (gradients) or 2 (also the gradient of the "
                         f"gradient), got {value!r}")
    return int(value)


def modes(value: Any) -> tuple[str, ...] | None:
    """Execution modes from :data:`MODES`; None means check()'s default."""
    return names("modes", "mode", value, MODES, allow_none=True,
                 hint=" (modes=() turns the check off)")


def compared_modes(value: Any) -> tuple[str, ...]:
    """The modes compared with eager for check()'s ``modes`` (None: :data:`DEFAULT_MODES`),
    in the order of :data:`MODES`, eager itself left out."""
    chosen = modes(value)
    chosen = DEFAULT_MODES if chosen is None else chosen
    return tuple(m for m in MODES[1:] if m in chosen)


def flag(option: str, value: Any) -> bool:
    """True or False (a declaration's promise: nothing is inferred)."""
    if not isinstance(value, bool):
        raise TypeError(f"{option} must be True or False, got {describe(value)}")
    return value


def flag_or_none(option: str, value: Any) -> bool | None:
    """True (a promise, reported when broken), False, or None (inferred)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{option} must be True, False or None (inferred), got "
                        f"{describe(value)}")
    return value


def interval(value: Any, option: str = "domain", *,
             optional: bool = True) -> tuple[float, float] | None:
    """``(low, high)`` of finite numbers with low < high, as floats; or None where
    ``optional`` (check()'s domain: no bound)."""
    if value is None and optional:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{option} must be a pair (low, high), got {describe(value)}")
    low, high = (number(f"{option} bound", bound) for bound in value)
    if not low < high:
        raise ValueError(f"{option} must have low < high, got ({low!r}, {high!r})")
    return (low, high)


def policies(value: Any) -> tuple[str, ...]:
    """Mixed-precision policies from :data:`POLICIES` (None: none)."""
    return names("policies", "policy", () if value is None else value, POLICIES)


# -- what a declaration adds: where and how fuzzing draws (see gradcheck._declare) -------------

def dtype(value: Any, option: str = "dtype") -> str:
    """One name from :data:`DTYPES`, of a name or a dtype object (its ``name``)."""
    name = value if isinstance(value, str) else getattr(value, "name", None)
    if name not in DTYPES:
        raise ValueError(f"{option}={value!r} is not a floating dtype; pass one of "
                         f"{', '.join(DTYPES)}")
    return name


def dtypes(value: Any) -> tuple[str, ...]:
    """Names from :data:`DTYPES` (a name, a dtype object or a tuple of them), without repeats."""
    if isinstance(value, str) or hasattr(value, "name") and not isinstance(value, (tuple, list)):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"dtypes must be a tuple of dtype names from {DTYPES}, "
                        f"got {describe(value)}")
    found: list[str] = []
    for item in value:
        try:
            name = dtype(item)
        except ValueError:
            raise ValueError(f"dtypes: unknown dtype {item!r}; expected names from "
                             f"{DTYPES}") from None
        if name not in found:
            found.append(name)
    if not found:
        raise ValueError(f"dtypes must name at least one of {DTYPES}, got an empty {value!r}")
    return tuple(found)


def _dimension(option: str, value: Any, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        valid = "a positive int or None (drawn)" if allow_none else "a positive int"
        raise ValueError(f"{option} entries must each be {valid}, got {value!r}")
    return int(value)


def input_shape(value: Any) -> tuple | None:
    """None (drawn), or a shape whose entries are positive ints (fixed) or None (drawn)."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"input_shape must be a tuple such as (None, 4), got {describe(value)}")
    if not value:
        raise ValueError("input_shape must have at least one dimension (the batch axis), "
                         "got (); use e.g. (None,)")
    return tuple(_dimension("input_shape", d, allow_none=True) for d in value)


def args(value: Any) -> dict[str, tuple]:
    """Extra parameters: ``name -> (low, high)`` (a scalar) or ``(shape, low, high)``."""
    if not isinstance(value, Mapping):
        raise TypeError(f"args must be a dict name -> (low, high) or (shape, low, high), "
                        f"got {describe(value)}")
    specs: dict[str, tuple] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"args keys must be parameter names, got {name!r}")
        where = f"args[{name!r}]"
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            specs[name] = interval(spec, where, optional=False)
        elif isinstance(spec, (tuple, list)) and len(spec) == 3:
            shape = spec[0]
            if not isinstance(shape, (tuple, list)):
                raise TypeError(f"{where} shape must be a tuple of ints such as (4,), "
                                f"got {describe(shape)}")
            shape = tuple(_dimension(f"{where} shape", d, allow_none=False) for d in shape)
            specs[name] = (shape, *interval(spec[1:], where, optional=False))
        else:
            raise TypeError(f"{where} must be (low, high) for a scalar or (shape, low, high) "
                            f"for a tensor, got {describe(spec)}")
    return specs


def kinks(value: Any, domain: tuple[float, float]) -> tuple[float, ...]:
    """Points (a number or a tuple of numbers) inside ``domain``, as floats."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"kinks must be a tuple of numbers, got {describe(value)}")
    points = tuple(number("kinks entry", v) for v in value)
    outside = [k for k in points if not domain[0] <= k <= domain[1]]
    if outside:
        raise ValueError(f"kinks {outside[0]!r} lies outside domain {domain}; "
                         "widen the domain or drop the kink")
    return points


def max_examples(value: Any) -> int | None:
    """None (the session's setting) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"max_examples must be a positive int or None, got {describe(value)}")
    if value < 1:
        raise ValueError(f"max_examples must be at least 1, got {value!r}")
    return int(value)


def init(value: Any) -> dict[str, Any]:
    """A Layer class's keyword arguments, as a dict; ``dtype`` is not one of them."""
    if not isinstance(value, Mapping):
        raise TypeError(f"init must be a dict of keyword arguments, got {describe(value)}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TypeError(f"init keys must be argument names, got {bad[0]!r}")
    if "dtype" in value:
        raise ValueError("init must not contain 'dtype': each checked dtype builds its own "
                         "layer; restrict dtypes with dtypes=(...) instead")
    return dict(value)
