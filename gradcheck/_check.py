"""check(): verify a target's gradients at one concrete input.

Top to bottom, one check is:

1. call the target once under a tape in the input's dtype ``d`` and take one VJP with a random,
   signed, non-uniform cotangent ``v`` (so a gradient that ignores ``dy`` or averages it is
   caught); check shapes, dtypes, NaN/Inf and (for layers) untracked variables;
2. pick the numerical reference: the same target in float64 when it runs there (inputs and
   weights cast), otherwise the target itself in ``d``;
3. compare the analytic VJP with finite differences of the reference, along the cheapest exact
   route: per element for elementwise targets (after a random probe confirms the Jacobian is
   diagonal), per batch row for batch-independent ones (after a probe confirms rows are
   independent), and along one random direction for the rest (weights, broadcast parameters).

Each route costs a constant number of target calls, independent of the number of elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _all_finite, _f64, _index, _signed, _smallest_normal, _tail
from ._declared_gradient import DeclarationError, analytic_source, declared_gradient_checked
from ._conditioning import explained_by_rounding
from ._determinism import execute_probing
from ._hints import nonfinite_cause
from ._linearity import check_dy_linearity
from ._mixed import check_policies, normalize_policies
from ._modes import check_modes
from ._numerics import (
    ANALYTIC_ULPS,
    KINK_RELATIVE,
    SAFETY,
    analytic_allowance,
    estimate,
    judge_lines,
    kinks,
    machine_eps,
    rounding_window,
    step,
    within_secants,
)
from ._intent import gradient_option
from ._options import CHECK_DEFAULTS, compared_modes, tolerance
from ._options import order as valid_order
from ._overflow import drop_true_overflows
from ._quiet import own_retracing_silenced
from ._report import Finding, GradcheckError, Report
from ._reproducer import check_reproducer
from ._second_order import check_second_order
from ._training import run_per_training_mode
from ._targets import Target, as_target, weights_set_to

__all__ = ["check", "assert_gradients"]

_OPTIONS = {*CHECK_DEFAULTS, "training", "seed", "name", "reference"}  # check()'s keyword arguments


def check(target: Any, *inputs: Any, elementwise: bool | None = None,
          batch_independent: bool | None = None,
          rtol: float | None = None, atol: float | None = None, seed: int = 0,
          name: str | None = None, reference: Callable[[str], Any] | None = None,
          order: int = 1, modes: Sequence[str] | None = None,
          policies: Sequence[str] = (), domain: tuple[float, float] | None = None,
          gradient: Callable | None = None, training: bool | None = None) -> Report:
    """Check the gradients of ``target`` at ``inputs``.

    Args:
        target: a function of tensors (plain, ``tf.custom_gradient``, ``tf.function``), a
            ``keras.layers.Lambda``, or a Keras ``Layer`` instance (gradients with respect to its
            input and every trainable weight).
        *inputs: arrays or tensors; floating ones are differentiated. A layer's inputs are cast
            to its compute dtype.
        elementwise: True declares that the output has the first input's shape and element i
            depends only on element i of each input of that shape (a finding if not); None
            (default) infers it: a probe picks the per-element route where it holds, and
            nothing is reported where it does not.
        batch_independent: True declares that rows along axis 0 of the output depend only on
            the same row of the input (a finding if not); None (default) infers it the same
            way, False never uses the per-row route.
        rtol, atol: replace the derived tolerance by ``atol + rtol * |numerical|``.
        seed: seeds the random cotangent and directions; same seed, same verdict.
        name: the target's name in messages (default: its ``__qualname__``).
        reference: for a layer, a function building the same layer in a given dtype name
            (e.g. a factory, or ``lambda dtype: MyLayer(dtype=dtype)``); its float64 build, with
            the layer's weights copied in, is the numerical reference. Without it, the layer is
            rebuilt from ``get_config()``, and where that fails its own dtype is used.
        order: 2 also checks the gradient of the gradient (see ``_second_order.py``).
        modes: execution modes whose output and gradients must agree with eager, from
            ``("eager", "function", "xla")``; default ``("eager", "function")``; ``()`` turns
            it off (see ``_modes.py``).
        policies: for a layer, Keras mixed-precision policies to check it under, e.g.
            ``("mixed_float16", "mixed_bfloat16")`` (see ``_mixed.py``).
        domain: ``(low, high)`` where the first input is defined: finite differences never
            step outside it (one-sided at its ends). ``None``: no bound.
        gradient: an intended surrogate gradient ``(x, dy, *args) -> expected VJP``,
            compared with the analytic one instead of finite differences (see
            ``_declared_gradient.py``).
        training: for a layer whose ``call`` accepts ``training``: None checks
            ``training=False`` and ``training=True`` (see ``_training.py``), a bool that one.

    Returns:
        A :class:`Report`; ``report.ok`` is True when nothing was found.

    Raises:
        TypeError: the target is not callable, returns something other than one tensor, or no
            input is floating.
        ValueError: an input contains NaN/Inf, or a tolerance is negative.
    """
    tgt = as_target(target, name, reference)
    args = _as_tensors(tgt, inputs)
    try:
        rtol, atol = tolerance("rtol", rtol), tolerance("atol", atol)
        beyond = {"batch_independent": batch_independent, "order": valid_order(order),
                  "modes": compared_modes(modes),
                  "policies": normalize_policies(policies, tgt),
                  "gradient": gradient_option(gradient, order), "training": training,
                  "domain": None if domain is None else (float(domain[0]), float(domain[1]))}
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc) if str(exc).startswith("gradcheck:") else f"gradcheck: {exc}") from None
    with own_retracing_silenced():
        return run_per_training_mode(tgt, args, training, lambda t, **overrides: _Run(
            t, args, elementwise, rtol=rtol, atol=atol, seed=seed, **{**beyond, **overrides},
            overridden=tuple(k for k, v in overrides.items() if v != beyond.get(k))))


def assert_gradients(target: Any, *inputs: Any, **options: Any) -> None:
    """Like :func:`check`, but raise :class:`GradcheckError` (an AssertionError) on findings."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"gradcheck: unknown option(s) {sorted(unknown)}; "
                        f"valid options are {sorted(_OPTIONS)}")
    report = check(target, *inputs, **options)
    if not report.ok:
        raise GradcheckError(report)


