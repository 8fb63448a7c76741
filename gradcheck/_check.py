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
   The routes are in ``_routes.py``, the reference's evaluations in ``_reference.py``. Each
   route costs a constant number of target calls, independent of the number of elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from . import _routes
from ._arrays import (_abs, _all_finite, _backward, _f64, _index, _signed, _smallest_normal,
                      _said, _tail)
from ._conditioning import TwinGradients
from ._declared_gradient import DeclarationError, analytic_source, declared_gradient_checked
from ._determinism import execute_probing
from ._heap import keep_heap
from ._hostile import exited_report
from ._hints import nonfinite_cause
from ._inputs import as_tensors, checkable_input, checked_seed, plain_inputs
from ._linearity import check_dy_linearity, compare_then_linearity
from ._mixed import check_policies, normalize_policies
from ._modes import check_modes
from ._numerics import machine_eps, step
from ._options import CHECK_DEFAULTS, CheckOptions, compared_modes
from ._overflow import drop_true_overflows, honest_infinities
from ._singular import diverging_at_singular_points, infinite_slopes, nan_where_defined
from ._quiet import own_retracing_silenced
from ._records import Declared, Evaluations, ForwardBackward, Param, Reference
from ._reference import ReferenceCalls
from ._report import Finding, GradcheckError, Report
from ._reproducer import check_reproducer
from ._resolution import finer_than_float32
from ._second_order import check_second_order
from ._targets import Target, as_target
from ._traced_reference import traced_values
from ._training import run_per_training_mode

