"""Training mode: a layer whose ``call`` accepts ``training`` is checked with both values.

Keras calls such a layer with ``training=True`` in ``fit`` and ``training=False`` in
``predict``: Dropout, BatchNormalization and custom layers take another path in each, and a bug
in the training path alone would pass a check that only ever runs the default. So
:func:`gradcheck.check` (hence fuzzing and ``pytest --gradcheck``) runs its whole check once per
value, unless ``training=`` is given:

- ``training=True`` is first computed once at the check's input, output and VJP: where both are
  bitwise those of ``training=False`` (Dense and other layers that merely accept the argument)
  the ``training=False`` check stands for it, at the cost of one forward and backward pass.
- ``training=False``, and ``training=True`` for a deterministic layer (BatchNormalization: batch
  statistics), are checked fully: finite differences, modes, and so on, with the layer and its
  float64 twin both called with that value.
- ``training=True`` for a stochastic layer (Dropout, noise: it holds Keras seed generators, or
  two calls at the same input give different outputs or input gradients, tried :data:`PROBES`
  times) is checked with its random draws held fixed: its seed generators and TensorFlow's
  global seed put back before every call (``_determinism.SeededTarget``), so every call
  draws the same mask and the layer is a function whose gradient can be compared. Against
  finite differences of the layer itself, in its own dtype: a float64 twin would draw other
  numbers (its uniform draws have other bits). Modes are not compared, as for any noisy
  target. A custom gradient forgetting dropout's ``1 / (1 - rate)``, or a weight's gradient
  cut in the training path, shows; where holding the draws does not make the calls repeat
  (NumPy or Python randomness) it is checked for structure only: output and gradient shapes
  and dtypes, NaN/Inf, the untracked-variable check. The report says which
  (``report.meta["training"]``).

Mixed-precision policies are checked in the ``training=False`` run only: the policy check
rebuilds the layer and calls it the way Keras' default does. Rows of the batch are not required
to be independent with ``training=True``: batch statistics (BatchNormalization) couple them by
design.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from ._arrays import _backward
from ._determinism import SeededTarget, outputs_agree
from ._kerases import seed_generators
from ._report import Report
from ._targets import LayerTarget

__all__ = ["accepts_training", "run_per_training_mode", "TrainingLayerTarget"]

#: Calls with training=True at one input that must all agree for a layer to count as
#: deterministic: Dropout at rate r on n elements repeats its mask with probability
#: about max(r, 1 - r)^n per call, so three repeats in a row is rare even for tiny inputs.
PROBES = 4

FULL = "checked fully"
SAME = ("same output and gradient as training=False at this input (bitwise): the "
        "training=False check stands for it")
FROZEN = ("checked fully with its random draws held fixed (its Keras seed generators and "
          "TensorFlow's global seed reset before every call), against finite differences "
          "of the layer in its own dtype (a float64 twin draws other numbers)")
STRUCTURE_ONLY = ("structure only (stochastic: outputs differ between calls at the same input; "
                  "shapes, dtypes and NaN/Inf checked, values not compared)")


def accepts_training(layer: Any) -> bool:
    """Whether the layer's ``call`` has a ``training`` parameter (Keras then passes it)."""
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (AttributeError, TypeError, ValueError):
        return False


class TrainingLayerTarget(LayerTarget):
    """A layer target called with a fixed ``training=``; its float64 twin is called alike."""

    def __init__(self, base: LayerTarget, training: bool):
        super().__init__(base.layer, base.name, base.builder)
        self.arg_names = base.arg_names
        self.training = training
        if training:
            self.name = f"{base.name} [training=True]"

    def __call__(self, args: Sequence[tf.Tensor]) -> Any:
        return self.layer(*args, training=self.training)

    def twin(self, dtype, args, weights):
        found = super().twin(dtype, args, weights)
        if found is None:
            return None
        twin, twin_weights = found
        return TrainingLayerTarget(twin, self.training), twin_weights


def run_per_training_mode(tgt: Any, args: Sequence[tf.Tensor], training: bool | None,
                          make_run: Callable[..., Any], seed: int = 0) -> Report:
    """Run ``make_run(target, **overrides).execute()`` per training value; one merged report.

    ``training`` None checks both values where the layer accepts them, a bool only that one.
    ``seed``: the check's, from which a stochastic layer's held draws come.
    """
    if training is not None and not isinstance(training, bool):
        raise TypeError(f"gradcheck: training must be True, False or None (both where the "
                        f"layer accepts it), got {training!r}")
    if not isinstance(tgt, LayerTarget) or not accepts_training(tgt.layer):
        if training is not None:
            raise TypeError(f"gradcheck: training={training!r} is for a Keras layer whose "
                            f"call accepts training; {tgt.name} does not")
        run = make_run(tgt)
        run.execute()
        return run.report
    report, how, inference = None, {}, None
    for value in (False, True) if training is None else (training,):
        target = TrainingLayerTarget(tgt, value)
        overrides: dict[str, Any] = {}
        if value:
            if inference is not None and _same_as(inference, target):
                how["training=True"] = SAME
                continue
            # Training-mode batch statistics (BatchNormalization) couple the rows by design.
            overrides["policies"], overrides["batch_independent"] = (), False
            if _stochastic(target, args):
                frozen = SeededTarget(target, seed)
                if _repeats(frozen, args):
                    target, overrides["modes"] = frozen, ()
                else:
                    overrides["structure_only"] = True
        run = make_run(target, **overrides)
        run.execute()
        inference = run if not value else None
        how[f"training={value}"] = (STRUCTURE_ONLY if overrides.get("structure_only") else
                                    FROZEN if isinstance(target, SeededTarget) else FULL)
        report = run.report if report is None else _merged(report, run.report, value)
    report.meta["training"] = how
    return report


