"""Cost of gradcheck.sweep, and what it finds on keras' and tf.nn's elementwise activations.

1. A float16 sweep (every finite float16 value, 63 487 of them) against one plain eager
   forward+backward of the same target over the same values; a float32 sweep (dense per-binade
   grid plus refinement) against the same floor over its values. Interleaved, REPEATS times;
   the ratio of the fastest runs (the least disturbed on a shared machine) and of the medians.
   Every target's floor and sweep are timed in turn in each repetition, so all see the same
   load; the last line names the machine, its load and the gradcheck measured. A sweep that
   finds a NaN gradient names its cause from a graph trace kept for the next sweep of the
   same function (_hints.py): the ELU is timed both repeating a sweep and as a first sweep.
   To compare with another commit, run this file with that commit's gradcheck first on
   PYTHONPATH (see _common.gradcheck_source). A sweep fixes glibc's malloc thresholds
   itself (_heap.py), so its arrays reuse the pages the previous sweep freed whatever the
   order of the targets; leave MALLOC_* unset (set, they are the user's choice: the heap is
   not kept, and the reference's stacked calls stay under 1 MiB).
2. Every elementwise activation of keras.activations and tf.nn (the enumeration of
   tests/test_library_activations.py) swept in all four dtypes, with no domain: the findings.

    python bench/sweep_cost.py                  # both parts
    python bench/sweep_cost.py cost             # part 1 only
    python bench/sweep_cost.py library-cost     # part 1's float16 rows for part 2's targets
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import tensorflow as tf
from _common import machine_line

import gradcheck
from gradcheck import _hints, _sweep_values

REPEATS = 15
ELU = lambda x: tf.where(x > 0, x, tf.exp(x) - 1)


@tf.custom_gradient
def wrong_tanh(x):
    """A custom gradient wrong wherever tanh(x) is not 0 or 1: every rule runs on a third
    of the values (the worst case of the sweep's cost)."""
    return tf.tanh(x), lambda dy: dy * (1 - tf.tanh(x))  # d tanh = 1 - tanh^2


TARGETS = {"swish": lambda x: x * tf.sigmoid(x), "elu (seed, tf.where trap)": ELU,
           "selu": tf.nn.selu, "elu, hint traced afresh": ELU,
           "wrong custom gradient of tanh": wrong_tanh}
#: Rows whose sweep starts with no kept trace for the NaN hint (_hints._TRACES): a first sweep
#: of the target, where the others repeat one.
AFRESH = {"elu, hint traced afresh"}


def forward_backward(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x).numpy()


def cost(dtype, targets=TARGETS):
    """One table row per target: every target's floor and sweep are timed in turn within each
    repetition (floor, sweep, next target, ...), so a change of load hits all of them alike."""
    xs = {name: tf.constant(_sweep_values.values(dtype), dtype) for name in targets}
    for name, fn in targets.items():  # warm up: traces, kernels
        forward_backward(fn, xs[name])
        gradcheck.sweep(fn, dtype=dtype)
    floor = {name: [] for name in targets}
    sweep = {name: [] for name in targets}
    reports = {}
    for _ in range(REPEATS):
        for name, fn in targets.items():
            start = time.perf_counter()
            forward_backward(fn, xs[name])
            floor[name].append(time.perf_counter() - start)
            if name in AFRESH:
                getattr(_hints, "_TRACES", {}).clear()
            start = time.perf_counter()
            reports[name] = gradcheck.sweep(fn, dtype=dtype)
            sweep[name].append(time.perf_counter() - start)
    for name, report in reports.items():
        f, s = min(floor[name]), min(sweep[name])
        median = statistics.median(sweep[name]) / statistics.median(floor[name])
        print(f"| {name} | {dtype} | {report.meta['swept']} | {1e3 * f:.1f} | {1e3 * s:.1f} | "
              f"{s / f:.1f}x | {median:.1f}x | {', '.join(report.kinds) or 'OK'} |", flush=True)


def library_targets() -> dict:
    """keras' and tf.nn's elementwise activations, by name (tests/test_library_activations.py)."""
    import test_library_activations as lib

    return {name: fn for name, fn, options, skip in lib.TARGETS
            if not skip and options.get("elementwise") is not False}


def library():
    import test_library_activations as lib

    for name, fn in library_targets().items():
        for dtype in lib.DTYPES:
            report = gradcheck.sweep(fn, dtype=dtype, name=name)
            if not report.ok:
                for finding in report.findings:
                    print(f"- {name} [{dtype}]: {finding.message[:400]}", flush=True)


if __name__ == "__main__":
    print("| target | dtype | values swept | forward+backward ms | sweep ms | ratio (fastest) "
          "| ratio (medians) | found |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    if sys.argv[1:] == ["library-cost"]:
        cost("float16", library_targets())
    else:
        for dtype in ("float16", "float32"):
            cost(dtype)
    print(machine_line(), flush=True)
    if not sys.argv[1:]:
        print()
        library()
