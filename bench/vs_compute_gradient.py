"""Cost of one gradcheck.check vs one tf.test.compute_gradient, same target, same input.

    .venv/bin/python bench/vs_compute_gradient.py                       # full table (~4-8 min)
    .venv/bin/python bench/vs_compute_gradient.py --sizes 10 100 1000   # quick (~1 min)
    .venv/bin/python bench/vs_compute_gradient.py --targets swish --dtypes float32

Targets: swish (elementwise, autodiff), custom_elu (a tf.custom_gradient ELU, elementwise) and
softmax over the last axis (checked with elementwise=False: per batch row). Inputs: n values
uniform in [-10, 10] (gradcheck's default fuzzing domain) as a (n/10, 10) batch, in float32
and float64.

Both tools run in the same process on the same tensors; each cell is a median of --repeats
(gradcheck) or --cg-repeats (compute_gradient) runs, so the ratio holds on a noisy machine
where absolute times do not. compute_gradient builds two n x n Jacobians with 1 + 2n forward
and n backward calls; its time at the next size is projected from the last two sizes, and a
size whose projection exceeds --cg-limit seconds is skipped and marked so (a single run is
taken instead of a median once one run is projected past --cg-single seconds).

Columns: median ms of each tool, target calls per check (forward calls of the target, counted
by a wrapper), the ratio compute_gradient / gradcheck, gradcheck's verdict and compute_gradient's
max_error (|theoretical - numerical| over the Jacobian; TensorFlow's own activation tests accept
< 1e-4 in float32 and < 1e-6 in float64, see bench/detection.py).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import tensorflow as tf

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import TARGETS, Counted, inputs, machine_line, median_time, timed

import gradcheck

TF_TOLERANCE = {"float32": 1e-4, "float64": 1e-6}


def run_compute_gradient(fn, x):
    theoretical, numerical = tf.test.compute_gradient(fn, [x])
    return float(np.max(np.abs(theoretical[0] - numerical[0]), initial=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--repeats", type=int, default=7, help="gradcheck runs per cell")
    parser.add_argument("--cg-repeats", type=int, default=3, help="compute_gradient runs per cell")
    parser.add_argument("--cg-limit", type=float, default=60.0,
                        help="skip compute_gradient where one call is projected over this (s)")
    parser.add_argument("--cg-single", type=float, default=5.0,
                        help="one compute_gradient run instead of a median past this (s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(machine_line())
    print(f"{'target':<11} {'dtype':<8} {'n':>6} {'gradcheck ms':>12} {'calls':>5} "
          f"{'compute_gradient ms':>19} {'calls':>6} {'ratio':>7}  {'gc verdict':<10} "
          f"{'cg max_error':>12}")
    summary = []
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        for dtype in args.dtypes:
            history: list[tuple[int, float]] = []  # (n, one compute_gradient call in s)
            for n in args.sizes:
                x = inputs(n, dtype, args.seed)
                counted = Counted(fn)
                report = gradcheck.check(counted, x, elementwise=elementwise, name=name)
                calls = counted.calls
                ours = median_time(lambda: gradcheck.check(fn, x, elementwise=elementwise,
                                                           name=name), args.repeats)
                projected = _project(history, n)
                if projected is not None and projected > args.cg_limit:
                    print(f"{name:<11} {dtype:<8} {n:>6} {ours * 1e3:>12.2f} {calls:>5} "
                          f"{'skipped':>19} {'':>6} {'':>7}  {_verdict(report):<10}  "
                          f"compute_gradient skipped: projected {projected:.0f} s > "
                          f"--cg-limit {args.cg_limit:.0f} s")
                    continue
                cg_counted = Counted(fn)
                first, err = _timed_cg(cg_counted, x)
                if not history:  # the very first call also builds kernels: time it again
                    first, err = _timed_cg(fn, x)
                repeats = 1 if first > args.cg_single else args.cg_repeats
                theirs = first if repeats == 1 else median_time(
                    lambda: run_compute_gradient(fn, x), repeats)
                history.append((n, theirs))
                tol = TF_TOLERANCE.get(dtype)
                flag = "" if tol is None else ("<tol" if err < tol else ">=tol")
                print(f"{name:<11} {dtype:<8} {n:>6} {ours * 1e3:>12.2f} {calls:>5} "
                      f"{theirs * 1e3:>19.1f} {cg_counted.calls:>6} {theirs / ours:>7.0f}  "
                      f"{_verdict(report):<10} {err:>12.3g} {flag}"
                      + ("  (1 run)" if repeats == 1 else ""), flush=True)
                summary.append((name, dtype, n, theirs / ours))
    at_1000 = [(t, d, r) for t, d, n, r in summary if n == 1000 and TARGETS[t][1]]
    if at_1000:
        print("\nelementwise targets at n = 1000: compute_gradient / gradcheck = "
              + ", ".join(f"{t} {d} {r:.0f}x" for t, d, r in at_1000)
              + f" (target >= 100x): {'met' if min(r for *_, r in at_1000) >= 100 else 'MISSED'}")


def _timed_cg(fn, x) -> tuple[float, float]:
    """One compute_gradient call: (seconds, max_error)."""
    out = []
    seconds = timed(lambda: out.append(run_compute_gradient(fn, x)))
    return seconds, out[0]


def _project(history: list[tuple[int, float]], n: int) -> float | None:
    """Projected seconds of one compute_gradient call at n from the last two sizes: the fitted
    power of n, at least 1 (1 + 2n forward and n backward calls) and at most 2 (n x n)."""
    if not history:
        return None
    if len(history) == 1:
        (n0, t0), power = history[0], 1.0
    else:
        (n1, t1), (n0, t0) = history[-2], history[-1]
        power = min(2.0, max(1.0, math.log(t0 / t1) / math.log(n0 / n1))) if n0 != n1 else 1.0
    return t0 * (n / n0) ** power


def _verdict(report) -> str:
    return "ok" if report.ok else ",".join(report.kinds)


if __name__ == "__main__":
    main()