def _merged(inference: Report, training: Report, value: bool) -> Report:
    """The training=False run's report with the training=True run's findings and what it
    could not check (its ``skipped`` notes, named by the mode); nothing was compared only
    where neither run compared anything."""
    inference.findings.extend(training.findings)
    inference.reproducer = inference.reproducer or training.reproducer
    inference.reference_dtype = inference.reference_dtype or training.reference_dtype
    notes = [f"training={not value}: {note}" for note in inference.meta.get("skipped", [])]
    notes += [f"training={value}: {note}" for note in training.meta.get("skipped", [])]
    if notes:
        inference.meta["skipped"] = notes
    if not training.meta.get("nothing_compared"):
        inference.meta.pop("nothing_compared", None)
    return inference


def _same_as(inference: Any, target: TrainingLayerTarget) -> bool:
    """Whether the layer in training mode gives bitwise the output and VJP (same cotangent)
    that the training=False run computed: then its check would repeat that one, since the
    check is a function of the output and gradients here and of the forward pass around here,
    and Keras layers that merely accept ``training`` (Dense) compute the same thing. Any
    difference, or a run that stopped early, means: check it."""
    if not hasattr(inference, "v") or not hasattr(inference, "params"):
        return False
    floats = [p.arg_index for p in inference.params if not p.is_weight]
    weights = [p.weight for p in inference.params if p.is_weight]
    try:
        with tf.GradientTape() as tape:
            for i in floats:
                tape.watch(inference.args[i])
            y = tf.convert_to_tensor(target(inference.args))
        if y.dtype != inference.y.dtype or y.shape != inference.y.shape:
            return False
        grads = _backward(tape, y, [inference.args[i] for i in floats] + weights,
                           tf.constant(inference.v, y.dtype))
    except Exception:  # noqa: BLE001 - the training=True check reports it
        return False
    if not np.array_equal(_f64(y), inference.y64, equal_nan=True):
        return False
    for p, g in zip(inference.params, grads):
        if (g is None) != p.grad_missing or (g is not None and p.grad is None):
            return False
        if g is not None and not np.array_equal(_f64(g), p.grad, equal_nan=True):
            return False
    return True


def _f64(t: Any) -> np.ndarray:
    return np.asarray(tf.cast(tf.convert_to_tensor(t), tf.float64))


def _stochastic(target: TrainingLayerTarget, args: Sequence[tf.Tensor]) -> bool:
    """Whether the layer draws random numbers: it holds Keras seed generators, or calls at
    the same input disagree in their output or their gradient for the inputs (a dropout mask
    hides from the output where the input is 0, and one entry's mask repeats by chance one
    time in two); a call that raises is left to the check, which reports it."""
    if seed_generators(target.layer):
        return True
    try:
        first = _output_and_gradients(target, args)
        for _ in range(PROBES - 1):
            if not _equal(first, _output_and_gradients(target, args), _dtype(args)):
                return True
    except Exception:  # noqa: BLE001 - the check calls it again and reports the error
        return False
    return False


def _repeats(target: Any, args: Sequence[tf.Tensor]) -> bool:
    """Whether two calls give the same output and input gradients (a frozen target)."""
    try:
        return _equal(_output_and_gradients(target, args), _output_and_gradients(target, args),
                      _dtype(args))
    except Exception:  # noqa: BLE001 - the check calls it again and reports the error
        return False


def _dtype(args: Sequence[tf.Tensor]) -> tf.DType:
    return next((a.dtype for a in args if a.dtype.is_floating), tf.float32)


def _output_and_gradients(target: Any, args: Sequence[tf.Tensor]) -> list[np.ndarray]:
    floats = [a for a in args if a.dtype.is_floating]
    with tf.GradientTape() as tape:
        tape.watch(floats)
        y = tf.convert_to_tensor(target(args))
    grads = tape.gradient(y, floats)  # for dy = ones: every entry's mask in every gradient
    return [_f64(y)] + [_f64(g) for g in grads if g is not None]


def _equal(one: list[np.ndarray], other: list[np.ndarray], dtype: tf.DType) -> bool:
    """Two calls' outputs and gradients agree: bitwise on CPU, within a GPU's reordered
    reductions there (``_determinism.outputs_agree``, the probe's rule)."""
    return len(one) == len(other) and all(outputs_agree(dtype, a, b) for a, b in zip(one, other))
