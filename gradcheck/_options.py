"""The options of a check: their names, defaults and validators, free of TensorFlow.

One table each of dtype names, derivative orders, execution modes and mixed-precision policies,
and one validator per option that several entry points accept, so that the declarations
(``gradcheck._declare``), :func:`gradcheck.check`, fuzzing, the plot, the CLI and the pytest
plugin spell and check each option the same way. Validators raise ``TypeError``/``ValueError``
saying what was given and what is valid, without a prefix: each caller adds where the value
came from (``gradcheck: ...``, ``@gradcheck.layer on MyLayer: ...``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DTYPES", "ORDERS", "MODES", "DEFAULT_MODES", "POLICIES", "CHECK_DEFAULTS",
           "check_options", "names", "order", "modes", "compared_modes", "policies"]

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

#: The options a declaration passes on to :func:`gradcheck.check`, with check()'s defaults
#: (a reproducer writes out only those that differ).
CHECK_DEFAULTS: dict[str, Any] = {"elementwise": True, "batch_independent": True, "rtol": None,
                                  "atol": None, "order": 1, "modes": None, "policies": ()}


def check_options(declaration: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`gradcheck.check` that ``declaration`` fixes: the same
    for every caller (fuzzing, the plot), so that they reach the same verdict."""
    return {name: getattr(declaration, name) for name in CHECK_DEFAULTS}


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
                        f"{type(value).__name__} {value!r:.60}")
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


def policies(value: Any) -> tuple[str, ...]:
    """Mixed-precision policies from :data:`POLICIES` (None: none)."""
    return names("policies", "policy", () if value is None else value, POLICIES)
