"""What the checks after the first-order one read of it: small frozen records.

The core (``_check._Run``) is a mutable run: its steps fill it in one after another. The checks
that follow it (``_second_order``, ``_mixed``, ``_modes``) need a few of its results, not the
run itself;
they get them as the records below, built by the core once its first-order check is done, and
report through the callables they are handed (``add(kind, message, **details)`` for a
finding, ``skip(note)`` for a check that could not run). A record is frozen: a later check
cannot change what the core or another check sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from ._numerics import machine_eps

__all__ = ["Add", "ForwardBackward", "Param", "Reference", "Skip", "cast_floats"]


#: Adds a finding: ``add(kind, message, **details)``.
Add = Callable[..., None]
#: Notes a check that could not run, and why (``report.meta["skipped"]``).
Skip = Callable[[str], None]


@dataclass(frozen=True)
class Param:
    """One differentiated quantity, as the first-order check left it."""

    label: str                # "input x", "weight 'kernel'"
    value: np.ndarray         # float64 copy of its value
    dtype: tf.DType           # its own dtype (a weight's may differ from the input's)
    is_weight: bool
    arg_index: int            # position among the target's inputs (-1 for a weight)
    weight: Any               # the tf.Variable, for a weight (None for an input)
    grad: np.ndarray | None   # analytic VJP (float64); None when missing or unusable
    grad_missing: bool        # the VJP was None (``grad`` is None then too)


@dataclass(frozen=True)
class ForwardBackward:
    """Step 1 of a check: the target called once under a tape in the input's dtype, and one VJP
    with the random cotangent ``v``.

    ``rng`` is the run's generator, passed on so that a later check's random draws continue
    the run's sequence: same seed, same verdict. ``seed`` is the check's seed, for a step
    whose draws must leave that sequence as it is (its own stream, ``(seed, k)``)."""

    target: Any               # the _targets.Target that was called: target(args) -> y
    args: tuple               # its inputs, as tensors (floating ones in ``dtype``)
    dtype: tf.DType           # the input's dtype d
    y64: np.ndarray           # the output, float64 copy
    y_dtype: tf.DType         # the output's dtype (not ``dtype`` where it is a dtype_mismatch)
    v: np.ndarray             # the cotangent (float64)
    params: tuple[Param, ...]
    rng: np.random.Generator
    seed: int

    @property
    def eps(self) -> float:
        """The machine epsilon of ``dtype``."""
        return machine_eps(self.dtype.name)


@dataclass(frozen=True)
class Reference:
    """Step 2 of a check: the numerical reference, and how step 3 judged its lines.

    ``judge(samples, analytic, rounding, allowance, directional=False)`` is the first-order
    check's own verdict on a line's samples at ``t = k h`` (``_routes.judge``: the Richardson
    estimate, the kink rule, the caller's ``rtol``/``atol``, a noisy target's allowance), so a
    line of another order is judged by the same rule."""

    call: Any                 # the reference Target (the target itself, or its float64 twin)
    weights: tuple            # its variables, in the order of the params' weights
    dtype: tf.DType           # the dtype it runs in
    f0: np.ndarray            # its output at the input (float64)
    h: float                  # the finite-difference step, relative to max(1, |x|)
    eps_ref: float            # the machine epsilon that rounds its evaluations
    judge: Callable[..., Any]
    #: The per-element step scale ``s`` of each param (by index) whose Jacobian step 3
    #: confirmed diagonal; empty when the per-element route did not apply.
    diagonal: Mapping[int, np.ndarray]


def cast_floats(args: Any, dtype: tf.DType) -> list:
    """``args`` with each floating tensor cast to ``dtype`` (the others as they are)."""
    return [tf.cast(a, dtype) if a.dtype.is_floating else a for a in args]
