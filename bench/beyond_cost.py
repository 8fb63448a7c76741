"""Cost of the checks beyond first order, relative to a first-order check, in one run.

    python bench/beyond_cost.py [--repeats 7]

For each target, times (medians, interleaved, after one warm-up call of each variant):

* ``first order``: ``check(..., modes=())``, the baseline (ratio 1.0);
* ``+ function``: the default ``modes=("eager", "function")`` -- the trace is cached per
  target, dtype and rank, so the steady state is one extra forward + VJP;
* ``+ function, new shape``: the same with a new batch size every call (what fuzzing does):
  no retrace, thanks to the ``None`` dims of the input signature;
* ``+ xla, new shape``: ``modes=("eager", "function", "xla")`` with a new batch size every
  call: XLA compiles once per shape, which is why it is opt-in;
* ``order=2``: ``modes=(), order=2``;
* ``policies``: ``modes=(), policies=("mixed_float16", "mixed_bfloat16")`` (layers only).

Ratios hold on a noisy shared machine where absolute times do not.
"""

import argparse
import itertools

import numpy as np
import tensorflow as tf
import keras

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import median_time, swish

import gradcheck


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dense = keras.layers.Dense(16, activation="tanh")
    x_dense = tf.constant(rng.normal(size=(8, 32)), tf.float32)
    dense(x_dense)
    targets = [
        ("swish (10 x 10)", swish, tf.constant(rng.uniform(-5, 5, (10, 10)), tf.float32), {}),
        ("swish (100 x 100)", swish, tf.constant(rng.uniform(-5, 5, (100, 100)), tf.float32),
         {}),
        ("Dense(16, tanh) (8 x 32)", dense, x_dense, {"elementwise": False}),
    ]
    batches = itertools.count(2)

    def new_shape(x):
        rows = next(batches) % 37 + 2
        return tf.constant(rng.normal(size=(rows,) + tuple(x.shape[1:])), x.dtype)

    print(f"{'target':<26} {'variant':<24} {'ms':>9} {'ratio':>7}")
    for label, target, x, options in targets:
        is_layer = isinstance(target, keras.layers.Layer)
        variants = {
            "first order": lambda: gradcheck.check(target, x, modes=(), **options),
            "+ function": lambda: gradcheck.check(target, x, **options),
            "first order, new shape": lambda: gradcheck.check(target, new_shape(x), modes=(),
                                                              **options),
            "+ function, new shape": lambda: gradcheck.check(target, new_shape(x), **options),
            "+ xla, new shape": lambda: gradcheck.check(
                target, new_shape(x), modes=("eager", "function", "xla"), **options),
            "order=2": lambda: gradcheck.check(target, x, modes=(), order=2, **options),
        }
        if is_layer:
            variants["policies"] = lambda: gradcheck.check(
                target, x, modes=(), policies=("mixed_float16", "mixed_bfloat16"), **options)
        for thunk in variants.values():
            thunk()  # warm up: traces, first compiles
        times = {name: median_time(thunk, args.repeats) for name, thunk in variants.items()}
        for name, seconds in times.items():
            base = times["first order, new shape" if "new shape" in name else "first order"]
            print(f"{label:<26} {name:<24} {seconds * 1e3:>9.2f} {seconds / base:>7.2f}")


if __name__ == "__main__":
    main()