# --------------------------------------------------------------------------------------------
# Inputs


def _as_tensors(tgt: Target, inputs: Sequence[Any]) -> list[tf.Tensor]:
    if not inputs:
        raise TypeError(f"gradcheck: no inputs given for {tgt.name}; pass at least one array, "
                        f"e.g. gradcheck.check({tgt.name}, np.linspace(-3, 3, 7))")
    out = []
    for i, value in enumerate(inputs):
        try:
            tensor = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"gradcheck: input {i} of {tgt.name} is not convertible to a "
                            f"tensor ({type(value).__name__}): {exc}") from None
        if tensor.dtype.is_floating and not _all_finite(_f64(tensor)):
            raise ValueError(f"gradcheck: input {i} of {tgt.name} contains NaN or Inf; "
                             f"gradients are checked at finite inputs only")
        out.append(tensor)
    layer_dtype = getattr(tgt.layer, "compute_dtype", None)
    if layer_dtype:
        out = [tf.cast(t, layer_dtype) if t.dtype.is_floating else t for t in out]
    if not any(t.dtype.is_floating for t in out):
        raise TypeError(f"gradcheck: no floating-point input for {tgt.name}; got dtypes "
                        f"{[t.dtype.name for t in out]}")
    return out


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class _Param:
    """One differentiated quantity: a floating input or a weight."""

    label: str
    value: np.ndarray             # float64 copy of its value
    dtype: tf.DType
    is_weight: bool
    arg_index: int = -1           # position among the target's inputs
    weight: Any = None            # the tf.Variable, for weights
    grad: np.ndarray | None = None  # analytic VJP (float64), None when missing or unusable
    grad_missing: bool = False


