"""gradcheck: gradient verification for TensorFlow and Keras.

    import gradcheck

    report = gradcheck.check(my_activation, x)       # a Report: report.ok, str(report)
    gradcheck.assert_gradients(my_activation, x)     # raises GradcheckError on findings

    @gradcheck.activation(domain=(-20, 20))          # declare it; `pytest --gradcheck` fuzzes it
    def my_activation(x): ...

    gradcheck.fuzz(my_activation, dtype="float32")   # the same fuzzing outside pytest
    gradcheck.sweep(my_activation, dtype="float16")  # every float16 value, in a few calls

TensorFlow and Hypothesis are imported on first use of ``check``/``fuzz``/``strategies``, so
``import gradcheck`` and the decorators stay cheap in production code.
"""

from typing import TYPE_CHECKING

from ._declare import activation, layer
from ._report import KINDS, Finding, GradcheckError, Report

if TYPE_CHECKING:  # what __getattr__ imports on first use, spelled out for editors and checkers
    from . import plot, strategies
    from ._check import assert_gradients, check
    from ._fuzz import fuzz
    from ._sweep import sweep

__version__ = "0.1.0"

__all__ = ["check", "assert_gradients", "fuzz", "sweep", "activation", "layer", "strategies",
           "plot", "Report", "Finding", "GradcheckError", "KINDS", "__version__"]

# Public names whose modules import TensorFlow or Hypothesis: imported on first access.
_LAZY = {"check": "._check", "assert_gradients": "._check", "fuzz": "._fuzz", "sweep": "._sweep"}
_LAZY_MODULES = ("strategies", "plot")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
