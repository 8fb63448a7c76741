"""Print the sweep's reports (kinds, extents, reproducers) of every keras / tf.nn elementwise
activation and a few user targets (the seed ELU, swish, a wrong custom gradient), in all four
dtypes, to diff before/after a change to the sweep (not a timing).

    python bench/sweep_reports.py > after.txt
    PYTHONPATH=<export>:<export>/plugin python bench/sweep_reports.py > before.txt
    diff before.txt after.txt     # a refactor or a speed-up changes nothing here
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import tensorflow as tf  # noqa: E402
import test_library_activations as lib  # noqa: E402

import gradcheck  # noqa: E402


@tf.custom_gradient
def wrong_tanh(x):
    return tf.tanh(x), lambda dy: dy * (1 - tf.tanh(x))  # d tanh = 1 - tanh^2


TARGETS = {name: fn for name, fn, options, skip in lib.TARGETS
           if not skip and options.get("elementwise") is not False}
TARGETS.update({"elu (seed, tf.where trap)": lambda x: tf.where(x > 0, x, tf.exp(x) - 1),
                "swish": lambda x: x * tf.sigmoid(x), "wrong custom gradient of tanh": wrong_tanh})

if __name__ == "__main__":
    for name, fn in TARGETS.items():
        for dtype in ("float16", "bfloat16", "float32", "float64"):
            report = gradcheck.sweep(fn, dtype=dtype, name=name)
            print(f"== {name} [{dtype}] swept {report.meta['swept']} "
                  f"excluded {report.meta['excluded_overflow']} kinds {report.kinds}")
            for finding in report.findings:
                print(f"  {finding.kind}: {finding.message}")
                print(f"    inputs {finding.inputs} details {finding.details}")
            print(f"  reproducer: {report.reproducer}")
