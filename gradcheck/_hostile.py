"""Reports of targets that defeat the check itself: they exit, return no tensor, hang, or fail
on one call and not the next. Each becomes a finding at the input it was given, with the same
reproducer as any other finding, instead of a traceback through gradcheck and Hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import _said
from ._report import Finding, Report

__all__ = ["exited_report", "failure_report", "flaky_text", "intermittent", "plain_inputs",
           "timeout_message"]


def failure_report(entry: Any, dtype: str, inputs: Sequence[np.ndarray] | None, message: str,
                   kind: str = "error", **details: Any) -> Report:
    """A report with one finding of ``kind`` at ``inputs`` (a registered ``entry``'s)."""
    name = entry.name
    message = message if message.startswith(f"{name}:") else f"{name}: {message}"
    shown = plain_inputs(entry.declaration, dtype, inputs) if inputs is not None else {}
    return Report(target=entry.qualified, dtype=dtype,
                  findings=[Finding(kind, message, shown, details)])


def exited_report(tgt: Any, args: Sequence[Any], exc: BaseException,
                  options: dict[str, Any]) -> Report:
    """:func:`gradcheck.check`'s report (``options``: its keywords, for the reproducer) of a
    target that called ``sys.exit`` or raised a BaseException that is not an Exception
    (``meta["exited"]``: fuzzing stops at it rather than shrinking, which would only call it
    again). Ctrl-C, the time limit and the control
    flow of pytest (``pytest.fail``, pytest-timeout's signal method, ``skip``) and of
    Hypothesis go on up."""
    from ._inputs import plain_inputs as shown_inputs
    from ._reproducer import check_reproducer
    from ._timeout import TimeLimitExceeded

    owners = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}  # pytest's Failed
    if isinstance(exc, (Exception, KeyboardInterrupt, TimeLimitExceeded)) or owners & {
            "_pytest", "pytest", "hypothesis", "gradcheck"}:  # their control flow goes on up
        raise exc
    dtype = next((a.dtype for a in args if a.dtype.is_floating), args[0].dtype)
    what = (f"called sys.exit({exc.code!r}) (SystemExit)" if isinstance(exc, SystemExit)
            else f"raised {type(exc).__name__}" + (f" ({_said(exc)})" if _said(exc) else "")
            + ", a BaseException that is not an Exception")
    message = (f"{tgt.name}: {what}; a target must return a tensor or raise an Exception, "
               "never exit the process")
    finding = Finding("error", message, shown_inputs(tgt, args, dtype),
                      {"exception": type(exc).__name__})
    return Report(target=tgt.name, dtype=dtype.name, findings=[finding],
                  reproducer=check_reproducer(tgt, args, options), meta={"exited": True})


def plain_inputs(declaration: Any, dtype: str, inputs: Sequence[np.ndarray]) -> dict[str, Any]:
    """The inputs as plain lists keyed by argument name, as findings show them."""
    names = ["x", *declaration.args]
    shown: dict[str, Any] = {names[i] if i < len(names) else f"x{i}":
                             np.asarray(a, np.float64).tolist() for i, a in enumerate(inputs)}
    shown["dtype"] = dtype
    return shown


def timeout_message(name: str, dtype: str, limit: float, running: float | None,
                    finished: Sequence[float]) -> str:
    """What a target stopped by the time limit is told: how long the unfinished check had run
    (None: no check had started) and how long the finished ones took, and what to change."""
    earlier = (f"the {len(finished)} input(s) checked before took "
               f"{sum(finished) / len(finished):.3g} s each on average (the slowest "
               f"{max(finished):.3g} s)" if finished else "no input had finished before it")
    what = ("before any input of Hypothesis's was checked (the sweep over every value, or "
            "the run's setup, took the time)"
            if running is None else f"one check of the input below (about 7 calls of the "
            f"target) had run {running:.3g} s and not finished; {earlier}")
    return (f"{name}: stopped by the time limit of {limit:g} s in {dtype}: {what}. A hang "
            f"(a loop that never ends, a blocking call) or a "
            "target too slow for this limit: raise it with timeout= in the declaration, "
            "--gradcheck-timeout or gradcheck_timeout (0: no limit), or lower max_examples")


def flaky_text(flaky: BaseException) -> str:
    """What went wrong in a Flaky Hypothesis run, from the first exception it holds, without
    Hypothesis' advice (there is no test function to put ``@seed`` on)."""
    inner = next(iter(getattr(flaky, "exceptions", ())), None)
    if inner is None:
        return "the same input passed when Hypothesis replayed it"
    return (f"raised {type(inner).__name__}: {inner} on one call and not when Hypothesis "
            "replayed the same input (random numbers, global state or a race in the target?)")


def intermittent(run: Any, kind: str, extra: dict[str, Any]) -> bool:
    """Before a fuzz ``run`` blames a dtype or a shape for the target's error, run an input
    that ran there twice more: a target that fails at random also "runs" somewhere by chance."""
    if kind == "dtype_mismatch":
        dtype = extra["works_in"]
        sample = tuple(a.astype(dtype) for a in run.current_failure)
    else:
        dtype, sample = None, run.passed_inputs.get(tuple(map(tuple, extra["passed_shapes"][0])))
    if sample is None:
        return False
    for _ in range(2):
        try:
            if "error" in run.check(sample, dtype=dtype).kinds:
                return True
        except (Exception, SystemExit):  # noqa: BLE001 - it ran before: now it fails
            return True
    return False


def nothing_compared(name: str, checked: int) -> str:
    """The message of a fuzz run whose every example's output was NaN/Inf everywhere."""
    return (f"the output is NaN/Inf at every entry of every input drawn ({checked} examples), "
            f"and so is the reference's: no gradient was compared; declare the domain where "
            f"{name} is defined (domain=(low, high))")


def numpy_raising(error: BaseException) -> str:
    """The message of a target that made NumPy raise on floating-point errors."""
    return (f"set NumPy to raise on floating-point errors (np.seterr), and gradcheck's own "
            f"arithmetic then raised: {error}; leave NumPy's error handling as it is, or "
            f"restore it (np.errstate)")


def sweep_failure(dtype: str, failed: BaseException) -> str:
    """The message of a target that failed in the sweep's call and nowhere Hypothesis drew."""
    if isinstance(failed, FloatingPointError):
        return numpy_raising(failed)
    what = (str(failed).removeprefix("gradcheck: ") if type(failed).__name__ == "_UsageError"
            else f"{type(failed).__name__}: {failed}")
    return (f"failed when called on every {dtype} value of its domain at once (the sweep), "
            f"where Hypothesis's inputs did not fail: {what}; check it at large and special "
            f"values (gradcheck.sweep alone shows the same)")


_BLOB = re.compile(r"@reproduce_failure\([^)]*\)")


def blob_of(error: BaseException) -> str | None:
    """The ``@reproduce_failure(...)`` line Hypothesis noted on the error, if any."""
    for note in getattr(error, "__notes__", ()):
        match = _BLOB.search(note)
        if match:
            return match.group(0)
    return None
