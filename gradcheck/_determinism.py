"""Non-determinism: a target whose output changes between two calls at the same input.

Finite differences compare calls of the target at nearby inputs; if two calls at the *same*
input already differ (dropout, ``tf.random`` noise), every comparison measures the noise, and
the verdict is a random kind (``not_elementwise``, ``batch_coupling``, a ``mode_mismatch`` that
blames a frozen Python value) that changes from run to run. So :func:`probe` calls the target a
second time first. A target whose outputs differ is reported once as ``nondeterministic``,
naming the random ops its graph holds and how to make it deterministic, and then:

* where resetting TensorFlow's global seed before every call, and a Keras 3 layer's seed
  generators to states drawn from the check's seed, makes the calls repeat (stateful
  ``tf.random`` ops and ``tf.nn.dropout`` draw from op seeds derived from the one, Keras'
  Dropout and ``keras.random`` from the others), the gradients are checked with that reset
  in place: the same noise at every call, so a wrong gradient still shows. The reference is
  then the target in its own dtype: a float64 twin draws other noise.
  A custom gradient of the noise-free function (right in expectation) differs from the
  derivative through the frozen noise by the noise itself, so derivatives are also accepted
  within ``_NOISE_SPREAD`` times the noise's typical relative size (a factor 3 is not).
* otherwise (NumPy or Python randomness) the gradients are not checked at all: nothing the
  noise would let through is claimed.

Execution modes are not compared for such a target: a traced graph draws its own noise.

Tolerance: on the CPU, TensorFlow's kernels are deterministic, so two calls must agree exactly.
On a GPU, reductions may accumulate in another order per call, each result within
``ANALYTIC_ULPS`` roundings of the same value: there they may differ by ``2 * ANALYTIC_ULPS``
roundings of the output's magnitude (the mode check's rule for two computations of one graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _backward, _f64, _index
from ._kerases import seed_generators
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._records import Add, ForwardBackward
from ._report import distinct_texts
from ._targets import Target

__all__ = ["probe", "SeededTarget", "random_ops"]

#: A derivative through frozen noise ``f(x) (1 + n)`` is ``f'(x) (1 + n)``: it differs from the
#: noise-free one (what a custom gradient of the expectation returns) by the noise itself.
#: Two draws differ by sqrt(2) sigma on average and one draw reaches 3 sigma, so 3 times the
#: median relative difference of two calls covers one realisation.
_NOISE_SPREAD = 3.0

#: The global seed set before each call of a target found non-deterministic.
_SEED = 20240613

_RANDOM_OP = ("Random", "Multinomial", "Dropout", "Shuffle", "Gamma", "Poisson",
              "TruncatedNormal", "PyFunc", "EagerPyFunc", "NumpyFunction")


class SeededTarget(Target):
    """``inner`` with TensorFlow's global seed reset before every call, and its Keras seed
    generators set to states drawn from ``seed`` (the check's: same input, same draws, same
    verdict, as Hypothesis's replay of a failure needs)."""

    stackable = False  # each call draws the same noise; one stacked call, other noise per part

    def __init__(self, inner: Target, seed: int = 0):
        super().__init__(inner.fn, inner.name, inner.arg_names)
        self.inner = inner
        self.layer = inner.layer
        self.generators = [] if inner.layer is None else seed_generators(inner.layer)
        self.states = [_state(g, seed, i) for i, g in enumerate(self.generators)]

    def __call__(self, args: Sequence[tf.Tensor]) -> Any:
        tf.random.set_seed(_SEED)
        for generator, state in zip(self.generators, self.states):
            generator.state.assign(state)
        return self.inner(args)

    def tracked_weights(self):
        return self.inner.tracked_weights()

    def twin(self, dtype, args, weights):
        return None  # a twin in another dtype draws other random numbers


def _state(generator: Any, seed: int, i: int) -> np.ndarray:
    """A state for the ``i``-th seed generator from the check's seed: Keras 3's is a pair, a
    seed and a counter; another layout is kept as it is."""
    state = np.array(generator.state.numpy())
    if state.shape != (2,):
        return state
    state[0], state[1] = np.random.default_rng((seed, i)).integers(1 << 31), 0
    return state


@dataclass(frozen=True)
class Noise:
    """What :func:`probe` found about a non-deterministic target, for the run to act on."""

    #: The target with TensorFlow's global seed reset before every call, where that makes the
    #: calls repeat (the run is then checked with it); None where it does not (no gradient
    #: check at all).
    seeded: SeededTarget | None
    #: How far the frozen noise may move a derivative, relative (:func:`_noise_level`).
    relative: float = 0.0


def probe(fb: ForwardBackward, first: Any, *, add: Add) -> Noise | None:
    """Compare the core's call of the target (``fb.y64``) with an earlier one (``first``: an
    output, or a :class:`Differs` found by :func:`varying_call`).

    Returns None when the target is deterministic; otherwise the finding is added and the
    :class:`Noise` says how to go on: check with ``seeded`` (the caller reruns the forward
    pass with it) or not at all."""
    if first is None:
        return None
    if not isinstance(first, Differs):
        if outputs_agree(fb.dtype, first, fb.y64):
            return None
        diff = np.abs(_f64(first) - fb.y64)
        j = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))
        first = Differs("outputs", float(_f64(first).flat[j]), float(fb.y64.flat[j]),
                        _index(j, fb.y64.shape))
    seeded = SeededTarget(fb.target, fb.seed)
    repeatable = False
    try:
        repeatable = outputs_agree(fb.dtype, output_of(seeded, fb.args),
                                   output_of(seeded, fb.args))
    except Exception:  # noqa: BLE001 - not repeatable this way: gradients are not checked
        pass
    ops = random_ops(fb.target, fb.args)
    named = (f" (random ops in its graph: {', '.join(ops)})" if ops else
             " (no random op in its graph: Python state that changes between calls, a "
             "counter or a global, read at each call?)")
    one, other = distinct_texts(first.one, first.other)
    then = ("its gradients were checked with TensorFlow's global seed reset before every call, "
            "so that every call draws the same noise" if repeatable else
            "resetting TensorFlow's global seed does not make it repeat, so its gradients were "
            "not checked")
    add("nondeterministic",
        f"two calls at the same input return different {first.what}{named}: "
        f"{one} vs {other} at index {first.index}; finite differences "
        f"would measure the noise. Make it deterministic where it is checked: call it with "
        f"training=False (dropout, noise layers), or use a seeded stateless op "
        f"(tf.random.stateless_uniform(shape, seed=...)); {then}",
        random_ops=ops, repeatable=repeatable)
    if repeatable:
        return Noise(seeded, _noise_level(fb.target, fb.args))
    return Noise(None)


