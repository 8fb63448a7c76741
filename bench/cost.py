"""Cost of one gradcheck.check against one plain eager forward+backward pass of the same target.

    python bench/cost.py [--sizes 1000 100000] [--repeats 7]

Both are timed in the same run, interleaved, and the medians' ratio is printed: ratios hold on
a noisy shared machine where absolute times do not.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

import gradcheck


def swish(x):
    return x * tf.sigmoid(x)


def forward_backward(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x, output_gradients=tf.ones_like(y)).numpy()


def median_time(thunk, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        thunk()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'n':>9} {'fwd+bwd ms':>11} {'check ms':>10} {'ratio':>7}   (swish, {args.dtype})")
    for n in args.sizes:
        x = tf.constant(rng.uniform(-10, 10, size=(n // 10, 10)), args.dtype)
        forward_backward(swish, x), gradcheck.check(swish, x)  # warm up
        base = median_time(lambda: forward_backward(swish, x), args.repeats)
        ours = median_time(lambda: gradcheck.check(swish, x), args.repeats)
        print(f"{n:>9} {base * 1e3:>11.3f} {ours * 1e3:>10.2f} {ours / base:>7.1f}")


if __name__ == "__main__":
    main()
