"""gradcheck: gradient verification for TensorFlow and Keras.

    import gradcheck
    report = gradcheck.check(my_activation, x)       # a Report; report.ok, str(report)
    gradcheck.assert_gradients(my_activation, x)     # raises GradcheckError on findings
"""

from ._report import KINDS, Finding, GradcheckError, Report

__version__ = "0.1.0"

__all__ = ["check", "assert_gradients", "Report", "Finding", "GradcheckError", "KINDS",
           "__version__"]


def __getattr__(name):
    # TensorFlow is imported on first use, so `import gradcheck` (and the pytest plugin) stays
    # cheap until something is actually checked.
    if name in ("check", "assert_gradients"):
        from . import _check
        return getattr(_check, name)
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
