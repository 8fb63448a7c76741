"""Which fuzzed examples compare execution modes (eager vs tf.function, XLA, another device).

Comparing modes costs a call of a traced forward + backward per mode (and, once per trace, the
trace itself): a third of a check of a small elementwise target here. Fuzzing compares them on
every example that can still show something new, not on every example:

* every example whose input shapes are new (per item, i.e. target and dtype);
* every example that holds a *value class* not yet compared at its shapes: per input, the
  sign and the binade (the power of two, ``np.frexp``'s exponent) of each entry, zero and
  -0 each a class of their own, subnormals one class per binade like any other value;
* every example once one has failed, whatever the finding: Hypothesis then shrinks it and
  replays the smallest, and a shrunk or replayed input must meet the full check (and a
  replay the same one), so a ``mode_mismatch`` is reported at its minimal input;
* and none that only repeats classes already compared, and passed, at the same shapes.

Why this keeps every mode bug that depends on the trace, on signs or on magnitudes. A mode
check compares two computations of the same Python code: the traced one is traced once per
target, dtypes and ranks (once per exact shapes for a target that needs static shapes, plus a
Keras-model-shaped trace for the first feature shapes) and reused, so after the first example
of given shapes what an example adds is its values. Where eager and traced differ:

* at trace time (``.numpy()``, ``float(tensor)``, a Python float that becomes a float32
  constant, an op without an XLA kernel): for any value, so the first example of its shapes
  shows it (every ``mode_mismatch`` of ``examples/buggy`` and most of tests/test_modes.py);
* by a Python value frozen at trace time, a branch on ``tf.executing_eagerly()`` or a side
  effect: the two paths differ wherever their formulas do; a difference over the whole
  domain (tempered_tanh, debug_branch) shows at the first example, one over a range of values
  as soon as an entry falls in a binade and sign of that range not compared yet;
* by precision: fusion keeping float16 intermediates in float32, a GPU flushing subnormals
  to zero, XLA's own exp and tanh near overflow. Those depend on magnitudes, which the
  binades resolve: every binade wholly past an overflow threshold, and every subnormal
  binade, is compared when an entry first falls in it (the threshold's own binade: below).

What it could miss, said plainly: a difference confined to part of one binade (eager and
traced differing only for x in (5, 6), the binade 4..8 first met, and passed, at 4.5), and
one that needs a combination of entries (a row's maximum, a sum) rather than one entry's
class. Comparing every example finds such a bug at any example that happens to reach it; here
only at one that also brings a class not compared yet at its shapes (every example with new
shapes does), so later, or not within ``max_examples``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._arrays import _shapes

__all__ = ["ModeSample"]

_ZERO = 1 << 16  # frexp's exponents of finite float64 values stay within +-1100


class ModeSample:
    """For one fuzz item: which examples compare modes, from the classes compared so far."""

    def __init__(self) -> None:
        self.compared: dict[tuple, set[tuple[int, int]]] = {}  # shapes -> classes compared
        self.failed = False
        self.count = 0  # examples that compared modes

    def wanted(self, inputs: Sequence[np.ndarray]) -> bool:
        """Whether the check of ``inputs`` compares modes (see the module docstring)."""
        if self.failed:
            return True
        seen = self.compared.get(_shapes(inputs))
        return seen is None or not value_classes(inputs) <= seen

    def record(self, inputs: Sequence[np.ndarray], compared: bool, ok: bool) -> None:
        """After the check of ``inputs``: classes that passed the comparison are covered; a
        failure, of any kind, turns the comparison on for the rest of the run."""
        self.count += compared
        if not ok:
            self.failed = True
        elif compared:
            self.compared.setdefault(_shapes(inputs), set()).update(value_classes(inputs))


def value_classes(inputs: Sequence[np.ndarray]) -> set[tuple[int, int]]:
    """``(input position, class)`` for every entry: class = 2 * binade + sign bit."""
    classes: set[tuple[int, int]] = set()
    for position, a in enumerate(inputs):
        a = np.asarray(a, np.float64).ravel()
        if not a.size:
            continue
        exponent = np.where(a == 0, _ZERO, np.frexp(a)[1])
        codes = np.unique(2 * exponent + np.signbit(a))
        classes.update((position, int(c)) for c in codes)
    return classes

