"""Cost of one gradcheck.check against one plain eager forward+backward pass of the same target.

    .venv/bin/python bench/cost.py                         # n = 1e2 ... 1e6, swish float32 (~1 min)
    .venv/bin/python bench/cost.py --sizes 1000 100000 --repeats 7
    .venv/bin/python bench/cost.py --targets swish custom_elu softmax --dtype float64

Both are timed in the same run, interleaved (one forward+backward, one check, and again), and
the medians' ratio is printed: ratios hold on a noisy shared machine where absolute times do
not. "calls" is the number of forward calls of the target one check makes (counted by a
wrapper); "growth" is the local slope d log(ratio) / d log(n) from the previous size (0: the
ratio is flat in n; 0.3: it grows as n^0.3). The last line fits one slope over all sizes.
Where check() has the ``modes`` option (eager vs tf.function agreement, on by default), the
first-order check alone (``modes=()``) is timed in the same rounds: columns "1st-order ms"
and its ratio.
"""

import argparse
import inspect
import math

import numpy as np
import tensorflow as tf

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import TARGETS, Counted, interleaved_medians, machine_line

import gradcheck


def swish(x):
    return x * tf.sigmoid(x)


def forward_backward(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x, output_gradients=tf.ones_like(y)).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[100, 1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--targets", nargs="+", default=["swish"], choices=list(TARGETS))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(machine_line())
    has_modes = "modes" in inspect.signature(gradcheck.check).parameters
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        extra = f" {'1st-order ms':>12} {'ratio':>6}" if has_modes else ""
        print(f"{'n':>9} {'fwd+bwd ms':>11} {'check ms':>10} {'calls':>6} {'ratio':>7} "
              f"{'growth':>7}{extra}   ({name}, {args.dtype}, elementwise={elementwise})")
        rows = []
        for n in args.sizes:
            x = tf.constant(rng.uniform(-10, 10, size=(n // 10, 10)), args.dtype)
            counted = Counted(fn)
            forward_backward(fn, x), gradcheck.check(counted, x, elementwise=elementwise)  # warm up
            thunks = {
                "base": lambda: forward_backward(fn, x),
                "check": lambda: gradcheck.check(fn, x, elementwise=elementwise),
            }
            if has_modes:
                thunks["first"] = lambda: gradcheck.check(fn, x, elementwise=elementwise,
                                                          modes=())
            med = interleaved_medians(thunks, args.repeats)
            ratio = med["check"] / med["base"]
            growth = ""
            if rows:
                n0, r0 = rows[-1]
                growth = f"{math.log(ratio / r0) / math.log(n / n0):+.2f}"
            rows.append((n, ratio))
            extra = (f" {med['first'] * 1e3:>12.2f} {med['first'] / med['base']:>6.1f}"
                     if has_modes else "")
            print(f"{n:>9} {med['base'] * 1e3:>11.3f} {med['check'] * 1e3:>10.2f} "
                  f"{counted.calls:>6} {ratio:>7.1f} {growth:>7}{extra}", flush=True)
        if len(rows) >= 2:
            logn = np.log([n for n, _ in rows])
            slope = np.polyfit(logn, np.log([r for _, r in rows]), 1)[0]
            at = dict(rows).get(100_000)
            verdict = ("" if at is None else
                       f"; at n = 1e5: {at:.1f}x (target <= 5x: {'met' if at <= 5 else 'MISSED'})")
            print(f"# {name}: ratio ~ n^{slope:.2f} over n = {rows[0][0]:.0e}..{rows[-1][0]:.0e}"
                  f"{verdict}\n")


if __name__ == "__main__":
    main()
