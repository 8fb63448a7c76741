"""Should gradcheck use scipy.differentiate.derivative for its finite differences? Measured here.

    python bench/scipy_differentiate.py

For n elements of an elementwise target (swish, float64) it compares, in one run:
- target calls, wall time and worst error vs the exact derivative, for scipy's adaptive
  Richardson `derivative` and for gradcheck's fixed 5-point scheme (the samples check() takes);
- what each says at a kink (ReLU at 0): scipy's error estimate vs ours.
"""

import time

import numpy as np
import tensorflow as tf
from scipy.differentiate import derivative

from gradcheck._numerics import estimate, kinks, step


def swish(x):
    return x * tf.sigmoid(x)


def exact(x):
    s = 1 / (1 + np.exp(-x))
    return s + x * s * (1 - s)


def counted(fn):
    calls = [0]

    def f(x):
        calls[0] += 1
        return fn(tf.constant(x, tf.float64)).numpy()

    return f, calls


def ours(fn, x):
    f, calls = counted(fn)
    s = np.maximum(1.0, np.abs(x))
    h = step("float64")
    samples = {k: f(x + k * h * s) for k in (-2, -1, 0, 1, 2)}
    eps = np.finfo(float).eps
    rounding = eps * np.maximum(1.0, np.abs(samples[0])) * s
    numerical, bound = estimate(samples, h, rounding)
    return numerical / s, bound / s, kinks(samples, rounding), calls[0]


def main():
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'method':>8} {'calls':>6} {'ms':>8} {'max err':>9} {'max bound':>10}")
    for n in (1_000, 100_000):
        x = rng.uniform(-10, 10, n)
        start = time.perf_counter()
        f, calls = counted(swish)
        res = derivative(f, x)
        t_scipy = time.perf_counter() - start
        start = time.perf_counter()
        num, bound, _, our_calls = ours(swish, x)
        t_ours = time.perf_counter() - start
        d = exact(x)
        print(f"{n:>6} {'scipy':>8} {calls[0]:>6} {t_scipy * 1e3:>8.1f} "
              f"{np.max(np.abs(res.df - d)):>9.1e} {np.max(res.error):>10.1e}")
        print(f"{n:>6} {'ours':>8} {our_calls:>6} {t_ours * 1e3:>8.1f} "
              f"{np.max(np.abs(num - d)):>9.1e} {np.max(bound):>10.1e}")
    x = np.array([0.0, 1e-7, 0.5])
    f, _ = counted(tf.nn.relu)
    res = derivative(f, x)
    num, bound, kink, _ = ours(tf.nn.relu, x)
    print("ReLU at", x.tolist())
    print("  scipy: df", res.df.round(6).tolist(), "error", res.error.tolist(),
          "status", res.status.tolist())
    print("  ours:  df", num.round(6).tolist(), "bound", bound.tolist(), "kink", kink.tolist())


if __name__ == "__main__":
    main()
