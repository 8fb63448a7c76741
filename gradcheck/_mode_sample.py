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

Why this hides no mode bug that comparing every example would find, within what fuzzing
sees. A mode check compares two computations of the same Python code: the traced one is
traced once per target, dtypes and ranks (once per exact shapes for a target that needs
static shapes, plus a Keras-model-shaped trace for the first feature shapes) and reused, so
after the first example of given shapes what an example adds is its values. Where eager and
traced differ:

* at trace time (``.numpy()``, ``float(tensor)``, a Python float that becomes a float32
  constant, an op without an XLA kernel): for any value, so the first example of its shapes
  shows it (every ``mode_mismatch`` of ``examples/buggy`` and most of tests/test_modes.py);
* by a Python value frozen at trace time, a branch on ``tf.executing_eagerly()`` or a side
  effect: the two paths differ wherever their formulas do; a difference over the whole
  domain (tempered_tanh, debug_branch) shows at the first example, one over a range of values
  as soon as an entry falls in a binade and sign of that range not compared yet;
* by precision: fusion keeping float16 intermediates in float32, a GPU flushing subnormals
  to zero, XLA's own exp and tanh near overflow. Those depend on magnitudes, which the
  binades resolve: the first entry past an overflow threshold of a power of two, or in a
  subnormal binade, brings a new class and is compared.

What could be missed, said plainly: a difference confined to part of one binade that the
first entries of that class at those shapes did not reach (eager and traced differing only
for x in (5, 6), a 4..8 binade first met at 4.5), and one that needs a combination of entries
(a row's maximum, the sum of several entries) rather than one entry's class. Fuzzing with
every example compared finds those only when it happens to draw them; here the same values
are compared once per shapes in a later example that brings a new class with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


def _shapes(inputs: Sequence[np.ndarray]) -> tuple:
    return tuple(np.shape(a) for a in inputs)