@dataclass
class _Run:
    tgt: Target
    args: list
    elementwise: bool | None        # None: not declared, inferred by the probes
    batch_independent: bool | None
    rtol: float | None
    atol: float | None
    seed: int
    order: int = 1                   # beyond first order (issue 7): see check()
    modes: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    domain: tuple[float, float] | None = None  # of the first input: steps stay inside
    gradient: Callable | None = None  # declared surrogate gradient (issue 15)
    training: bool | None = None      # as passed to check(), for the reproducer
    structure_only: bool = False      # stochastic training=True: no value comparisons
    overridden: tuple[str, ...] = ()  # options set by the training run, not by the caller
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.dtype = next(a.dtype for a in self.args if a.dtype.is_floating)
        self.report = Report(target=self.tgt.name, dtype=self.dtype.name)
        self.inputs_shown = None
        self.cut_by_domain = False  # a finite-difference sample fell outside the domain
        self.analytic = analytic_source(self.tgt.fn)  # "autodiff" or "your grad fn"

    def add(self, kind: str, message: str, **details: Any) -> None:
        if self.inputs_shown is None:  # built on the first finding: tolist() is not free
            self.inputs_shown = _plain_inputs(self.tgt, self.args, self.dtype)
            self.report.reproducer = check_reproducer(self.tgt, self.args, self._options())
        self.report.findings.append(Finding(kind, f"{self.tgt.name}: {message}",
                                            self.inputs_shown, details))

    def _options(self) -> dict[str, Any]:
        """check()'s options, for the reproducer (modes: None where they are the default);
        those a training run set itself are left out."""
        options = {name: getattr(self, name) for name in (*CHECK_DEFAULTS, "training", "seed")
                   if name not in self.overridden}
        if options.get("modes") == compared_modes(None):
            options["modes"] = None
        return options

    # ---- 1. forward and backward in the input's dtype

    def execute(self) -> None:
        if self.structure_only:  # stochastic training=True: shapes, dtypes and NaN/Inf only
            self.forward_backward()
            return
        execute_probing(self)

    def run_checks(self, noisy: bool) -> None:
        """Every check after the forward pass; a noisy target's modes are not compared."""
        check_dy_linearity(self)
        if self.choose_reference():
            try:
                self.check_nonfinite_output()
                with declared_gradient_checked(self):
                    self.check_gradients()
            except (_UsageError, DeclarationError):
                raise
            except Exception as exc:  # noqa: BLE001 - the target failed at a nearby input
                self.add("error", f"raised {type(exc).__name__} when evaluated for finite "
                         f"differences, within {2 * self.h:.2g} x max(1, |x|) of the input "
                         f"below: {exc}", exception=type(exc).__name__,
                         traceback_tail=_tail(exc))
                return
            if self.order == 2:
                check_second_order(self)
        if self.modes and not noisy:  # tf.function (and XLA, another device) agree with eager
            check_modes(self)
        if self.policies:
            check_policies(self)

    def forward_backward(self) -> bool:
        floats = [i for i, a in enumerate(self.args) if a.dtype.is_floating]
        try:
            with tf.GradientTape(persistent=True) as tape:
                for i in floats:
                    tape.watch(self.args[i])
                y = self.tgt(self.args)
            y = self._as_output(y)
            watched = [v for v in tape.watched_variables() if v.trainable]
        except _UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - the target's own failure is a finding
            self.add("error", f"raised {type(exc).__name__} when called: {exc}",
                     exception=type(exc).__name__, traceback_tail=_tail(exc))
            return False
        self.y = y
        self.y64 = _f64(y)
        tracked = self.tgt.tracked_weights()
        weights = list(tracked or [])
        weights += [v for v in watched if all(v is not w for w in weights)]
        if tracked is not None:
            for v in watched:
                if all(v is not w for w in tracked):
                    self.add("untracked_variable",
                             f"variable {v.name!r} is used by the layer but is not in "
                             f"layer.trainable_weights, so an optimizer never trains it; create "
                             f"it with self.add_weight(...) in build() or __init__",
                             variable=v.name)
        self.params = [_Param(f"input {self._arg_label(i)}", _f64(self.args[i]),
                              self.args[i].dtype, False, arg_index=i) for i in floats]
        self.params += [_Param(f"weight {w.name!r}", _f64(w), w.dtype, True, weight=w)
                        for w in weights]
        if not self.check_output_structure():
            return False
        self.v = _signed(self.rng, y.shape.as_list())
        sources = [self.args[p.arg_index] if not p.is_weight else p.weight for p in self.params]
        try:
            grads = tape.gradient(y, sources, output_gradients=tf.constant(self.v, y.dtype))
        except Exception as exc:  # noqa: BLE001
            self.add("error", f"raised {type(exc).__name__} in the backward pass: {exc}",
                     exception=type(exc).__name__, traceback_tail=_tail(exc))
            return False
        self.tape, self.sources = tape, sources
        for p, g in zip(self.params, grads):
            self.check_gradient_structure(p, g)
        return True

    def _as_output(self, y: Any) -> tf.Tensor:
        if isinstance(y, np.ndarray):
            y = tf.convert_to_tensor(y)
        if isinstance(y, (tf.Tensor, tf.Variable)) and not isinstance(y, tf.SparseTensor):
            return tf.convert_to_tensor(y)
        hint = ""
        if isinstance(y, (tuple, list)):
            hint = (f"; it returned a {type(y).__name__} of {len(y)}: wrap it so that it returns "
                    f"one tensor, e.g. lambda x: {self.tgt.name}(x)[0]")
        raise _UsageError(f"gradcheck: {self.tgt.name} must return one tensor, got "
                          f"{type(y).__name__}{hint}")

    def check_output_structure(self) -> bool:
        y, x = self.y, self.args[self.params[0].arg_index]
        if y.dtype != self.dtype:
            self.add("dtype_mismatch",
                     f"output dtype is {y.dtype.name} for {self.dtype.name} input; expected "
                     f"{self.dtype.name} (a hard-coded cast or constant of another dtype?)",
                     expected=self.dtype.name, found=y.dtype.name)
        if not y.dtype.is_floating:
            return False
        if self.elementwise is True and y.shape != x.shape:
            self.add("shape_mismatch",
                     f"output shape {y.shape.as_list()} differs from input shape "
                     f"{x.shape.as_list()}, but the target is declared elementwise",
                     expected=x.shape.as_list(), found=y.shape.as_list())
            return False
        if (self.batch_independent is True and x.shape.rank and
                (not y.shape.rank or y.shape[0] != x.shape[0])):
            self.add("shape_mismatch",
                     f"output shape {y.shape.as_list()} does not keep the batch axis of input "
                     f"shape {x.shape.as_list()} (axis 0 of size {x.shape[0]})",
                     expected_batch=x.shape[0], found=y.shape.as_list())
            return False
        return True

    def check_gradient_structure(self, p: _Param, g: Any) -> None:
        if g is None:
            p.grad_missing = True
            return
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        if g.shape != p.value.shape:
            self.add("shape_mismatch",
                     f"gradient for {p.label} has shape {g.shape.as_list()}, expected "
                     f"{list(p.value.shape)} (the custom gradient returns the wrong shape?)",
                     param=p.label, expected=list(p.value.shape), found=g.shape.as_list())
            return
        if g.dtype != p.dtype:
            self.add("dtype_mismatch",
                     f"gradient for {p.label} has dtype {g.dtype.name}, expected {p.dtype.name}",
                     param=p.label, expected=p.dtype.name, found=g.dtype.name)
            return
        grad = _f64(g)
        if _all_finite(grad):
            p.grad = grad
            return
        bad = ~np.isfinite(grad)
        if _all_finite(self.y64):
            idx = _index(np.argmax(bad), grad.shape)
            cause = nonfinite_cause(self)  # only what the graph shows (see _hints.py)
            self.add("nonfinite_gradient",
                     f"gradient for {p.label} is {grad.flat[np.argmax(bad)]} at index {idx} "
                     f"although the output is finite ({int(bad.sum())} / {bad.size} entries)"
                     + (f"; {cause}" if cause else ""),
                     param=p.label, index=list(idx), count=int(bad.sum()),
                     **self._at(p, np.argmax(bad)))
            return
        p.grad = grad

    # ---- 2. the numerical reference

    def choose_reference(self) -> bool:
        """Prefer float64: its finite differences are ~1e-10 accurate, so the tolerance is set
        by the analytic side's dtype and far smaller bugs show."""
        self.ref, self.ref_weights, self.ref_dtype = self.tgt, [p.weight for p in self.params
                                                                if p.is_weight], self.dtype
        self.f0 = None  # the reference output at the input itself
        self.ref_args = None  # the inputs cast to the reference dtype, made on first use
        self.v_size = None  # |v| max(1, |f0|), the scale of phi's rounding, made on first use
        if self.dtype != tf.float64:
            found = self.tgt.float64_reference(self.args, self.ref_weights, self.y.shape)
            if found is not None:
                self.ref, self.ref_weights, y = found
                self.ref_dtype, self.f0 = tf.float64, _f64(y)
        self.report.reference_dtype = self.ref_dtype.name
        self.low_precision = self.ref_dtype != self.dtype
        # A target that computes in a lower precision than it claims (output dtype mismatch)
        # carries that precision's rounding into every difference.
        precision = self.ref_dtype.name
        if not self.low_precision:
            precision = max((precision, self.y.dtype.name), key=machine_eps)
        self.h = step(precision)
        self.eps_ref = machine_eps(precision)
        self.eps = machine_eps(self.dtype.name)
        self.tiny = _smallest_normal(self.dtype)
        if self.f0 is None and not self.low_precision:
            self.f0 = self.y64  # the reference is the target itself, at the same input
        try:
            if self.f0 is None:
                self.f0 = self.evaluate({}, 0.0)
        except Exception as exc:  # noqa: BLE001
            self.add("error", f"raised {type(exc).__name__} when evaluated for the numerical "
                     f"reference in {self.ref_dtype.name}: {exc}",
                     exception=type(exc).__name__, traceback_tail=_tail(exc))
            return False
        return True

    def _cast_arg(self, a: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        return tf.cast(a, dtype) if a.dtype.is_floating else a

    def evaluate(self, directions: dict[int, np.ndarray], t: float) -> np.ndarray:
        """The reference output (float64 NumPy) at params + t * directions[param index]."""
        if self.ref_args is None:
            self.ref_args = [self._cast_arg(a, self.ref_dtype) for a in self.args]
        args = list(self.ref_args)
        values = masked = None
        for k, d in directions.items():
            p = self.params[k]
            if not p.is_weight:
                moved = np.multiply(d, t)
                moved += p.value
                outside = self.outside_domain(p, moved)
                if outside is not None:  # no sample there: one-sided differences instead
                    self.cut_by_domain = True
                    masked = self.unsampled(outside)
                    if masked is None:
                        return np.full(self.f0.shape, np.nan)
                    moved[masked] = p.value[masked]
                args[p.arg_index] = tf.constant(moved, self.ref_dtype)
        if any(self.params[k].is_weight for k in directions):
            values = [p.value + t * directions[k] if k in directions else p.value
                      for k, p in enumerate(self.params) if p.is_weight]
        with weights_set_to(self.ref_weights, values):
            out = _f64(self.ref(args))
        if masked is None:
            return out
        if masked.shape != out.shape:  # rows of the input -> the same rows of the output
            masked = np.broadcast_to(masked.reshape(len(masked), -1).any(axis=1).reshape(
                (-1,) + (1,) * (out.ndim - 1)), out.shape)
        return np.where(masked, np.nan, out)

    def unsampled(self, outside: np.ndarray) -> np.ndarray | None:
        """The entries (elementwise) or rows (batch-independent) of the first input that stay
        at the input, their outputs unsampled, when ``outside`` leaves the domain; None: all."""
        # Undeclared structure is assumed here as on the cheap routes; their probes confirm it.
        if self.elementwise is not False and outside.shape == self.f0.shape:
            return outside
        if (self.batch_independent is not False and outside.ndim and self.f0.ndim
                and outside.shape[0] == self.f0.shape[0]):
            rows = outside.reshape(len(outside), -1).any(axis=1)
            return np.broadcast_to(rows.reshape((-1,) + (1,) * (outside.ndim - 1)),
                                   outside.shape)
        return None

    def outside_domain(self, p: _Param, moved: np.ndarray) -> np.ndarray | None:
        """Where ``moved`` (values of ``p``) leaves the declared domain, or None."""
        if self.domain is None or p.is_weight or p.arg_index != 0:
            return None
        outside = (moved < self.domain[0]) | (moved > self.domain[1])
        return outside if outside.any() else None

    def samples(self, directions: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        out = {0: self.f0}
        for k in (-2, -1, 1, 2):
            out[k] = self.evaluate(directions, k * self.h)
        return out

    def check_nonfinite_output(self) -> None:
        if _all_finite(self.y64):
            return
        bad = ~np.isfinite(self.y64)
        # Overflow of a value the dtype cannot hold is not a bug; one it can hold is.
        representable = np.isfinite(self.f0) & (np.abs(self.f0) <= float(self.dtype.max))
        if self.low_precision:
            bad &= representable
        else:  # no wider reference: follow each Inf from 0 (see _overflow.py)
            drop_true_overflows(self, bad)
        if bad.any():
            j = int(np.argmax(bad))
            self.add("nonfinite_output",
                     f"output is {self.y64.flat[j]} at index {_index(j, self.y64.shape)} for a "
                     f"finite input ({int(bad.sum())} / {bad.size} entries); the "
                     f"{self.ref_dtype.name} reference there is {self.f0.flat[j]:.6g}"
                     + (" (overflow in an intermediate?)" if self.low_precision else ""),
                     index=list(_index(j, self.y64.shape)), count=int(bad.sum()),
                     reference=self.f0.flat[j], **self._at_output(j))

    # ---- 3. gradients against finite differences

    def check_gradients(self) -> None:
        if not _all_finite(self.y64):
            return  # reported above; finite differences through NaN say nothing
        usable = [k for k, p in enumerate(self.params) if p.grad is not None]
        diag = [k for k in usable if self.elementwise is not False
                and not self.params[k].is_weight and self.params[k].value.shape == self.f0.shape]
        rest = [k for k in usable if k not in diag]
        if diag and not self.confirm_elementwise(diag):
            rest, diag = rest + diag, []
        self.elementwise_confirmed = bool(diag)  # the per-element route applies
        for k in diag:
            self.check_diagonal(k)
        # Batch rows: the primary input and inputs of its very shape. A parameter whose first
        # axis merely has the batch size (4 features, batch of 4) is not batched.
        primary = self.params[0]
        rows = [k for k in rest if self._has_batch_rows() and not self.params[k].is_weight
                and not primary.is_weight and self.params[k].value.shape == primary.value.shape
                and self.params[k].value.ndim and self._batch() >= 1
                and self.params[k].value.shape[0] == self._batch()]
        if rows and self._batch() >= 2 and not self.confirm_batch_independent(rows):
            rows = []
        if rows:
            self.check_rows(rows)
        joint = [k for k in rest if k not in rows]
        if joint:
            self.check_joint(joint)
        for k, p in enumerate(self.params):
            if p.grad_missing:
                self.check_disconnected(k)

    def _has_batch_rows(self) -> bool:
        """Declared batch-independent, or not declared and the output keeps the batch axis."""
        if self.batch_independent is None:
            x = self.params[0].value
            return bool(x.ndim and self.f0.ndim and self.f0.shape[0] == x.shape[0])
        return self.batch_independent

    def _batch(self) -> int:
        return self.f0.shape[0] if self.f0.ndim else 0

    def rounding(self, axes: tuple[int, ...] | None, scale: float | np.ndarray) -> np.ndarray:
        """Absolute rounding error of one evaluation of phi = sum over ``axes`` of v * F:
        eps_ref per entry, of the larger of 1 and |F| (absolute floor for values near 0), times
        the input scale max(1, |x|) (intermediates such as x * g(x) grow with the input)."""
        if self.v_size is None:
            self.v_size = np.abs(self.v) * np.maximum(1.0, np.abs(self.f0))
        per_entry = self.eps_ref * self.v_size * scale
        return per_entry if axes == () else per_entry.sum(axis=axes)

    def override(self, numerical: np.ndarray) -> np.ndarray | None:
        if self.rtol is None and self.atol is None:
            return None
        return (self.atol or 0.0) + (self.rtol or 0.0) * np.abs(numerical)

    def verdict(self, samples, analytic, rounding, allowance, directional=False,
                estimated=None):
        """Judge line problems; ``directional`` lines (sums over several coordinates) that
        cross a kink are inconclusive and pass: the one-sided slopes of a sum of kinks need not
        bracket v.J.u for the subgradient autodiff picked in each coordinate (leaky ReLU at 0
        along a random direction). Fuzzing moves on to other inputs."""
        verdict = judge_lines(samples, self.h, analytic, rounding, allowance, estimated)
        if directional:
            verdict.ok = verdict.ok | verdict.kink
            if self.cut_by_domain:  # one-sided at the domain's end: a kink cannot be told
                verdict.ok |= ~(np.isfinite(samples[-1]) & np.isfinite(samples[1]))
        noise = getattr(self, "noise_relative", 0.0)  # a seeded noisy target: _determinism.py
        if noise:
            with np.errstate(invalid="ignore"):
                verdict.ok |= np.abs(verdict.numerical - analytic) <= noise * np.abs(
                    verdict.numerical)
        tol = self.override(verdict.numerical)
        if tol is not None:
            with np.errstate(invalid="ignore"):
                verdict.ok = (~verdict.finite | verdict.kink
                              | (np.abs(verdict.numerical - analytic) <= tol))
        return verdict

    # -- elementwise: per element, after a probe confirms the Jacobian is diagonal

    def confirm_elementwise(self, diag: list[int]) -> bool:
        """Perturbing all elements at once gives v_j * sum_k J_jk s_k; only a diagonal J makes
        that v_j J_jj s_j. A random direction u tells: v_j (J u)_j must equal
        v_j J_jj u_j = N_j u_j / s_j for every element j."""
        self.diag = {}
        for k in diag:
            p = self.params[k]
            s = np.maximum(1.0, np.abs(p.value))
            smp = self.samples({k: s})
            near_edge = False
            if not (_all_finite(smp[-2]) and _all_finite(smp[2])):
                near_edge = ~(np.isfinite(smp[-2]) & np.isfinite(smp[2])) & (np.abs(p.value) < 1)
                for side in (-2, 2):  # the declared domain's end: one-sided, same step
                    left = self.outside_domain(p, p.value + side * self.h * s)
                    near_edge = near_edge if left is None else near_edge & ~left
            if np.any(near_edge):
                # Next to a domain end (sqrt, log near 0) a step of max(1, |x|) leaves the domain
                # or outruns the function's own scale |x|: step relative to |x| there instead.
                s = np.where(near_edge, np.maximum(np.abs(p.value), np.finfo(float).tiny), s)
                smp = self.samples({k: s})
            phi = {t: self.v * f for t, f in smp.items()}
            rho = self.rounding((), s)
            self.diag[k] = (s, phi, estimate(phi, self.h, rho), rho)
        ratio = {k: _signed(self.rng, self.params[k].value.shape) for k in diag}  # u / s
        for k in diag:  # an element whose probe step would leave the domain stays put, and
            # so does one whose diagonal has no central estimate (one-sided at a domain end)
            ratio[k] = np.where(np.isfinite(self.diag[k][2][0]), ratio[k], 0.0)
            p, reach = self.params[k], self.h * np.abs(ratio[k]) * self.diag[k][0]
            for moved in (p.value - reach, p.value + reach):
                outside = self.outside_domain(p, moved)
                if outside is not None:
                    ratio[k] = np.where(outside, 0.0, ratio[k])
        u = {k: ratio[k] * self.diag[k][0] for k in diag}
        # Two samples suffice: along u the truncation error is that of the diagonal difference
        # scaled by (u/s)^3 (it is c (step)^3 h^2 with step u instead of s), and the diagonal's
        # own error enters the prediction scaled by |u/s|; plus the probe's rounding rho/h.
        probe = np.subtract(self.evaluate(u, self.h), self.evaluate(u, -self.h))
        probe *= self.v
        probe /= 2 * self.h
        with np.errstate(invalid="ignore"):  # an element left put predicts 0, whatever its slope
            predicted = sum(np.where(ratio[k] == 0, 0.0, self.diag[k][2][0] * ratio[k])
                            for k in diag)
            allowance = sum(np.where(r == 0, 0.0, self.diag[k][2][1] * np.abs(r) * (1 + r * r))
                            for k, r in ratio.items())
        scale = (self.diag[diag[0]][0] if len(diag) == 1 else
                 np.max([self.diag[k][0] for k in diag], axis=0))
        with np.errstate(invalid="ignore"):
            tolerance = SAFETY / self.h * self.rounding((), scale) + allowance
            if (np.abs(probe - predicted) <= tolerance).all():
                return True
            bad = ~(np.abs(probe - predicted) <= np.nan_to_num(tolerance, nan=np.inf))
        bad &= np.isfinite(probe)
        if bad.any():
            # At a kink the all-ones and the random step straddle it in different proportions:
            # their central differences need not scale with the step. Not evidence of coupling.
            for k in diag:
                _, phi, _, rho = self.diag[k]
                bad &= ~kinks(phi, rho)
        if not bad.any():
            return True
        if self.elementwise is None:
            return False  # not declared: the probe only chose the route, nothing is promised
        j = int(np.argmax(bad))
        self.add("not_elementwise",
                 f"declared elementwise, but output element {_index(j, self.f0.shape)} depends "
                 f"on other input elements: a random perturbation changed it by "
                 f"{probe.flat[j] / self.v.flat[j]:.6g} per unit step where a "
                 f"diagonal Jacobian predicts {predicted.flat[j] / self.v.flat[j]:.6g}; declare "
                 f"elementwise=False", index=list(_index(j, self.f0.shape)),
                 mismatched=int(bad.sum()), total=int(bad.size))
        return False

    def check_diagonal(self, k: int) -> None:
        p = self.params[k]
        s, phi, estimated, rho = self.diag[k]
        analytic = p.grad * s  # derivative along t of x + t*s: grad . s elementwise
        magnitude = (np.maximum(np.maximum(1.0, np.abs(p.value)), np.abs(self.f0))
                     if self.low_precision else 1.0)
        allowance = analytic_allowance(analytic, self.eps, self.low_precision, magnitude,
                                       self.tiny, self.v, s)
        verdict = self.verdict(phi, analytic, rho, allowance, estimated=estimated)
        ok = verdict.ok
        if ok.all():
            return
        if self.low_precision:
            ok = ok | self.within_rounding_window(k, analytic / s, verdict, allowance / s)
        if self.low_precision and not ok.all():
            ok = ok | explained_by_rounding(self, lambda g: g[k] * s, analytic, verdict)
        self.report_mismatch(p, ~ok, analytic / s, verdict.numerical / s, verdict.bound / s,
                             allowance / s)

    def within_rounding_window(self, k, analytic, verdict, allowance) -> np.ndarray:
        """Accept a low-precision derivative that equals some secant slope of the reference
        over the window of inputs indistinguishable in the low dtype (see
        :func:`rounding_window` and :func:`within_secants`)."""
        p = self.params[k]
        width = rounding_window(self.eps, self.h, p.value, self.f0,
                                np.abs(verdict.numerical / self.v))
        left = self.v * self.evaluate({k: -width}, 1.0)
        right = self.v * self.evaluate({k: width}, 1.0)
        s, phi, _, _ = self.diag[k]
        # f'' from the second difference already sampled: phi(h) - 2 phi(0) + phi(-h) =
        # v f'' (h s)^2.
        curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / (self.h * s) ** 2
        return within_secants(analytic, self.v * self.f0, left, right, width,
                              verdict.numerical / s, verdict.bound / s, allowance, curvature)

    # -- batch rows: per row, after a probe confirms rows are independent

    def confirm_batch_independent(self, rows: list[int]) -> bool:
        """Perturb row 0 only: no other output row may move (forward), and a cotangent on row 0
        only may reach no other input row (backward)."""
        u = {}
        for k in rows:
            d = np.zeros_like(self.params[k].value)
            d[0] = _signed(self.rng, d[0].shape) * np.maximum(1.0, np.abs(self.params[k].value[0]))
            u[k] = d
        delta = self.evaluate(u, self.h) - self.evaluate(u, -self.h)
        # Rows other than 0 see identical inputs: only rounding (2 evaluations) may differ.
        tol = SAFETY * 2 * self.eps_ref * np.maximum(1.0, np.abs(self.f0))
        moved = (np.abs(delta) > tol)[1:]
        found = None
        if moved.any():
            j = int(np.argmax(moved)) + int(np.prod(self.f0.shape[1:], dtype=int))
            found = ("forward", _index(j, self.f0.shape), delta.flat[j] / (2 * self.h))
        else:
            v0 = np.zeros_like(self.v)
            v0[0] = self.v[0]
            sources = [self.args[self.params[k].arg_index] for k in rows]
            grads = self.tape.gradient(self.y, sources,
                                       output_gradients=tf.constant(v0, self.y.dtype))
            for k, g in zip(rows, grads):
                if g is None:
                    continue
                g = _f64(g)
                scale = ANALYTIC_ULPS * self.eps * max(1.0, float(np.max(np.abs(g[0]), initial=0)))
                leak = np.abs(g[1:]) > scale
                if leak.any():
                    j = int(np.argmax(leak)) + int(np.prod(g.shape[1:], dtype=int))
                    found = ("backward", _index(j, g.shape), g.flat[j])
                    break
        if found is None:
            return True
        if self.batch_independent is None:
            return False  # not declared: use the joint route, nothing was promised
        side, idx, size = found
        what = ("output row {r} changed when only input row 0 was perturbed" if side == "forward"
                else "the gradient reached input row {r} from a cotangent on output row 0 only")
        self.add("batch_coupling",
                 f"rows are coupled across the batch axis: {what.format(r=idx[0])} "
                 f"(at index {idx}, {size:.6g} per unit step); a reduction over axis 0? If the "
                 f"coupling is intended, declare batch_independent=False",
                 direction=side, index=list(idx), size=float(size))
        return False

    def check_rows(self, rows: list[int]) -> None:
        u = {k: _signed(self.rng, self.params[k].value.shape) * np.maximum(
            1.0, np.abs(self.params[k].value)) for k in rows}
        axes = tuple(range(1, self.f0.ndim))
        phi = {t: (self.v * f).sum(axis=axes) for t, f in self.samples(u).items()}
        analytic = sum((self.params[k].grad * u[k]).reshape(self._batch(), -1).sum(axis=1)
                       for k in rows)
        scale = np.max([np.maximum(1.0, np.abs(self.params[k].value)).reshape(self._batch(), -1)
                        .max(axis=1) for k in rows], axis=0)
        allowance = sum(self.directional_allowance(k, u[k], row_axes=True) for k in rows)
        rounding = self.rounding(axes, 1.0) * scale
        verdict = self.verdict(phi, analytic, rounding, allowance, directional=True)
        if self.low_precision and not verdict.ok.all():
            verdict.ok = verdict.ok | self.within_line_window(u, axes, analytic, phi, verdict,
                                                              rounding, allowance)
        if self.low_precision and not verdict.ok.all():
            verdict.ok = verdict.ok | explained_by_rounding(self, lambda g: sum(
                (g[k] * u[k]).reshape(self._batch(), -1).sum(axis=1) for k in rows),
                analytic, verdict)
        if not verdict.ok.all():
            b = int(np.argmax(~verdict.ok))
            self.add("gradient_mismatch",
                     f"gradient mismatch in batch row {b}: along a random direction, analytic "
                     f"({self.analytic}) {analytic[b]:.9g} vs numerical (finite differences) "
                     f"{verdict.numerical[b]:.9g} ± {verdict.bound[b] + allowance[b]:.3g}; "
                     f"{int((~verdict.ok).sum())} / {verdict.ok.size} rows mismatched",
                     row=b, analytic=analytic[b], numerical=verdict.numerical[b],
                     bound=verdict.bound[b] + allowance[b],
                     params=[self.params[k].label for k in rows])

    def directional_allowance(self, k: int, u: np.ndarray, row_axes: bool = False):
        """The analytic side's rounding, projected on u: ANALYTIC_ULPS roundings of each |g|
        entry, and in a low dtype also of the terms the gradient is summed from.

        A batch row's gradient entry sums terms of at most |dy| * max(1, |x|) within the row
        (softmax-like reductions weight them by probabilities). A weight or broadcast parameter
        sums over every output it feeds, each term as large as |dy| * max(1, |x|, |f|) times
        one more max(1, |x|): a parameter multiplies the input before the nonlinearity
        (sigmoid(b x), W x), so its chain rule carries that factor (d/db x sigmoid(b x) =
        x^2 s(1 - s), with s(1 - s) rounding to 0 once s rounds to 1). Values below the dtype's
        smallest normal number are unresolvable: |dy| * tiny per term."""
        p = self.params[k]
        per = np.abs(p.grad) * np.abs(u)
        if self.low_precision and row_axes:
            vmax = np.abs(self.v).reshape(self._batch(), -1).max(axis=1)
            vmax = vmax.reshape((-1,) + (1,) * (p.value.ndim - 1))
            per = per + vmax * np.maximum(1.0, np.abs(p.value)) * np.abs(u)
        per = ANALYTIC_ULPS * self.eps * per
        if row_axes:
            return per.reshape(self._batch(), -1).sum(axis=1)
        total = per.sum()
        if self.low_precision:
            size = np.maximum(1.0, np.abs(self.f0))
            primary = self.params[0]
            lever = 1.0
            if not primary.is_weight:
                lever = max(1.0, float(np.max(np.abs(primary.value), initial=0.0)))
                if primary.value.shape == self.f0.shape:
                    size = np.maximum(size, np.abs(primary.value))
            terms = np.abs(self.v) * (ANALYTIC_ULPS * self.eps * size * lever + self.tiny)
            total += np.abs(u).sum() * terms.sum()
        return total

    # -- everything else: one random direction through all remaining params at once

    def check_joint(self, joint: list[int]) -> None:
        u = {k: _signed(self.rng, self.params[k].value.shape) * np.maximum(
            1.0, np.abs(self.params[k].value)) for k in joint}
        phi = {t: np.asarray((self.v * f).sum()) for t, f in self.samples(u).items()}
        analytic = np.asarray(sum(float((self.params[k].grad * u[k]).sum()) for k in joint))
        scale = max(float(np.max(np.maximum(1.0, np.abs(self.params[k].value)), initial=1.0))
                    for k in joint)
        allowance = np.asarray(sum(self.directional_allowance(k, u[k]) for k in joint))
        rounding = self.rounding(None, scale)
        verdict = self.verdict(phi, analytic, rounding, allowance, directional=True)
        if self.low_precision and not verdict.ok.all():
            verdict.ok = verdict.ok | self.within_line_window(u, None, analytic, phi, verdict,
                                                              rounding, allowance)
        if self.low_precision and not verdict.ok.all():
            verdict.ok = verdict.ok | explained_by_rounding(
                self, lambda g: np.asarray(sum(float((g[k] * u[k]).sum()) for k in joint)),
                analytic, verdict)
        if not verdict.ok.all():
            labels = ", ".join(self.params[k].label for k in joint)
            self.add("gradient_mismatch",
                     f"gradient mismatch for {labels}: along a random direction, analytic "
                     f"({self.analytic}) {float(analytic):.9g} vs numerical (finite differences) "
                     f"{float(verdict.numerical):.9g} ± {float(verdict.bound + allowance):.3g}",
                     analytic=float(analytic), numerical=float(verdict.numerical),
                     bound=float(verdict.bound + allowance),
                     params=[self.params[k].label for k in joint])

    def within_line_window(self, u, axes, analytic, phi, verdict, rounding,
                           allowance) -> np.ndarray:
        """Judge a low-precision directional derivative over the window of inputs the low
        dtype cannot tell apart: the low-precision run computes exactly at some point of that
        window. Along x + t u, with each u_i scaled by max(1, |x_i|), ANALYTIC_ULPS roundings
        of every coordinate and of every intermediate of that size are |t| <= w =
        ANALYTIC_ULPS eps (at least the step h).

        Accepted: a slope the reference takes inside the window (the secants over its four
        pieces of width w/2, with the slope's change over half a window, |phi''| w / 2, as
        slack); and, as for a line crossing a kink within 2h, a line whose window holds a
        kink is inconclusive. A tie that rounding creates (sparsemax's x0 - 1 rounding to -1
        in float16) selects the Jacobian of a neighbouring piece, possibly one the line never
        enters. A kink shows as secants of the window that a smooth slope cannot join: their
        second difference exceeds KINK_RELATIVE of their first differences (smooth: O(w)
        times it) plus its own rounding. That second difference is
        (phi_3 - 3 phi_2 + 3 phi_1 - phi_0) / (w/2) over consecutive samples, so it carries
        (1 + 3 + 3 + 1) rho / (w/2); no safety factor, as in kinks(): calling a smooth line
        kinked only makes an already failing line inconclusive."""
        width = max(ANALYTIC_ULPS * self.eps, self.h)
        at = {0.0: phi[0]}
        for t in (-width, -width / 2, width / 2, width):
            at[t] = np.asarray((self.v * self.evaluate(u, t)).sum(axis=axes))
        ts = sorted(at)
        with np.errstate(invalid="ignore", over="ignore"):
            slopes = np.stack([(at[b] - at[a]) / (b - a) for a, b in pairwise(ts)])
            steps = np.abs(np.diff(slopes, axis=0))
            bends = np.abs(np.diff(slopes, n=2, axis=0))
            kink = (bends > KINK_RELATIVE * np.maximum(steps[:-1], steps[1:])
                    + 8 * rounding / (width / 2)).any(axis=0)
        slopes = np.where(np.isfinite(slopes), slopes, np.nan)
        lo = np.fmin(np.nanmin(slopes, axis=0, initial=np.inf), verdict.numerical)
        hi = np.fmax(np.nanmax(slopes, axis=0, initial=-np.inf), verdict.numerical)
        curvature = np.abs(phi[1] - 2 * phi[0] + phi[-1]) / self.h ** 2
        slack = np.nan_to_num(verdict.bound, nan=0.0) + allowance + curvature * width / 2
        return kink | ((analytic >= lo - slack) & (analytic <= hi + slack))

    def check_disconnected(self, k: int) -> None:
        """A None gradient is right only if the output does not depend on the param."""
        p = self.params[k]
        u = _signed(self.rng, p.value.shape) * np.maximum(1.0, np.abs(p.value))
        phi = {t: np.asarray((self.v * f).sum()) for t, f in self.samples({k: u}).items()}
        verdict = judge_lines(phi, self.h, np.asarray(0.0),
                              self.rounding(None, float(np.max(np.maximum(1, np.abs(p.value))))),
                              np.asarray(0.0))
        if not bool(verdict.ok):
            self.add("disconnected_gradient",
                     f"the gradient for {p.label} is None, but the output depends on it "
                     f"(directional derivative {float(verdict.numerical):.6g} ± "
                     f"{float(verdict.bound):.3g}); a tf.stop_gradient, a .numpy() call, or a "
                     f"custom gradient returning None for it?",
                     param=p.label, numerical=float(verdict.numerical))

    # ---- reporting helpers

    def report_mismatch(self, p, bad, analytic, numerical, bound, allowance) -> None:
        if not bad.any():
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.where(bad, np.abs(analytic - numerical) / (bound + allowance + 1e-300), -1)
        j = int(np.nanargmax(excess))
        idx = _index(j, numerical.shape)
        dy = self.v.flat[j]
        self.add("gradient_mismatch",
                 f"gradient mismatch for {p.label} at index {idx}, x = "
                 f"{p.value.flat[j]:.9g} ({self.dtype.name}): analytic ({self.analytic}) "
                 f"{analytic.flat[j]:.9g} vs numerical (finite differences, "
                 f"{self.ref_dtype.name}) {numerical.flat[j]:.9g} ± "
                 f"{bound.flat[j] + allowance.flat[j]:.3g}, upstream dy = {dy:.4g} "
                 f"(derivative {analytic.flat[j] / dy:.9g} vs {numerical.flat[j] / dy:.9g}); "
                 f"{int(bad.sum())} / {bad.size} elements ({100 * bad.mean():.1f}%) mismatched",
                 param=p.label, index=list(idx), x=p.value.flat[j], dy=dy,
                 analytic=analytic.flat[j], numerical=numerical.flat[j],
                 bound=bound.flat[j] + allowance.flat[j],
                 mismatched=int(bad.sum()), total=int(bad.size))

    def _at(self, p: _Param, j: int) -> dict[str, Any]:
        return {"x": p.value.flat[j]} if p.value.shape == self.y64.shape else {}

    def _at_output(self, j: int) -> dict[str, Any]:
        first = self.params[0] if self.params else None
        return self._at(first, j) if first is not None and not first.is_weight else {}

    def _arg_label(self, i: int) -> str:
        names = self.tgt.arg_names
        return names[i] if i < len(names) else f"#{i}"


class _UsageError(TypeError):
    """The target was called fine but is not something gradcheck can check."""


# --------------------------------------------------------------------------------------------
# Small helpers


def _plain_inputs(tgt: Target, args, dtype) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for i, a in enumerate(args):
        name = tgt.arg_names[i] if i < len(tgt.arg_names) else ("x" if i == 0 else f"x{i}")
        shown[name] = _f64(a).tolist() if a.dtype.is_floating else a.numpy().tolist()
    shown["dtype"] = dtype.name
    return shown
