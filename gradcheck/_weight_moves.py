"""Fuzzing a layer away from its initial weights.

A layer built afresh holds its initializers' values, and constant initializers are the rule
for the parameters users add to an activation: a learnable swish ``beta`` or a ``scale`` of 1,
snake's frequency 1, PReLU's slope 0.25, a ReZero gate of 0. There a gradient formula can be
wrong and still give the right number: ``x / a`` where ``x / a**2`` belongs is right at
``a = 1``, a forgotten factor ``scale`` is right at 1, every term carrying a factor ``w`` is 0
at ``w = 0``. So every other fuzz example of a layer moves its trainable weights first:

    w = w0 * (1 + u) + |u| * (w0 == 0),   u uniform in [-1/2, 1/2] per entry,

which keeps the sign of a nonzero weight (a scale, a temperature, a variance stays positive)
and moves a zero one up to 1/2 upwards (a learnable offset under a square root, initialized
at 0, stays non-negative); a weight's Keras ``constraint`` is applied after. ``u``
comes from the example's own check seed (a function of its input), so every check of the same
input (Hypothesis's replay of its shrunk example, the reclassifying probes) sees the same
weights; which examples move follows the seed's parity, so half of them check the layer as
built. The failure's reproducer sets the moved weights (:func:`weights_code`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["WeightMoves", "weights_code"]

#: The largest relative move of a weight: half its size keeps its sign.
_SPREAD = 0.5


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
        rng = np.random.default_rng((seed, 23))
        moved = []
        for w, w0 in zip(weights, initial):
            u = rng.uniform(-_SPREAD, _SPREAD, np.shape(w0))
            start = w0.astype(np.float64)
            value = start * (1 + u) + np.abs(u) * (start == 0)
            constraint = getattr(w, "constraint", None)
            if constraint is not None:
                value = np.asarray(constraint(value), dtype=np.float64)
            moved.append(value.astype(w0.dtype))
        _assign(weights, moved)
        return [np.array(v) for v in layer.get_weights()]

    def restore(self) -> None:
        """Give every layer moved its initial weights back (a user's layer instance)."""
        for layer, initial in self.initial.values():
            _assign(list(layer.trainable_weights), initial)


def _assign(weights: list, values: list[np.ndarray]) -> None:
    for w, v in zip(weights, values):
        w.assign(v)


def weights_code(weights: list[np.ndarray]) -> str:
    """``[np.array([...]), ...]``: the layer's weights as code (``set_weights`` casts them)."""
    return "[" + ", ".join(f"np.array({w.astype(np.float64).tolist()!r})"
                           for w in weights) + "]"
