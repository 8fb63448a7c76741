"""Print the sweep's reports (kinds, extents, reproducers) of a few targets with findings, in all
four dtypes, to diff before/after a change to the sweep (not a timing).

    python bench/sweep_reports.py > before.txt
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import gradcheck  # noqa: E402

TARGETS = {"tf.nn.selu": tf.nn.selu, "keras.activations.celu": keras.activations.celu,
           "keras.activations.squareplus": keras.activations.squareplus,
           "elu (seed, tf.where trap)": lambda x: tf.where(x > 0, x, tf.exp(x) - 1)}

if __name__ == "__main__":
    for name, fn in TARGETS.items():
        for dtype in ("float16", "bfloat16", "float32", "float64"):
            report = gradcheck.sweep(fn, dtype=dtype, name=name)
            print(f"== {name} [{dtype}] swept {report.meta['swept']} "
                  f"excluded {report.meta['excluded_overflow']} kinds {report.kinds}")
            for finding in report.findings:
                print(f"  {finding.kind}: {finding.message}")
                print(f"    inputs {finding.inputs} details {finding.details}")
            print(f"  reproducer: {report.reproducer}", flush=True)