__all__ = ["check", "check_with", "assert_gradients"]

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
            input is floating; a bad option.
        ValueError: an input contains NaN/Inf, the first is empty or outside ``domain``.
    """
    tgt = as_target(target, name, reference)
    args = as_tensors(tgt, inputs)
    try:
        options = CheckOptions(elementwise, batch_independent, rtol, atol, order, modes,
                               policies, domain, gradient)
        seed = checked_seed(seed, tgt.name)
    except (TypeError, ValueError) as exc:  # said once, with the "gradcheck:" prefix
        text = str(exc) if str(exc).startswith("gradcheck:") else f"gradcheck: {exc}"
        raise type(exc)(text) from None
    checkable_input(tgt, args, options.domain)
    try:
        return check_with(tgt, args, options, seed=seed, training=training)
    except _UsageError as exc:  # raised here: a traceback of two lines, not of gradcheck's
        raise _UsageError(str(exc)) from None


def check_with(tgt: Target, args: list, options: CheckOptions, *, seed: int = 0,
               training: bool | None = None, probe_determinism: bool = True) -> Report:
    """:func:`check` of a resolved target at its input tensors with validated options.
    ``probe_determinism=False`` leaves out the calls that look for a non-deterministic target
    (``_determinism.execute_probing``) where a caller has shown it deterministic already (a
    sweep: two calls at every swept value agreed; its reproducers and fuzzing after it)."""
    keep_heap()  # the next check reuses this one's freed memory (see _heap.py)
    try:
        beyond = {"batch_independent": options.batch_independent, "order": options.order,
                  "modes": compared_modes(options.modes),
                  "policies": normalize_policies(options.policies, tgt),
                  "gradient": options.gradient, "training": training, "domain": options.domain}
    except (TypeError, ValueError) as exc:
        text = str(exc) if str(exc).startswith("gradcheck:") else f"gradcheck: {exc}"
        raise type(exc)(text) from None
    try:
        with own_retracing_silenced():
            return run_per_training_mode(tgt, args, training, lambda t, **overrides: _Run(
                t, args, options.elementwise, rtol=options.rtol, atol=options.atol, seed=seed,
                probe_determinism=probe_determinism, **{**beyond, **overrides},
                overridden=tuple(k for k, v in overrides.items() if v != beyond.get(k))), seed)
    except BaseException as exc:  # noqa: BLE001 - sys.exit(), a BaseException of its own
        return exited_report(tgt, args, exc, {**options.keywords(), "seed": seed})


def assert_gradients(target: Any, *inputs: Any, **options: Any) -> None:
    """Like :func:`check`, but raise :class:`GradcheckError` (an AssertionError) on findings."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"gradcheck: unknown option(s) {sorted(unknown)}; "
                        f"valid options are {sorted(_OPTIONS)}")
    report = check(target, *inputs, **options)
    if not report.ok or report.meta.get("nothing_compared"):  # no gradient compared: no pass
        raise GradcheckError(report)


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
class _Run(ReferenceCalls):
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
    probe_determinism: bool = True    # calls that look for noise (check_with)
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.dtype = next(a.dtype for a in self.args if a.dtype.is_floating)
        self.report = Report(target=self.tgt.name, dtype=self.dtype.name)
        self.inputs_shown = None
        self.cut_by_domain = False  # a finite-difference sample fell outside the domain
        self.stack_samples = True  # until a stacked call fails or disagrees (see stacked())
        self.stacked_calls = 0
        self.analytic = analytic_source(self.tgt.fn)  # "autodiff" or "your grad fn"
        self.elementwise_confirmed = False  # step 3's per-element route applied (self.diag)
        self.twin_gradients = TwinGradients()  # the float64 twin's VJP, made on first use
        # A sweep's run over some entries of its batch: (the batch's shape, their flat
        # indices), so that their random draws are the batch's (_conditioning._draws).
        self.entries: tuple | None = None
        self.noise_relative = 0.0  # a seeded noisy target's allowance (_determinism.probe)
        # Step 1's output once the target was called, and its cotangent once the output's
        # structure was usable (forward_backward).
        self.y64: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.cotangent: tf.Tensor | None = None  # v in the output's dtype, as backward took it

    def add(self, kind: str, message: str, **details: Any) -> None:
        if self.inputs_shown is None:  # built on the first finding: tolist() is not free
            self.inputs_shown = plain_inputs(self.tgt, self.args, self.dtype)
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
            if self.forward_backward():
                self.skip("no gradient compared: its random draws differ between calls")
            return
        execute_probing(self)

    def run_checks(self, noisy: bool) -> None:
        """Every check after the forward pass; a noisy target's modes are not compared."""
        if self.gradient is not None:  # its comparison cannot see how the VJP scales with dy
            self.check_linearity()
            compared = self.compare()
        else:
            compared = compare_then_linearity(self)
        if compared is None:
            return  # the target raised next to the input: reported, nothing more to learn
        if compared and self.order == 2:
            check_second_order(self.first_order_record(), self.reference_record(),
                               add=self.add, skip=self.skip)
        if self.modes and not noisy:  # tf.function (and XLA, another device) agree with eager
            check_modes(self.first_order_record(), self.reference_record(), self.modes,
                        add=self.add, twin=self.twin_gradients)
        if self.policies:
            check_policies(self.first_order_record(), self.policies, add=self.add,
                           skip=self.skip)

    def check_linearity(self) -> bool:
        """``_linearity.check_dy_linearity`` on step 1's results; a param it flags is not
        compared further (its grad dropped). True when it flagged one."""
        flagged = check_dy_linearity(self.first_order_record(), self.vjp, add=self.add)
        for k in flagged:
            self.params[k].grad = None
        return bool(flagged)

    def vjp(self, v: np.ndarray, params: Sequence[int] | None = None) -> list:
        """The gradients of step 1's output for the cotangent ``v``, on its recorded tape: of
        the params ``params`` (indices), or of every param."""
        sources = self.sources if params is None else [self.sources[k] for k in params]
        return _backward(self.tape, self.y, sources, tf.constant(v, self.y.dtype))

    def first_order_record(self) -> ForwardBackward:
        """Step 1's results as the checks after the first-order one read them (frozen)."""
        params = tuple(Param(p.label, p.value, p.dtype, p.is_weight, p.arg_index, p.weight,
                             p.grad, p.grad_missing) for p in self.params)
        return ForwardBackward(self.tgt, tuple(self.args), self.dtype, self.y64, self.y.dtype,
                               self.v, params, self.rng, self.seed)

    def reference_record(self) -> Reference:
        """Step 2's reference, and step 3's judge and per-element steps (frozen)."""
        diagonal = ({k: s for k, (s, *_) in self.diag.items()}
                    if self.elementwise_confirmed else {})
        return Reference(self.ref, tuple(self.ref_weights), self.ref_dtype, self.f0, self.h,
                         self.eps_ref, self.verdict, diagonal)

    def skip(self, note: str) -> None:  # a check that could not run: meta["skipped"]
        self.report.meta.setdefault("skipped", []).append(note)

    def compare(self) -> bool | None:
        """Steps 2 and 3: the reference, then the gradients against it. False where there is
        no reference, None where the target raised for finite differences (both reported)."""
        self.inconclusive = False  # set where an entry is not judged by central differences
        if not self.choose_reference():
            return False
        try:
            mark = len(self.report.findings)
            self.check_nonfinite_output()
            if not _all_finite(self.y64) and len(self.report.findings) == mark:
                self.skip_nonfinite_output()
            with declared_gradient_checked(self):
                self.check_gradients()
        except (_UsageError, DeclarationError):
            raise
        except Exception as exc:  # noqa: BLE001 - the target failed at a nearby input
            self.add("error", f"raised {type(exc).__name__} when evaluated for finite "
                     f"differences, within {2 * self.h:.2g} x max(1, |x|) of the input "
                     f"below: {_said(exc)}", exception=type(exc).__name__,
                     traceback_tail=_tail(exc))
            return None
        return True

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
            self.add("error", f"raised {type(exc).__name__} when called: {_said(exc)}",
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
            self.cotangent = tf.constant(self.v, y.dtype)
            grads = _backward(tape, y, sources, self.cotangent)
        except Exception as exc:  # noqa: BLE001
            self.add("error", f"raised {type(exc).__name__} in the backward pass: {_said(exc)}",
                     exception=type(exc).__name__, traceback_tail=_tail(exc))
            return False
        self.tape, self.sources = tape, sources
        self.nonfinite = []  # (param, gradient): NaN/Inf behind a finite output
        for p, g in zip(self.params, grads):
            self.check_gradient_structure(p, g)
        self.report_nonfinite_gradients()
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

    def check_gradient_structure(self, p: _Param, g: Any, grad: np.ndarray | None = None) -> None:
        """Record ``p``'s gradient ``g`` (``grad``: its float64 copy, where made already), or
        the finding that it has no usable one."""
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
        grad = _f64(g) if grad is None else grad
        if _all_finite(grad):
            p.grad = grad
            return
        if _all_finite(self.y64):
            self.nonfinite.append((p, grad))  # judged once every param's gradient is known
            return
        p.grad = grad

    def report_nonfinite_gradients(self) -> None:
        """A ``nonfinite_gradient`` for each param step 1 found NaN/Inf behind a finite
        output, but those whose infinite entries are the overflow of a true value the dtype
        cannot hold or the derivative's infinite value (``_overflow.honest_infinities``):
        those are not compared, and ``meta["skipped"]`` says so."""
        notes = honest_infinities(self, self.nonfinite)
        for (p, grad), note in zip(self.nonfinite, notes):
            if note:
                self.skip(note)
                continue
            bad = ~np.isfinite(grad)
            idx = _index(np.argmax(bad), grad.shape)
            cause = nonfinite_cause(self)  # only what the graph shows (see _hints.py)
            self.add("nonfinite_gradient",
                     f"gradient for {p.label} is {grad.flat[np.argmax(bad)]} at index {idx} "
                     f"although the output is finite ({int(bad.sum())} / {bad.size} entries)"
                     + (f"; {cause}" if cause else ""),
                     param=p.label, index=list(idx), count=int(bad.sum()),
                     **self._at(p, np.argmax(bad)))
        self.nonfinite = []

    # ---- 2. the numerical reference

    def choose_reference(self) -> bool:
        """Prefer float64: its differences are ~1e-10 accurate, far smaller bugs show."""
        self.ref, self.ref_weights, self.ref_dtype = self.tgt, [p.weight for p in self.params
                                                                if p.is_weight], self.dtype
        self.f0 = None  # the reference output at the input itself
        self.ref_args = None  # the inputs cast to the reference dtype, made on first use
        self.v_size = None  # |v| max(1, |f0|), the scale of phi's rounding, made on first use
        self.values = self.tgt  # what finite differences call (_reference.py)
        coarse = False  # a float64 twin that computes in float32 (a cast inside)
        if self.dtype != tf.float64:
            found = self.tgt.float64_reference(self.args, self.ref_weights, self.y.shape, self.y)
            coarse = found is not None and not finer_than_float32(self.tgt, self.args, found)
            if found is not None and not (coarse and self.dtype == tf.float32):
                self.ref, self.ref_weights, y = found
                self.ref_dtype = tf.float64
                traced = traced_values(self.ref, self.reference_args, y)
                self.values, self.f0 = (self.ref, _f64(y)) if traced is None else traced
        else:  # a float64 target that casts to float32 inside is float32's precision too
            coarse = not finer_than_float32(self.tgt, self.args, (self.tgt, [], self.y))
        self.report.reference_dtype = self.ref_dtype.name
        self.low_precision = self.ref_dtype != self.dtype
        # A lower precision than claimed (a cast inside: _resolution.py) rounds everywhere.
        precision = "float32" if coarse else self.ref_dtype.name
        if not self.low_precision:
            precision = max((precision, self.y.dtype.name), key=machine_eps)
        self.h = step(precision)
        self.eps_ref = machine_eps(precision)
        self.eps, self.tiny = machine_eps(self.dtype.name), _smallest_normal(self.dtype)
        if self.f0 is None and not self.low_precision:
            self.f0 = self.y64  # the reference is the target itself, at the same input
        try:
            if self.f0 is None:
                self.f0 = self.evaluate({}, 0.0)
        except Exception as exc:  # noqa: BLE001
            self.add("error", f"raised {type(exc).__name__} when evaluated for the numerical "
                     f"reference in {self.ref_dtype.name}: {_said(exc)}",
                     exception=type(exc).__name__, traceback_tail=_tail(exc))
            return False
        return True

    def skip_nonfinite_output(self) -> None:
        """Say that no gradient is compared where the output has NaN/Inf entries that are not
        findings (the reference is not finite there either: outside the function's domain, or
        a true overflow); ``meta["nothing_compared"]`` where no entry is finite at all."""
        bad = ~np.isfinite(self.y64)
        self.skip(f"no gradient compared: the output is NaN/Inf at {int(bad.sum())} / "
                  f"{bad.size} entries, where the {self.ref_dtype.name} reference is not finite "
                  f"either (outside the function's domain?)")
        if bad.all():
            self.report.meta["nothing_compared"] = True

    def check_nonfinite_output(self) -> None:
        if _all_finite(self.y64):
            return
        bad = ~np.isfinite(self.y64)
        # Overflow of a value the dtype cannot hold is not a bug; one it can hold is.
        representable = np.isfinite(self.f0) & (np.abs(self.f0) <= float(self.dtype.max))
        if self.low_precision:
            bad &= representable | nan_where_defined(self, bad & np.isnan(self.f0))
        else:  # no wider reference: follow each Inf from 0 (see _overflow.py)
            drop_true_overflows(self, bad)
        for k in range(len(self.params)):  # infinite at 0, as the target is (_singular.py)
            if bad.any() and np.isinf(self.y64[bad]).all():
                bad &= ~diverging_at_singular_points(self, k, bad, False)
        if bad.any():
            j = int(np.argmax(bad))
            why = " (overflow in an intermediate?)" if self.low_precision else ""
            if self.low_precision and np.isnan(self.f0.flat[j]):  # nan_where_defined's
                why = (" too, the same formula: the input is inside the declared domain, or "
                       "the function has a finite limit there (a 0/0 or Inf - Inf, as "
                       "sin(x) / x at 0); compute that point apart, e.g. with tf.where")
            self.add("nonfinite_output",
                     f"output is {self.y64.flat[j]} at index {_index(j, self.y64.shape)} for a "
                     f"finite input ({int(bad.sum())} / {bad.size} entries); the "
                     f"{self.ref_dtype.name} reference there is {self.f0.flat[j]:.6g}" + why,
                     index=list(_index(j, self.y64.shape)), count=int(bad.sum()),
                     reference=self.f0.flat[j], **self._at_output(j))

    def rounding(self, axes: tuple[int, ...] | None, scale: float | np.ndarray) -> np.ndarray:
        """Absolute rounding error of one evaluation of phi = sum over ``axes`` of v * F:
        eps_ref per entry, of the larger of 1 and |F| (absolute floor for values near 0), times
        the input scale max(1, |x|) (intermediates such as x * g(x) grow with the input)."""
        if self.v_size is None:
            size = _abs(self.f0)
            np.maximum(size, 1.0, out=size)
            size *= np.abs(self.v)
            self.v_size = size
        per_entry = np.multiply(self.v_size, self.eps_ref)
        per_entry *= scale
        return per_entry if axes == () else per_entry.sum(axis=axes)

    # ---- 3. gradients against finite differences, in _routes.py, on the run's records

    def check_gradients(self) -> None:
        found = _routes.compare(self.first_order_record(), self.reference_record(),
                                self.evaluations(), self.declared(), add=self.add, vjp=self.vjp)
        self.elementwise_confirmed, self.inconclusive = found.elementwise, found.inconclusive
        self.diag = found.samples

    def evaluations(self) -> Evaluations:
        """Step 3's calls of the reference, on this run's state, and its shared caches."""
        return Evaluations(self.evaluate, self.samples, self.stacked, self.rounding,
                           self.outside_domain, self.steps_at_ends,
                           lambda: self.stacked_calls,
                           self.twin_gradients, self.entries, infinite_slopes(self))

    def declared(self) -> Declared:
        """What the caller declared, as step 3 reads it (frozen)."""
        return Declared(self.elementwise, self.batch_independent, self.domain)

    def verdict(self, samples, analytic, rounding, allowance, directional=False,
                estimated=None, step=None):
        """``_routes.judge`` with this run's step (or ``step``), domain cut, noise, rtol/atol."""
        return _routes.judge(samples, analytic, rounding, allowance, directional, estimated,
                             h=self.h if step is None else step,
                             cut_by_domain=self.cut_by_domain,
                             noise=self.noise_relative, rtol=self.rtol, atol=self.atol)

    def confirm_elementwise(self, diag: list[int]) -> bool:
        """The per-element route's probe alone (``_declared_gradient``'s structure check)."""
        confirmed, self.diag = _routes.confirm_elementwise(
            self.first_order_record(), self.reference_record(), self.evaluations(),
            self.declared(), diag, add=self.add)
        return confirmed

    def confirm_batch_independent(self, rows: list[int]) -> bool:
        """The per-row route's probe alone (``_declared_gradient``'s structure check)."""
        return _routes.confirm_batch_independent(
            self.first_order_record(), self.reference_record(), self.evaluations(),
            self.declared(), rows, vjp=self.vjp, add=self.add)

    # ---- reporting helpers

    def _at(self, p: _Param, j: int) -> dict[str, Any]:
        return {"x": p.value.flat[j]} if p.value.shape == self.y64.shape else {}

    def _at_output(self, j: int) -> dict[str, Any]:
        return self._at(self.params[0], j) if self.params and not self.params[0].is_weight else {}

    def _arg_label(self, i: int) -> str:
        return self.tgt.arg_names[i] if i < len(self.tgt.arg_names) else f"#{i}"


class _UsageError(TypeError):
    """The target was called fine but is not something gradcheck can check."""
