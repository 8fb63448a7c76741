"""Detection threshold: the smallest relative gradient error each tool catches, with no false alarm.

    .venv/bin/python bench/detection.py                 # ~3-5 min on 2 shared cores
    .venv/bin/python bench/detection.py --sets 4 --domains 1   # quick look (~30 s)

A custom gradient is made wrong by a relative error eps: grad = dy * f'(x) * (1 + eps), for a
tf.custom_gradient ELU and a tf.custom_gradient swish (bench/_common.py). For each dtype
(float32, float64) and input domain [-a, a], --sets input sets of --n values (uniform, one seed
per set) are drawn; both tools see exactly the same tensors.

* False positives: the correct version (eps = 0) on every set. A tool that flags it has no
  detection threshold at that tolerance on these inputs ("FP k/N").
* Threshold: per set, the smallest eps on a quarter-decade grid (1 ... 1e-14) the tool flags,
  found by bisection (detection is monotone in eps away from the threshold); the reported eps
  is the largest of those over the sets, i.e. the smallest grid eps caught on *every* set, and
  it is re-checked on every set ("caught k/N").

gradcheck: ``gradcheck.check(fn, x)`` with its derived tolerances (no rtol/atol); flagged when
``report.ok`` is False.

tf.test.compute_gradient: default delta (1/1024), flagged when
max_error = max |theoretical - numerical| over the Jacobian is >= the tolerance TensorFlow's own
gradient tests assert for that dtype (``self.assertLess(err, tol)``), NaN counting as flagged:

* float32: 1e-4 -- tensorflow/python/kernel_tests/nn_ops/relu_op_test.py
  (EluTest.testGradientFloat32, SeluTest.testGradientFloat32, LeakyReluTest.testGradientFloat32)
  and tensorflow/python/ops/nn_grad_test.py (SwishGradOpTest.testSwishGrad, SoftmaxOpTest);
* float64: 1e-6 -- relu_op_test.py (EluTest.testGradientFloat64, SeluTest.testGradientFloat64).
  (TensorFlow commit 0304934138cbfabd338ec432a630a9c3c1191564. Those tests use inputs in
  [-0.9, 0.9]; some float64 tests assert 1e-10, which compute_gradient's 1/1024 step cannot meet
  on exp-based activations: h^2 |f'''| / 6 ~ 1e-7.)

A second compute_gradient column, "calibrated", replaces TensorFlow's tolerance by the largest
max_error of the correct version over --sets *other* input sets drawn the same way (held out:
calibrating on the judged sets themselves would flag any eps that nudges the worst entry):
the tightest fixed tolerance a user could have tuned for this function, dtype and domain, so
it flatters compute_gradient; it may still give false positives on the judged sets.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import machine_line, make_custom_elu, make_custom_swish

import gradcheck

# See the docstring for where these come from.
TF_TOLERANCE = {"float32": 1e-4, "float64": 1e-6}
GRID = [10.0 ** (-k / 4) for k in range(0, 57)]  # 1 ... 1e-14, quarter decades
FUNCTIONS = {"custom_elu": make_custom_elu, "custom_swish": make_custom_swish}


class Cache:
    """Builds each (function, eps) once and memoises each tool's raw result per (set, eps)."""

    def __init__(self, make):
        self.make = make
        self.fns: dict[float, object] = {}
        self.gc: dict[tuple[int, float], bool] = {}
        self.cg: dict[tuple[int, float], float] = {}
        self.gc_seconds = 0.0
        self.cg_seconds = 0.0

    def fn(self, eps: float):
        if eps not in self.fns:
            self.fns[eps] = self.make(eps)
        return self.fns[eps]

    def gradcheck_flags(self, i: int, x, eps: float) -> bool:
        key = (i, eps)
        if key not in self.gc:
            start = time.perf_counter()
            self.gc[key] = not gradcheck.check(self.fn(eps), x).ok
            self.gc_seconds += time.perf_counter() - start
        return self.gc[key]

    def max_error(self, i: int, x, eps: float) -> float:
        key = (i, eps)
        if key not in self.cg:
            start = time.perf_counter()
            theoretical, numerical = tf.test.compute_gradient(self.fn(eps), [x])
            diff = np.abs(np.asarray(theoretical[0], float) - np.asarray(numerical[0], float))
            self.cg[key] = float(np.nan if np.isnan(diff).any() else diff.max())
            self.cg_seconds += time.perf_counter() - start
        return self.cg[key]