def execute_probing(run: Any) -> None:
    """The core's whole check with the probe around it: ``run.forward_backward()``, the probe,
    then ``run.run_checks(noisy)``. Two equal calls can be chance (dropout of a few elements):
    before a finding stands, a few more calls at the same input; if they vary, the check starts
    over, as for a target found noisy at once. A run with ``probe_determinism`` off (its
    caller showed the target deterministic) makes neither call."""
    original = run.tgt
    if _attempt(run, first_call(run.tgt, run.args) if run.probe_determinism else None):
        return
    # Step 1 got as far as the cotangent: its VJP can be repeated.
    checked = (run.probe_determinism and run.report.findings and run.y64 is not None
               and run.v is not None)
    other = varying_call(run.first_order_record()) if checked else None
    if other is not None:
        run.report.findings, run.inputs_shown, run.tgt = [], None, original
        run.rng = np.random.default_rng(run.seed)
        _attempt(run, other)


def _attempt(run: Any, first: Any) -> bool:
    """One pass of every check; True when the target was found non-deterministic."""
    if not run.forward_backward():
        return False
    noise = probe(run.first_order_record(), first, add=run.add)
    noisy = noise is not None
    if noisy:  # keep the one finding; redo the forward pass with the seeded target
        if noise.seeded is None:
            return True
        run.tgt, run.noise_relative = noise.seeded, noise.relative
        run.report.findings = [f for f in run.report.findings if f.kind == "nondeterministic"]
        if not run.forward_backward():
            return True
    run.run_checks(noisy)
    return noisy


