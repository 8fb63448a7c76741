"""Declared gradients: compare the analytic VJP with ``gradient=`` instead of finite differences.

A gradient reversal layer (``grad_fn`` returns ``-dy``), a straight-through estimator (round or
sign forward, identity backward), clipped or scaled gradients are correct code whose gradient is
*meant* to differ from the derivative. Declared with ``gradient=lambda x, dy, *args: ...``, the
expected VJP for ``x`` (a tuple: for ``x`` and each further argument, ``None`` to leave one to
finite differences) replaces finite differences for those inputs; a layer's weights and every
undeclared input are still judged by finite differences, and everything else is still checked:
shapes, dtypes, NaN/Inf, a None gradient where the declared one is not 0, the forward pass's
elementwise / batch-row structure, the backward pass's batch rows, execution modes, and that
the VJP is linear in ``dy`` (a surrogate that ignores ``dy`` fails, whatever it declares).

How the numbers are decided:

- The declared gradient runs in float64 (inputs and ``dy`` cast; in the target's dtype if it
  does not run in float64), at ``x`` and at ``x (1 +- w)``, ``w = ANALYTIC_ULPS * eps`` of the
  target's dtype: the window of inputs the target's own rounding cannot tell apart (as in
  ``_check.within_rounding_window``), so a surrogate with a steep or discontinuous piece is
  judged against the values it takes there. The analytic VJP may lie anywhere in that range
  widened by ``ANALYTIC_ULPS`` roundings of the VJP's intermediates, each at most
  ``|dy| max(1, |x|)`` or the value itself (the core's rule), plus ``|dy|`` times the dtype's
  smallest normal number (values below it flush to 0).
- Linearity in ``dy`` is the core's own check for every target (``_linearity.py``): a
  constant or a ``|dy|`` fails it whatever the declaration says.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from ._numerics import ANALYTIC_ULPS  # the core's allowance for the analytic side


class DeclarationError(TypeError):
    """The declared ``gradient=`` itself is broken (raises, wrong shape): the user's
    declaration to fix, not a finding about the target."""

__all__ = ["declared_gradient_checked", "analytic_source", "expression_of"]

#: The longest lambda source expression_of() looks for (characters from "lambda").
_LAMBDA_CHARS = 600


def analytic_source(fn: Any) -> str:
    """How the analytic gradient of ``fn`` is computed, for messages: ``"your grad fn"`` for a
    ``tf.custom_gradient`` (also under ``tf.function``), ``"autodiff"`` otherwise."""
    for candidate in (fn, getattr(fn, "python_function", None)):
        decorator = getattr(candidate, "_tf_decorator", None)
        if getattr(decorator, "decorator_name", None) == "custom_gradient":
            return "your grad fn"
    return "autodiff"


@contextmanager
def declared_gradient_checked(run: Any) -> Iterator[None]:
    """Around the core's finite-difference comparison: judge the declared inputs against
    ``run.gradient`` and hide them from finite differences meanwhile (restored after)."""
    if run.gradient is None:
        yield
        return
    declared = _compare(run)
    saved = [(run.params[k], run.params[k].grad, run.params[k].grad_missing) for k in declared]
    for p, _, _ in saved:
        p.grad, p.grad_missing = None, False
    try:
        yield
    finally:
        for p, grad, missing in saved:
            p.grad, p.grad_missing = grad, missing


def _compare(run: Any) -> list[int]:
    """Compare; return the indices of the params the declaration covers."""
    expected = _expected(run, 0.0)
    declared = [k for k in expected if run.params[k].grad is not None
                or run.params[k].grad_missing]
    if not declared:
        return []
    _structure(run, declared)
    width = ANALYTIC_ULPS * run.eps
    lower, upper = _expected(run, -width), _expected(run, width)
    for k in declared:
        p = run.params[k]
        e = expected[k]
        if p.grad_missing:
            if np.any(e != 0):
                j = int(np.argmax(e != 0))
                run.add("disconnected_gradient",
                        f"the gradient for {p.label} is None, but gradient= declares "
                        f"{e.flat[j]:.6g} at index {_index(j, e.shape)}; a tf.stop_gradient, a "
                        f".numpy() call, or a grad fn returning None for it?", param=p.label)
            continue
        lo = np.minimum(np.minimum(e, lower[k]), upper[k])
        hi = np.maximum(np.maximum(e, lower[k]), upper[k])
        v = np.abs(run.v) if run.v.shape == e.shape else float(np.max(np.abs(run.v)))
        slack = ANALYTIC_ULPS * run.eps * (np.abs(e) + v * np.maximum(1.0, np.abs(p.value)))
        slack = slack + v * run.tiny
        bad = ~((p.grad >= lo - slack) & (p.grad <= hi + slack))
        if bad.any():
            j = int(np.argmax(np.where(bad, np.abs(p.grad - e) / (slack + 1e-300), -1)))
            at = f", x = {p.value.flat[j]:.9g}" if p.value.shape == e.shape else ""
            dy = (f", upstream dy = {run.v.flat[j]:.4g}" if run.v.shape == e.shape else "")
            run.add("gradient_mismatch",
                    f"gradient mismatch for {p.label} at index {_index(j, e.shape)}{at} "
                    f"({run.dtype.name}): analytic ({analytic_source(run.tgt.fn)}) "
                    f"{p.grad.flat[j]:.9g} vs declared gradient= {e.flat[j]:.9g} ± "
                    f"{slack.flat[j] + (hi - lo).flat[j]:.3g}{dy}; {int(bad.sum())} / "
                    f"{bad.size} elements ({100 * bad.mean():.1f}%) mismatched",
                    param=p.label, index=list(_index(j, e.shape)),
                    analytic=p.grad.flat[j], declared=e.flat[j])
    return declared


def _expected(run: Any, shift: float) -> dict[int, np.ndarray]:
    """The declared VJP for each declared param (by index), at inputs scaled by 1 + shift."""
    floats = {p.arg_index: k for k, p in enumerate(run.params) if not p.is_weight}
    result, error = None, None
    for dtype in (tf.float64, run.dtype):
        args = []
        for i, a in enumerate(run.args):
            if i in floats:
                value = run.params[floats[i]].value
                args.append(tf.constant(value * (1.0 + shift) if i == 0 else value, dtype))
            else:
                args.append(a)
        try:
            result = run.gradient(args[0], tf.constant(run.v, dtype), *args[1:])
            break
        except Exception as exc:  # noqa: BLE001 - retried in the target's dtype, then reported
            error = exc
    if result is None:
        raise DeclarationError(
            f"gradcheck: {run.tgt.name}: the declared gradient= raised "
            f"{type(error).__name__}: {error}; it is called as gradient(x, dy, *args) with "
            "tensors and must return the expected gradient for x")
    parts = result if isinstance(result, (tuple, list)) else (result,)
    out = {}
    for i, part in enumerate(parts):
        if part is None or i not in floats:
            continue
        k = floats[i]
        value = np.asarray(tf.cast(part, tf.float64)) if hasattr(part, "dtype") else \
            np.asarray(part, np.float64)
        value = np.broadcast_to(value, run.params[k].value.shape) if value.ndim == 0 else value
        if value.shape != run.params[k].value.shape:
            raise DeclarationError(
                f"gradcheck: {run.tgt.name}: the declared gradient= returned shape "
                f"{list(value.shape)} for {run.params[k].label}, expected "
                f"{list(run.params[k].value.shape)} (the shape of the input)")
        out[k] = value
    return out


def _structure(run: Any, declared: list[int]) -> None:
    """The forward pass's declared structure, which finite differences no longer probe."""
    primary = run.params[0]
    diag = [k for k in declared if run.elementwise and run.params[k].grad is not None
            and run.params[k].value.shape == run.f0.shape]
    if diag and not run.confirm_elementwise(diag):
        return
    rows = [k for k in declared if run.batch_independent and run.params[k].grad is not None
            and run.params[k].value.shape == primary.value.shape and run.f0.ndim
            and run.params[k].value.ndim and run.params[k].value.shape[0] == run.f0.shape[0]]
    if rows and run.f0.shape[0] >= 2:
        run.confirm_batch_independent(rows)


def expression_of(fn: Callable) -> str:
    """Python source that evaluates to ``fn`` in its module: its name, or a lambda's text."""
    name = getattr(fn, "__qualname__", "")
    if name and "<" not in name:
        return name
    try:
        lines = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return "..."

    code = getattr(fn, "__code__", None)
    params = list(code.co_varnames[:code.co_argcount]) if code is not None else []
    start = lines.find("lambda")
    while start >= 0:
        # A lambda ends within a few lines (in a decorator's parentheses): longest text first.
        for end in range(min(len(lines), start + _LAMBDA_CHARS), start, -1):
            text = lines[start:end].strip().rstrip(",")
            try:
                node = ast.parse(f"({text})", mode="eval").body
            except SyntaxError:
                continue
            if isinstance(node, ast.Lambda) and [a.arg for a in node.args.args] == params:
                return f"({text})"
        start = lines.find("lambda", start + 1)
    return "..."


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()
