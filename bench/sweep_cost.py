"""Cost of gradcheck.sweep, and what it finds on keras' and tf.nn's elementwise activations.

1. A float16 sweep (every finite float16 value, 63 487 of them) against one plain eager
   forward+backward of the same target over the same values; a float32 sweep (dense per-binade
   grid plus refinement) against the same floor over its values. Interleaved, REPEATS times;
   the ratio of the fastest runs (the least disturbed on a shared machine) and of the medians.
2. Every elementwise activation of keras.activations and tf.nn (the enumeration of
   tests/test_library_activations.py) swept in all four dtypes, with no domain: the findings.

    python bench/sweep_cost.py            # both parts
    python bench/sweep_cost.py cost       # part 1 only
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck import _sweep_values  # noqa: E402

REPEATS = 15
TARGETS = {"selu": tf.nn.selu, "swish": lambda x: x * tf.sigmoid(x),
           "elu (seed, tf.where trap)": lambda x: tf.where(x > 0, x, tf.exp(x) - 1)}


def forward_backward(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x).numpy()


def cost(name, fn, dtype):
    x = tf.constant(_sweep_values.values(dtype), dtype)
    forward_backward(fn, x)
    gradcheck.sweep(fn, dtype=dtype)  # warm up: traces, kernels
    floor, sweep = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        forward_backward(fn, x)
        floor.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = gradcheck.sweep(fn, dtype=dtype)
        sweep.append(time.perf_counter() - start)
    f, s = min(floor), min(sweep)
    median = statistics.median(sweep) / statistics.median(floor)
    print(f"| {name} | {dtype} | {report.meta['swept']} | {1e3 * f:.1f} | {1e3 * s:.1f} | "
          f"{s / f:.1f}x | {median:.1f}x | {', '.join(report.kinds) or 'OK'} |", flush=True)


def library():
    import test_library_activations as lib

    for name, fn, options, skip in lib.TARGETS:
        if skip or options.get("elementwise") is False:
            continue
        for dtype in lib.DTYPES:
            report = gradcheck.sweep(fn, dtype=dtype, name=name)
            if not report.ok:
                for finding in report.findings:
                    print(f"- {name} [{dtype}]: {finding.message[:400]}", flush=True)


if __name__ == "__main__":
    print("| target | dtype | values swept | forward+backward ms | sweep ms | ratio (fastest) "
          "| ratio (medians) | found |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"load average {os.getloadavg()}", flush=True)
    for name, fn in TARGETS.items():
        for dtype in ("float16", "float32"):
            cost(name, fn, dtype)
    if sys.argv[1:] != ["cost"]:
        print()
        library()