def _noise_level(target: Target, args: Sequence[tf.Tensor]) -> float:
    """How far the frozen noise may move a derivative, relative: ``_NOISE_SPREAD`` times the
    median relative difference of two unseeded calls (0 if they agree)."""
    try:
        one, two = output_of(target, args), output_of(target, args)
    except Exception:  # noqa: BLE001
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(one - two) / np.maximum(np.abs(one), np.abs(two))
    relative = relative[np.isfinite(relative)]
    return _NOISE_SPREAD * float(np.median(relative)) if relative.size else 0.0


def first_call(target: Target, args: Sequence[tf.Tensor]) -> Any:
    """One call of the target before the core's own, for :func:`probe`; None if it fails
    (the core's call reports the failure)."""
    try:
        return output_of(target, args)
    except Exception:  # noqa: BLE001
        return None


#: Calls made before a finding stands, to catch noise two calls missed by chance (dropout of
#: one element agrees with probability 1/2 per call: 2^-6 after six more).
_RECHECK_CALLS = 6


@dataclass
class Differs:
    """What differed between two calls at the same input."""

    what: str          # "outputs" or "gradients for <param>"
    one: float
    other: float
    index: tuple


def varying_call(fb: ForwardBackward) -> Differs | None:
    """Up to :data:`_RECHECK_CALLS` more calls, each with the core's cotangent: the first
    output or input gradient that differs from the core's, or None when they all agree (an
    input of zeros hides a dropout mask from the output, not from the gradient)."""
    inputs = [(p, fb.args[p.arg_index]) for p in fb.params
              if not p.is_weight and p.grad is not None]
    for _ in range(_RECHECK_CALLS):
        try:
            with tf.GradientTape() as tape:
                for _p, a in inputs:
                    tape.watch(a)
                y = tf.convert_to_tensor(fb.target(fb.args))
            grads = _backward(tape, y, [a for _p, a in inputs], tf.constant(fb.v, y.dtype))
        except Exception:  # noqa: BLE001
            return None
        pairs = [("outputs", _f64(y), fb.y64)]
        pairs += [(f"gradients for {p.label}", _f64(g), p.grad)
                  for (p, _a), g in zip(inputs, grads) if g is not None]
        for what, ours, core in pairs:
            if not outputs_agree(fb.dtype, ours, core):
                diff = np.abs(ours - core)
                j = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))
                return Differs(what, float(ours.flat[j]), float(core.flat[j]),
                               _index(j, core.shape))
    return None


def random_ops(target: Target, args: Sequence[tf.Tensor]) -> list[str]:
    """The op types of the target's traced graph that draw random numbers (empty if it does
    not trace)."""
    try:
        graph = tf.function(lambda *a: target(list(a))).get_concrete_function(*args).graph
    except Exception:  # noqa: BLE001 - a target that does not trace: no op names to give
        return []
    found = []
    for op in graph.get_operations():
        if any(word in op.type for word in _RANDOM_OP) and op.type not in found:
            found.append(op.type)
    return found


def output_of(target: Target, args: Sequence[tf.Tensor]) -> np.ndarray:
    """One call of ``target`` at ``args``, its output as float64 NumPy."""
    return _f64(tf.convert_to_tensor(target(args)))


def outputs_agree(dtype: tf.DType, a: Any, b: np.ndarray) -> bool:
    """Two outputs at one input are the same: bit for bit on CPU, within 2 x ANALYTIC_ULPS
    roundings on a GPU (its reductions may reorder between runs)."""
    a = np.asarray(a)
    if a.shape != b.shape:
        return False
    if not tf.config.list_logical_devices("GPU"):  # bitwise; NaN only where the other has one
        return bool((a == b).all()) or bool(np.array_equal(a, b, equal_nan=True))
    size = max(1.0, float(np.max(np.abs(b), where=np.isfinite(b), initial=0.0)))
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= 2 * ANALYTIC_ULPS * machine_eps(dtype.name) * size
    return bool(np.all(close | (np.isnan(a) & np.isnan(b)) | (a == b)))

