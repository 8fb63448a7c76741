"""Fuzzing: check a declared target at many Hypothesis-drawn inputs and shrink what fails.

One fuzz run is one Hypothesis test, run in-process: ``given(inputs_for(declaration, dtype))``
wraps a function that calls :func:`gradcheck.check` on each drawn input and raises when the
check finds something, so Hypothesis shrinks the input to a minimal failing one and replays it
last. The report of that final replay is what :func:`fuzz` returns, with the run's facts in
``Report.meta``: ``examples`` (inputs checked, shrinking included), ``kinds_seen`` (over every
failing input), ``hypothesis_blob`` (the ``@reproduce_failure(...)`` line), ``seed`` (None when
the profile is derandomized), ``duration_s`` and ``modes_compared`` (the examples whose check
compared execution modes: those that can show something new, see ``_mode_sample.py``).

The target's own exceptions are findings of kind "error" from check(); fuzzing knows more and
reclassifies them: an error for some input shapes while others run is a ``shape_mismatch``, an
error in this dtype on an input that runs when cast to float32 or float64 a ``dtype_mismatch``.
A target gradcheck cannot check at all (check() raises TypeError/ValueError) ends the run at
once with that error: there is nothing to shrink.

Hypothesis's own settings are honoured, not re-invented: the active profile (``derandomize``,
``max_examples``, the database) and ``--hypothesis-seed`` under pytest apply, since both are
global to Hypothesis. Each target and dtype gets its own example-database key, so a failure
found for one item is replayed first for that item on the next run.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis.errors import Flaky
from hypothesis.reporting import with_reporter

from ._arrays import _digest, _said, _seed_of, _shapes, _shapes_text, _total_size
from ._declare import Registered
from ._fuzz_target import dtype_arg, fitted_to_instance, resolve_target
from ._global_state import restored_global_state
from ._hypothesis_run import hypothesis_test, seed_used
from ._mode_sample import ModeSample
from ._options import DTYPES, CheckOptions, check_options
from ._reproducer import declared_reproducer
from ._hostile import (blob_of, failure_report, flaky_text, intermittent, nothing_compared,
                       numpy_raising, sweep_failure, timeout_message)
from ._weight_moves import WeightMoves, weights_code
from ._report import KINDS, Finding, Report
from .strategies import inputs_for

__all__ = ["fuzz", "fuzz_registered"]



def fuzz(target: Any, *, dtype: str | None = None, max_examples: int | None = None,
         hypothesis_seed: int | None = None, timeout: float | None = None,
         seed: int | None = None, **declaration_options: Any) -> Report:
    """Fuzz the gradients of ``target`` with Hypothesis and return the minimal failure found.

    The declaration is the one ``target`` was registered with by ``@gradcheck.activation`` or
    ``@gradcheck.layer`` (if any), updated with ``declaration_options``; an undeclared target is
    fuzzed as an activation (a Keras Layer class or instance: as a layer).

    Args:
        target: a function of tensors, a Keras Layer subclass (built with ``init``), a Layer
            instance, or a declared target.
        dtype: one dtype to fuzz in; by default every declared dtype in turn, stopping at the
            first that fails.
        max_examples: examples per dtype; beats the declaration's ``max_examples``, which beats
            the active Hypothesis profile.
        hypothesis_seed: Hypothesis's seed (default: Hypothesis's own choice, pytest's
            ``--hypothesis-seed``, or the derandomized profile). ``seed`` is its deprecated
            spelling (it warns): in gradcheck, ``seed`` names gradcheck's own random draws.
            Each input's cotangents are seeded from the input itself, so a fuzz run is
            reproduced by its Hypothesis seed alone.
        timeout: seconds each dtype may take before it stops with a ``timeout`` finding;
            beats the declaration's ``timeout``; ``None`` and ``0``: no limit.
        **declaration_options: fields of :class:`gradcheck._declare.Declaration`, e.g.
            ``domain=(-100, 100)``, ``input_shape=(None, 4)``, ``args={"a": (0.5, 2.0)}``.

    Returns:
        The :class:`Report` of the minimal failing input (findings, reproducer, meta), or a
        passing report whose ``meta["examples"]`` counts the inputs checked.

    Raises:
        TypeError, ValueError: an unknown or impossible option, or a target gradcheck cannot
            check (e.g. it returns a tuple); raised at once rather than shrunk.
    """
    if seed is not None:
        warnings.warn("gradcheck.fuzz(seed=...) is deprecated and will be removed in the next "
                      "release; use hypothesis_seed=... (seed= names gradcheck's own random "
                      "draws, e.g. check(seed=))", DeprecationWarning, stacklevel=2)
        hypothesis_seed = seed if hypothesis_seed is None else hypothesis_seed
    entry, is_instance = resolve_target(target, declaration_options)
    dtypes = (dtype_arg(dtype),) if dtype is not None else entry.declaration.dtypes
    examples = max_examples if max_examples is not None else entry.declaration.max_examples
    limit = timeout if timeout is not None else entry.declaration.timeout
    reports = []
    for name in dtypes:
        report = _Fuzz(entry, name, examples, hypothesis_seed, None,
                       instance=target if is_instance else None, timeout=limit).run()
        if not report.ok:
            return report
        reports.append(report)
    if len(reports) == 1:
        return reports[0]
    return Report(target=entry.qualified, meta={
        "examples": sum(r.meta["examples"] for r in reports), "kinds_seen": [],
        "hypothesis_blob": None, "seed": reports[0].meta["seed"],
        "duration_s": sum(r.meta["duration_s"] for r in reports), "dtypes": list(dtypes)})


def fuzz_registered(registered: Registered, dtype: str, *, max_examples: int | None = None,
                    database_key: bytes | None = None, timeout: float | None = None,
                    sweep: bool = True) -> Report:
    """Fuzz one registered target in one dtype: what one ``pytest --gradcheck`` item runs.

    Args:
        registered: an entry of :func:`gradcheck._declare.registry`.
        dtype: the dtype name to fuzz in.
        max_examples: the session's default (e.g. ``--gradcheck-max-examples``); the declaration's
            ``max_examples`` beats it, and without either the Hypothesis profile decides.
        database_key: the example-database key of this item (default: derived from the
            target's qualified name and the dtype).
        timeout: the session's time limit in seconds; the declaration's ``timeout`` beats it.
        sweep: False skips the sweep phase whatever the declaration says.

    Returns:
        As :func:`fuzz`.
    """
    declared = registered.declaration.max_examples
    examples = declared if declared is not None else max_examples
    declared_limit = registered.declaration.timeout
    limit = declared_limit if declared_limit is not None else timeout
    if not sweep:
        registered = dataclasses.replace(registered, declaration=dataclasses.replace(
            registered.declaration, sweep=False))
    return _Fuzz(registered, dtype_arg(dtype), examples, None, database_key,
                 timeout=limit).run()


# -- one run ----------------------------------------------------------------------------------

class _Found(Exception):
    """Raised inside the Hypothesis test when a check finds something: Hypothesis shrinks it."""

    def __init__(self, report: Report, inputs: tuple[np.ndarray, ...]):
        super().__init__(str(report))
        self.report = report
        self.inputs = inputs


class _Abort(BaseException):
    """Misuse of gradcheck: not an Exception, so Hypothesis stops at once instead of shrinking."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class _Stop(BaseException):
    """A target that cannot be checked at any input (it exits, returns no tensor): its report
    at the first input, without shrinking, which would only call it again."""

    def __init__(self, report: Report, inputs: tuple[np.ndarray, ...]):
        super().__init__(str(report))
        self.report, self.inputs = report, inputs


@dataclasses.dataclass
class _Failure:
    """What is kept of each failing example: enough to say which kinds it showed."""

    shapes: tuple[tuple[int, ...], ...]
    kinds: list[str]


class _Fuzz:
    """One target in one dtype: the Hypothesis run and what it saw."""

    def __init__(self, entry: Registered, dtype: str, max_examples: int | None,
                 seed: int | None, database_key: bytes | None, instance: Any = None,
                 timeout: float | None = None):
        self.entry, self.dtype, self.decl = entry, dtype, entry.declaration
        self.max_examples, self.seed = max_examples, seed
        key = database_key or f"gradcheck:{entry.qualified}[{dtype}]"
        self.database_key = key.encode() if isinstance(key, str) else bytes(key)
        self.instance = instance
        self.targets: dict[Any, Any] = {}
        self.references: dict[Any, Any] = {}
        self.examples = 0
        self.passed_shapes: set[tuple[tuple[int, ...], ...]] = set()
        self.passed_inputs: dict[tuple[tuple[int, ...], ...], tuple] = {}  # one per shape
        self.failures: list[_Failure] = []
        self.smallest: tuple[Report, tuple] | None = None
        self.timeout = timeout
        self.current: tuple[np.ndarray, ...] | None = None  # the input being checked
        self.current_since = 0.0
        self.check_seconds: list[float] = []  # how long each finished check took
        self.modes = ModeSample()  # which examples compare execution modes
        self.passed_digests: dict[bytes, bool] = {}  # input that passed -> modes compared
        self.repeated = 0  # examples whose input had passed already (see example())
        self.weight_moves = WeightMoves()  # a layer's weights moved per example
        self.uncompared = 0  # examples whose output was NaN/Inf everywhere: nothing compared
        self.repeatable = False  # an activation's sweep showed two calls agree (check())

    # ---- per example

    def layer_key(self, inputs: Sequence[np.ndarray]) -> Any:
        """Which built layer serves these inputs: a layer builds for its feature shapes and is
        then called with any batch size, as in training (the last, smaller batch of an epoch),
        so one per feature shapes; one per full shapes where rows may depend on each other."""
        if self.decl.kind == "activation":
            return None
        shapes = _shapes(inputs)
        return tuple(s[1:] for s in shapes) if self.decl.batch_independent else shapes

    def target_for(self, inputs: Sequence[np.ndarray]) -> Any:
        """The callable to check: the function, or the layer built for these inputs."""
        if self.instance is not None:
            return self.instance
        key = self.layer_key(inputs)
        if key not in self.targets:
            try:
                self.targets[key] = self.entry.build(self.dtype)
            except (TypeError, ValueError) as exc:  # nothing can be checked: say why, briefly
                raise _Abort(exc) from exc
            except Exception as exc:  # noqa: BLE001
                raise _Abort(ValueError(f"building it raised {type(exc).__name__}: {exc}")) \
                    from exc
        return self.targets[key]

    def reference_for(self, inputs: Sequence[np.ndarray]) -> Callable[[str], Any]:
        """The builder of the layer's float64 twin (the numerical reference): built once per
        layer, its weights set from the layer's at every check."""
        key = self.layer_key(inputs)

        def build(dtype_name: str) -> Any:
            if (key, dtype_name) not in self.references:
                self.references[key, dtype_name] = self.entry.build(dtype_name)
            return self.references[key, dtype_name]

        return build

    def check(self, inputs: Sequence[np.ndarray], dtype: str | None = None,
              modes: bool = True) -> Report:
        """check() of ``inputs`` as declared; ``modes=False`` leaves execution modes out. After
        a sweep that called the target twice at every value and got the same outputs and
        gradients, without the calls that look for noise (``check_with``)."""
        from ._check import check_with
        from ._inputs import as_tensors
        from ._targets import as_target

        target = self.target_for(inputs) if dtype is None else self.entry.build(dtype)
        if self.decl.kind == "layer" and dtype is None:
            self.weight_moves.apply(target, inputs, _seed_of(inputs))
        # A declared layer is rebuilt in float64 for the numerical reference.
        reference = None
        if self.decl.kind == "layer" and self.instance is None:
            reference = self.reference_for(inputs) if dtype is None else self.entry.build
        options = dataclasses.replace(CheckOptions.of(self.decl), policies=self.policies(),
                                      **({} if modes else {"modes": ()}))
        tgt = as_target(target, self.entry.name, reference)
        return check_with(tgt, as_tensors(tgt, inputs), options, seed=_seed_of(inputs),
                          probe_determinism=not self.repeatable)

    def policies(self) -> tuple[str, ...]:
        """A policy check rebuilds the layer under the policy whatever the item's dtype: run it
        in one item (float32, the policies' variable dtype, when declared, else the widest) to
        report it once."""
        declared = self.decl.dtypes
        once_in = "float32" if "float32" in declared else max(declared, key=DTYPES.index)
        return self.decl.policies if self.dtype == once_in else ()

    def example(self, inputs: tuple[np.ndarray, ...]) -> None:
        from ._check import _UsageError

        self.examples += 1
        if self.instance is not None:  # at the feature shape it is built for
            inputs = fitted_to_instance(self.instance, inputs)
        compare = self.modes.wanted(inputs)  # see _mode_sample.py
        # Hypothesis draws the very same arrays again (8-24% of an item's examples here).
        # Without state, a check is a function of its input (its seed too), so an input that
        # passed is not checked twice, unless modes are compared now and were not then. (A
        # target with state would meet the repeat in another state: one example fewer.)
        digest = _digest(inputs)
        if digest in self.passed_digests and (self.passed_digests[digest] or not compare):
            self.repeated += 1
            return
        self.current, self.current_since = inputs, time.perf_counter()
        try:
            report = self.check(inputs, modes=compare)
        except _UsageError as exc:  # the target ran, but returned no single tensor
            message = str(exc).removeprefix(f"gradcheck: {self.entry.name} ")
            raise _Stop(self.target_failure(inputs, message), inputs) from None
        except (TypeError, ValueError) as exc:  # check() rejects the target itself
            raise _Abort(exc) from exc
        if report.meta.get("exited"):  # sys.exit() in the target: a finding, not the end
            raise _Stop(self.target_failure(inputs, report.findings[0].message), inputs)
        self.check_seconds.append(time.perf_counter() - self.current_since)
        self.modes.record(inputs, compare, report.ok)
        self.uncompared += bool(report.meta.get("nothing_compared"))
        if report.ok:
            self.passed_digests[digest] = compare
            self.passed_shapes.add(_shapes(inputs))
            self.passed_inputs.setdefault(_shapes(inputs), inputs)
            return
        self.failures.append(_Failure(_shapes(inputs), report.kinds))
        if self.smallest is None or _total_size(inputs) < _total_size(self.smallest[1]):
            self.smallest = (report, inputs)
        raise _Found(report, inputs)

    def target_failure(self, inputs: tuple[np.ndarray, ...] | None, message: str,
                       kind: str = "error", **details: Any) -> Report:
        """A report of one finding at ``inputs``, for failures check() cannot report."""
        return failure_report(self.entry, self.dtype, inputs, message, kind, **details)

    def timed_out_with_smallest(self, seconds: float
                                ) -> tuple[Report, tuple[np.ndarray, ...] | None]:
        """:meth:`timed_out` at the limit as set (else ``seconds``), with the smallest failure
        found before it."""
        report, inputs = self.timed_out(self.timeout or seconds)
        if self.smallest is not None:  # a failure found before: it is a finding too
            found, inputs = self.smallest
            report.findings = found.findings + report.findings
        return report, inputs

    def timed_out(self, limit: float) -> tuple[Report, tuple[np.ndarray, ...] | None]:
        """The report of a run the time limit stopped, at the input it was checking."""
        running = None if self.current is None else time.perf_counter() - self.current_since
        message = timeout_message(self.entry.name, self.dtype, limit, running,
                                  self.check_seconds)
        return self.target_failure(self.current, message, "timeout", limit_s=limit,
                                   running_s=running and round(running, 3)), self.current

    # ---- the run

    def run(self) -> Report:
        from ._timeout import TimeLimitExceeded

        try:
            with restored_global_state():  # what the target set is undone for later items
                return self._run()
        except (Exception, KeyboardInterrupt, SystemExit, TimeLimitExceeded):
            raise
        except BaseException as exc:  # noqa: BLE001 - the target's own BaseException subclass
            said = f" ({_said(exc)})" if _said(exc) else ""
            report = self.target_failure(self.current, f"{self.entry.name}: raised "
                                         f"{type(exc).__name__}{said}, a BaseException that is "
                                         f"not an Exception: raise an Exception subclass",
                                         exception=type(exc).__name__)
            report.meta.update(examples=self.examples, kinds_seen=report.kinds)
            return report
        finally:
            self.weight_moves.restore()  # a user's layer instance gets its weights back

    def _run(self) -> Report:
        from ._check import _UsageError
        from ._sweep import sweep_registered  # phase 1: every value of an elementwise target
        from ._timeout import TimeLimitExceeded, time_limit

        start = time.perf_counter()
        swept, self.sweep_skipped, failed = None, None, None
        try:  # at most half the time limit: Hypothesis reports a hang at an input of its own
            with time_limit(self.timeout and self.timeout / 2, f"{self.entry.name} (its sweep, "
                            f"which may take half of the item's {self.timeout or 0:g} s)"):
                swept = sweep_registered(self.entry, self.dtype, self.instance)
        except TimeLimitExceeded:
            self.sweep_skipped = "the sweep ran past half the time limit"
        except (_UsageError, SystemExit) as exc:  # the target's own failure: Hypothesis
            self.sweep_skipped = f"the target failed in the sweep ({type(exc).__name__})"
            failed = exc
        except (TypeError, ValueError) as exc:  # the target cannot be checked at all
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            raise kind(f"gradcheck.fuzz: cannot check {self.entry.qualified} [{self.dtype}]: "
                       f"{exc}") from exc
        except Exception as exc:  # noqa: BLE001 - raised at a step: Hypothesis finds its input
            self.sweep_skipped = f"the target raised {type(exc).__name__} in the sweep"
            failed = exc
        if swept is not None and (swept.meta.get("skipped") or swept.meta.get("not_reported")):
            self.sweep_skipped = swept.meta.get("skipped") or "; ".join(swept.meta["not_reported"])
        # Errors, shapes and dtypes are Hypothesis's: it tells which shapes or dtypes fail.
        values_only = swept is not None and set(swept.kinds) <= {
            "nonfinite_output", "nonfinite_gradient", "gradient_mismatch"}
        if values_only and not swept.ok:
            swept.target = self.entry.qualified
            swept.meta.update(examples=0, kinds_seen=swept.kinds, hypothesis_blob=None,
                              seed=self.seed, duration_s=round(time.perf_counter() - start, 3))
            return swept
        # A layer's training=True call is not what its sweep called (Dropout draws there).
        self.repeatable = bool(swept is not None and swept.ok and swept.meta.get("repeatable")
                               and self.decl.kind == "activation")
        test = hypothesis_test(self.example, self.database_key, self.max_examples, self.seed,
                               inputs_for(self.decl, self.dtype))
        blob, classify = None, True
        left = self.timeout and max(self.timeout - (time.perf_counter() - start), 1e-3)
        began = time.perf_counter()

        def limit_cut() -> bool:  # the time limit fired, wherever its exception landed
            return bool(left) and time.perf_counter() - began >= left

        try:
            # gradcheck's report replaces Hypothesis' printed advice ("add @seed(...) to this
            # test": there is no test to add it to); the blob comes from the error's notes.
            with time_limit(left, self.entry.name), with_reporter(lambda text: None):
                test()
        except TimeLimitExceeded as stop:  # the limit as set, not what the sweep left of it
            report, inputs, classify = *self.timed_out_with_smallest(stop.seconds), False
        except _Stop as stop:  # nothing to reclassify: it fails the same way in every dtype
            report, inputs, classify = stop.report, stop.inputs, False
        except _Abort as abort:
            error = abort.error
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(f"gradcheck.fuzz: cannot check {self.entry.qualified} [{self.dtype}]: "
                       f"{error}") from error
        except _Found as found:
            report, inputs = found.report, found.inputs
            blob = blob_of(found)
        except Flaky as flaky:  # the failure did not replay: report the smallest one seen
            if limit_cut():  # the limit cut the replay
                report, inputs, classify = *self.timed_out_with_smallest(left), False
            elif self.smallest is not None:
                report, inputs = self.smallest
                for finding in report.findings:
                    finding.message += (" (intermittent: the same input passed when "
                                        "Hypothesis replayed it)")
            else:  # the target raised where check() does not look, then not on the replay
                inputs = self.current
                report = self.target_failure(inputs, "fails intermittently: "
                                             + flaky_text(flaky))
            blob = blob_of(flaky)
        except FloatingPointError as exc:  # the target set np.seterr(...="raise")
            report, inputs, classify = (self.target_failure(self.current, numpy_raising(exc)),
                                        self.current, False)
        except Exception:  # noqa: BLE001 - Hypothesis's own state, cut by the limit
            if not limit_cut():
                raise
            report, inputs, classify = *self.timed_out_with_smallest(left), False
        else:
            report, inputs = Report(target=self.entry.qualified, dtype=self.dtype), None
        if inputs is not None and classify:
            left = None if not self.timeout else self.timeout - (time.perf_counter() - start)
            try:  # the probes that reclassify an error call the target again: limit them too
                with time_limit(None if left is None else max(left, 1e-3)):
                    report = self.reclassify(report, inputs)
                    report = self.rank_one_hint(report, inputs)
            except TimeLimitExceeded:
                pass
        if inputs is not None:
            report.target = self.entry.qualified
            report.reproducer = self.reproducer(inputs)
        if report.ok and swept is not None and not swept.ok:
            # The sweep saw what Hypothesis's inputs never reached (an error far out): it stands.
            report.findings, report.reproducer = swept.findings, swept.reproducer
        checked = self.examples - self.repeated
        if report.ok and checked and self.uncompared == checked:  # nothing was compared
            report = self.target_failure(self.current, nothing_compared(self.entry.name, checked),
                                         "nonfinite_output", examples=checked)
        if report.ok and failed is not None:  # so did a failure of the sweep's own call
            report = self.target_failure(None, sweep_failure(self.dtype, failed),
                                         exception=type(failed).__name__)
        report.meta.update({
            "examples": self.examples,
            "kinds_seen": self.kinds_seen(report),
            "hypothesis_blob": blob,
            "seed": seed_used(test, self.seed),
            "duration_s": round(time.perf_counter() - start, 3),
            "swept": swept.meta["swept"] if swept is not None else 0,
            "modes_compared": self.modes.count,  # examples that compared execution modes
            "repeated": self.repeated,  # examples whose input had passed already: not rechecked
        })
        if self.sweep_skipped:
            report.meta["sweep_skipped"] = self.sweep_skipped
        return report

    # ---- what the failure means

    def reclassify(self, report: Report, inputs: tuple[np.ndarray, ...]) -> Report:
        """Turn the target's own errors into dtype_mismatch or shape_mismatch where they are."""
        if "error" not in report.kinds:
            return report
        self.current_failure = inputs
        kind, why, extra = None, "", {}
        if not self.passed_shapes:
            other = self.dtype_that_works(inputs)
            if other is not None:
                kind, extra = "dtype_mismatch", {"works_in": other}
                why = (f"fails in {self.dtype} but runs on the same input cast to {other}: "
                       f"{self.dtype} is not supported (a constant or cast of another dtype?)")
        if kind is None and not self.passed_shapes - {_shapes(inputs)}:
            self.probe_smaller_shapes(inputs)  # e.g. the failure was replayed from the database
        if kind is None and _shapes(inputs) not in self.passed_shapes and self.passed_shapes:
            passed = sorted(self.passed_shapes, key=lambda s: (sum(map(len, s)), s))[:3]
            kind, extra = "shape_mismatch", {"passed_shapes": [list(map(list, s))
                                                               for s in passed]}
            why = (f"fails for input shapes {_shapes_text(_shapes(inputs))} but runs for "
                   f"{', '.join(_shapes_text(s) for s in passed)}")
        if kind is not None and intermittent(self, kind, extra):
            for finding in report.findings:
                finding.message += (" (intermittent: an input that ran before failed when "
                                    "checked again: random numbers, global state or a race?)")
            return report
        if kind is None:
            return report
        name = self.entry.name
        report.findings = [
            Finding(kind, f"{name}: {why} ({f.message.removeprefix(name + ': ')})",
                    f.inputs, {**f.details, "reclassified_from": "error", **extra})
            if f.kind == "error" else f
            for f in report.findings]
        return report

    def rank_one_hint(self, report: Report, inputs: tuple[np.ndarray, ...]) -> Report:
        """At rank 1 axis 0 is both the batch and the features. Where the same values as one
        row, shape (1, n), pass, say so and how to keep the fuzzer off rank 1."""
        x, *rest = inputs
        if x.ndim != 1 or self.decl.input_shape is not None:
            return report
        try:
            passes = self.check((x.reshape(1, -1), *rest)).ok
        except Exception:  # noqa: BLE001 - a probe: any failure means no hint
            return report
        if not passes:
            return report
        hint = (f" It fails only at rank 1, where axis 0 is both the batch and the features: "
                f"the same values as one row of shape (1, {x.size}) pass. If the target acts "
                f"on the last axis, declare input_shape=(None, k).")
        report.findings = [Finding(f.kind, f.message + hint, f.inputs,
                                   {**f.details, "fails_only_at_rank_1": True})
                           for f in report.findings]
        return report

    def probe_smaller_shapes(self, inputs: tuple[np.ndarray, ...]) -> None:
        """Check x cut to one row, then to one entry per drawn axis; note the shapes that run."""
        x, *rest = inputs
        pattern = self.decl.input_shape or (None,) * x.ndim
        cuts = [tuple(slice(0, 1) if i == 0 else slice(None) for i in range(x.ndim)),
                tuple(slice(0, 1) if drawn is None else slice(None) for drawn in pattern)]
        for cut in cuts:
            probe = (x[cut], *rest)
            if _shapes(probe) == _shapes(inputs) or _shapes(probe) in self.passed_shapes:
                continue
            try:
                report = self.check(probe)
            except (Exception, SystemExit):  # noqa: BLE001 - any failure: "not this shape"
                continue
            if "error" not in report.kinds:
                self.passed_shapes.add(_shapes(probe))
                self.passed_inputs.setdefault(_shapes(probe), probe)
                return

    def dtype_that_works(self, inputs: tuple[np.ndarray, ...]) -> str | None:
        """The first wider dtype in which the same input runs without an error, if any."""
        if self.instance is not None:
            return None  # a layer instance cannot be rebuilt in another dtype
        for other in ("float32", "float64"):
            if other == self.dtype:
                continue
            cast = tuple(a.astype(other) for a in inputs)
            try:
                if "error" not in self.check(cast, dtype=other).kinds:
                    return other
            except (Exception, SystemExit):  # noqa: BLE001 - any failure: "not this dtype"
                continue
        return None

    def kinds_seen(self, final: Report) -> list[str]:
        """The union of kinds over every failing example, errors reclassified like the final."""
        reclassified = next((f.details.get("reclassified_from") and f.kind
                             for f in final.findings if f.details.get("reclassified_from")),
                            None)
        seen = set(final.kinds)
        for failure in self.failures:
            for kind in failure.kinds:
                if kind == "error" and reclassified == "dtype_mismatch":
                    kind = "dtype_mismatch"
                elif kind == "error" and self.passed_shapes - {failure.shapes}:
                    kind = "shape_mismatch"
                seen.add(kind)
        return [k for k in KINDS if k in seen]

    def reproducer(self, inputs: tuple[np.ndarray, ...]) -> str:
        options = {**check_options(self.decl), "policies": self.policies(),
                   "seed": _seed_of(inputs)}
        weights = None
        if self.decl.kind == "layer":
            try:
                moved = self.weight_moves.apply(self.target_for(inputs), inputs,
                                                _seed_of(inputs))
            except Exception:  # noqa: BLE001 - the layer fails to build: nothing was moved
                moved = None
            if moved is None and self.instance is not None:  # its own, not a fresh layer's
                moved = self.instance.get_weights() or None
            weights = None if moved is None else weights_code(moved)
        return declared_reproducer(self.entry, self.instance, self.dtype, inputs, options,
                                   weights)


