"""What the core's steps from step 3 on read of it: small frozen records.

The core (``_check._Run``) is a mutable run: its steps fill it in one after another. The
first-order comparison (``_routes``) and the checks that follow it (``_second_order``,
``_mixed``, ``_modes``) need a few of its results, not the run itself; they get them as the
records below, built by the core once steps 1 and 2 are done (``Evaluations`` and ``Declared``
for step 3 only), and report through the callables they are handed (``add(kind, message,
**details)`` for a finding, ``skip(note)`` for a check that could not run). A record is
frozen: a later check cannot change what the core or another check sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from ._arrays import _smallest_normal
from ._numerics import machine_eps

__all__ = ["Add", "Declared", "Evaluations", "ForwardBackward", "Param", "Reference", "Skip",
           "cast_floats"]


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

    @property
    def tiny(self) -> float:
        """The smallest normal number of ``dtype``: values below it flush to 0."""
        return _smallest_normal(self.dtype)


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


@dataclass(frozen=True)
class Declared:
    """What the caller declared about the target (``check()``'s options), as step 3 reads it:
    None where not declared (a probe then picks the route and nothing is promised)."""

    elementwise: bool | None
    batch_independent: bool | None
    domain: tuple[float, float] | None  # of the first input: finite differences stay inside


@dataclass(frozen=True)
class Evaluations:
    """Step 3's calls of the numerical reference (``_reference.ReferenceCalls``, on the core's
    state: its inputs cast once, whether a stacked call still stands, whether a step was cut
    by the domain) and the core's caches that step 3's rules share.

    ``directions`` map a param's index (in ``ForwardBackward.params``) to an array of its
    shape; outputs are float64 arrays of the reference output's shape."""

    #: ``evaluate(directions, t)``: the reference at params + t * directions.
    evaluate: Callable[[Mapping[int, np.ndarray], float], np.ndarray]
    #: ``samples(directions, stacked=False)``: ``{k: evaluate(directions, k h)}`` for k in
    #: 0, +-1, +-2 (from one stacked call where ``stacked`` and the reference allow it).
    samples: Callable[..., dict[int, np.ndarray]]
    #: ``stacked(directions, ts)``: ``[evaluate(directions, t) for t in ts]`` from one call,
    #: or None where that call cannot be made (the caller then evaluates each t).
    stacked: Callable[[Mapping[int, np.ndarray], Sequence[float]], list | None]
    #: ``rounding(axes, scale)``: the absolute rounding of one evaluation of
    #: phi = sum over ``axes`` of v * F (``axes`` (): per element; None: all).
    rounding: Callable[[tuple[int, ...] | None, Any], np.ndarray]
    #: ``outside_domain(param, values)``: where ``values`` of ``param`` leave the declared
    #: domain, or None.
    outside_domain: Callable[[Param, np.ndarray], np.ndarray | None]
    #: ``steps_at_ends(param, s, samples)``: the per-element steps along ``s`` made shorter
    #: next to a domain end, or None where none is.
    steps_at_ends: Callable[[Param, np.ndarray, dict], np.ndarray | None]
    #: ``stacked_calls()``: how many stacked calls stood so far.
    stacked_calls: Callable[[], int]
    #: The float64 twin's gradients at the input (``_conditioning.TwinGradients``), made on
    #: first use and kept for the checks after step 3.
    twin: Any
    #: For a run over some entries of a larger batch (a sweep's suspects): the batch's shape
    #: and the entries' flat indices, so their random draws are the batch's; else None.
    entries: tuple | None
    #: ``diverging(k, entries)``: of ``entries`` (bool) of input param ``k``, those at 0 or a
    #: declared end toward which the function's slope grows without bound, each set noted as
    #: not compared (``_singular.infinite_slopes``).
    diverging: Callable[[int, np.ndarray], np.ndarray]


def cast_floats(args: Any, dtype: tf.DType) -> list:
    """``args`` with each floating tensor cast to ``dtype`` (the others as they are)."""
    return [tf.cast(a, dtype) if a.dtype.is_floating else a for a in args]
