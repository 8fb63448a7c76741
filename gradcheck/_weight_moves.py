"""Fuzzing a layer away from its initial weights.

A layer built afresh holds its initializers' values, and constant initializers are the rule
for the parameters users add to an activation: a learnable swish ``beta`` or a ``scale`` of 1,
snake's frequency 1, PReLU's slope 0.25, a ReZero gate of 0. There a gradient formula can be
wrong and still give the right number: ``x / a`` where ``x / a**2`` belongs is right at
``a = 1``, a forgotten factor ``scale`` is right at 1, every term carrying a factor ``w`` is 0
at ``w = 0``. And training takes weights where their initializers never are: a slope or a gate
below 0 (a gradient written with ``|alpha|``, or a "stable" sigmoid of ``|g|``, is right only
above it), a scale past a clamp. So every other fuzz example of a layer moves its trainable
weights first, per entry:

    w = s * w0 * 3^u, or s * u / 2 where w0 = 0,   u uniform in [-1, 1],

``s`` = -1 with probability 1/4, else 1: a nonzero weight from a third to three times its
size, a zero one up to 1/2, either sign; a weight's Keras ``constraint`` is applied after.
Where the layer's output is then not finite at the example's input (a temperature under a
``log``, an offset under a square root needs its sign), the weights move as they would keep
their sign instead: ``w0 (1 + u / 2) + |u| / 2 [w0 = 0]``. ``u`` comes from the example's own
check seed (a function of its input), so every check of the same input (Hypothesis's replay of
its shrunk example, the reclassifying probes) sees the same weights; which examples move
follows the seed's parity, so half of them check the layer as built. The failure's reproducer
sets the moved weights (:func:`weights_code`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["WeightMoves", "weights_code"]

#: A nonzero weight moves by a factor 3^u, u in [-1, 1]; a zero one to u / 2.
_FACTOR, _ZERO = 3.0, 0.5
#: How often a moved entry changes sign.
_FLIP = 0.25


class WeightMoves:
    """For one fuzz item: each layer's initial trainable weights, and the moves made from them."""

    def __init__(self) -> None:
        self.initial: dict[int, tuple[Any, list[np.ndarray]]] = {}  # id(layer) -> (layer, w0)

    def apply(self, layer: Any, inputs: tuple[np.ndarray, ...], seed: int) -> list | None:
        """Set ``layer``'s trainable weights for the example whose check seed is ``seed``:
        moved on an odd seed, as built on an even one. Returns the layer's weights
        (``get_weights()``) where they were moved, else None."""
        if not getattr(layer, "built", False):
            try:
                layer(*inputs)  # weights exist once the layer has seen its input shape
            except Exception:  # noqa: BLE001 - the check's own call reports the error
                return None
        weights = list(getattr(layer, "trainable_weights", ()))
        if not weights:
            return None
        if id(layer) not in self.initial:
            self.initial[id(layer)] = (layer, [np.array(w.numpy()) for w in weights])
        _, initial = self.initial[id(layer)]
        if seed % 2 == 0:
            _assign(weights, initial)
            return None
        for signed in (True, False):
            _assign(weights, _moves(weights, initial, seed, signed))
            if not signed or _finite(layer, inputs):
                break
        return [np.array(v) for v in layer.get_weights()]

    def restore(self) -> None:
        """Give every layer moved its initial weights back (a user's layer instance)."""
        for layer, initial in self.initial.values():
            _assign(list(layer.trainable_weights), initial)


def _moves(weights: list, initial: list[np.ndarray], seed: int, signed: bool) -> list:
    """The moved values of ``weights`` (module docstring), drawn from the check ``seed``:
    ``signed`` either sign, else each keeping its own."""
    rng = np.random.default_rng((seed, 23))
    moved = []
    for w, w0 in zip(weights, initial):
        u = rng.uniform(-1.0, 1.0, np.shape(w0))
        flip = np.where(rng.uniform(size=np.shape(w0)) < _FLIP, -1.0, 1.0)
        start = w0.astype(np.float64)
        if signed:
            value = flip * np.where(start == 0, _ZERO * u, start * _FACTOR ** u)
        else:
            value = start * (1 + u / 2) + np.abs(u) / 2 * (start == 0)
        constraint = getattr(w, "constraint", None)
        if constraint is not None:
            value = np.asarray(constraint(value), dtype=np.float64)
        moved.append(value.astype(w0.dtype))
    return moved


def _finite(layer: Any, inputs: tuple[np.ndarray, ...]) -> bool:
    """Whether ``layer``'s output at ``inputs`` is finite (a call that fails: left to the
    check's own call, which reports it)."""
    try:
        return bool(np.all(np.isfinite(np.asarray(layer(*inputs), dtype=np.float64))))
    except Exception:  # noqa: BLE001
        return True


def _assign(weights: list, values: list[np.ndarray]) -> None:
    for w, v in zip(weights, values):
        w.assign(v)


def weights_code(weights: list[np.ndarray]) -> str:
    """``[np.array([...]), ...]``: the layer's weights as code (``set_weights`` casts them)."""
    return "[" + ", ".join(f"np.array({w.astype(np.float64).tolist()!r})"
                           for w in weights) + "]"