def smallest_caught(flags) -> int | None:
    """Index into GRID of the smallest eps flagged, by bisection; None if even GRID[0] is not."""
    if not flags(0):
        return None
    lo, hi = 0, len(GRID) - 1  # lo: flagged; hi: assumed not (the correct version passed)
    if flags(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if flags(mid):
            lo = mid
        else:
            hi = mid
    return lo


def threshold(xs, flags_at) -> tuple[str, str]:
    """(eps caught on every set, 'caught k/N' check) or ('FP k/N', '') when eps = 0 is flagged."""
    false = sum(flags_at(i, x, 0.0) for i, x in enumerate(xs))
    if false:
        return f"FP {false}/{len(xs)}", ""
    per_set = [smallest_caught(lambda k, i=i, x=x: flags_at(i, x, GRID[k]))
               for i, x in enumerate(xs)]
    if any(k is None for k in per_set):
        return f">{GRID[0]:g}", ""
    k = min(per_set)  # the largest eps among the per-set thresholds
    caught = sum(flags_at(i, x, GRID[k]) for i, x in enumerate(xs))
    return f"{GRID[k]:.2g}", f"{caught}/{len(xs)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="values per input set")
    parser.add_argument("--sets", type=int, default=10, help="input sets (seeds) per cell")
    parser.add_argument("--domains", type=float, nargs="+", default=[1.0, 10.0],
                        help="half-widths a of the input domains [-a, a]")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS),
                        choices=list(FUNCTIONS))
    args = parser.parse_args()

    print(machine_line())
    print(f"# {args.sets} input sets x {args.n} values per cell; eps grid 1 ... 1e-14 in "
          f"quarter decades; compute_gradient tolerance (TensorFlow's tests): "
          + ", ".join(f"{d} {t:g}" for d, t in TF_TOLERANCE.items()))
    print(f"{'function':<13} {'dtype':<8} {'domain':>8} | {'gradcheck eps':>13} {'caught':>6} | "
          f"{'cg@TF-tol eps':>13} {'caught':>6} | {'held-out tol':>17} {'eps':>8} "
          f"{'caught':>6} | {'gc s/check':>10} {'cg s/call':>9}")
    for name in args.functions:
        for dtype in args.dtypes:
            for a in args.domains:
                cache = Cache(FUNCTIONS[name])
                rng = np.random.default_rng(int(a * 1000))  # same values in every dtype
                xs = [tf.constant(rng.uniform(-a, a, size=(args.n // 10, 10)), dtype)
                      for _ in range(args.sets)]
                held_out = [tf.constant(rng.uniform(-a, a, size=(args.n // 10, 10)), dtype)
                            for _ in range(args.sets)]
                gc_eps, gc_caught = threshold(xs, cache.gradcheck_flags)
                tol = TF_TOLERANCE[dtype]
                cg_eps, cg_caught = threshold(
                    xs, lambda i, x, e: not cache.max_error(i, x, e) < tol)
                calibrated = max(cache.max_error(len(xs) + i, x, 0.0)
                                 for i, x in enumerate(held_out))
                # Flagged as in TensorFlow's tests: not max_error < tolerance.
                cal_eps, cal_caught = threshold(
                    xs, lambda i, x, e: not cache.max_error(i, x, e) < calibrated)
                print(f"{name:<13} {dtype:<8} {f'[-{a:g},{a:g}]':>8} | {gc_eps:>13} "
                      f"{gc_caught:>6} | {cg_eps:>13} {cg_caught:>6} | {calibrated:>17.3g} "
                      f"{cal_eps:>8} {cal_caught:>6} | "
                      f"{cache.gc_seconds / max(1, len(cache.gc)):>10.4f} "
                      f"{cache.cg_seconds / max(1, len(cache.cg)):>9.3f}", flush=True)


if __name__ == "__main__":
    main()
