"""Shared pieces of the bench/ scripts: the targets, timing, call counting, quiet TensorFlow.

Not a benchmark itself. The scripts put bench/ on sys.path (Python does that for a script), so
``import _common`` works when they are run as ``python bench/<script>.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN / CPU-feature banners

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


# -- targets ---------------------------------------------------------------------------------

def swish(x):
    """Elementwise, plain autodiff."""
    return x * tf.sigmoid(x)


def softmax(x):
    """Not elementwise: softmax over the last axis (rows are independent)."""
    return tf.nn.softmax(x, axis=-1)


def make_custom_elu(eps: float = 0.0):
    """ELU with a hand-written gradient, its derivative scaled by (1 + eps): dy * f'(x) * (1+eps).

    eps = 0 is the correct version. Written as users write it (examples/custom_gradients.py):
    exp only sees min(x, 0), so nothing overflows.
    """
    scale = 1.0 + eps

    @tf.custom_gradient
    def custom_elu(x):
        positive = x > 0
        safe_x = tf.minimum(x, tf.zeros_like(x))
        y = tf.where(positive, x, tf.math.expm1(safe_x))

        def grad(dy):
            d = tf.where(positive, tf.ones_like(x), tf.math.exp(safe_x))
            return dy * d * tf.constant(scale, x.dtype)

        return y, grad

    return custom_elu


def make_custom_swish(eps: float = 0.0):
    """swish with a hand-written gradient, dy * f'(x) * (1 + eps), f' = s + x s (1 - s)."""
    scale = 1.0 + eps

    @tf.custom_gradient
    def custom_swish(x):
        s = tf.sigmoid(x)
        y = x * s

        def grad(dy):
            return dy * (s + x * s * (1 - s)) * tf.constant(scale, x.dtype)

        return y, grad

    return custom_swish


custom_elu = make_custom_elu()

# name -> (callable, elementwise)
TARGETS: dict[str, tuple[Callable, bool]] = {
    "swish": (swish, True),
    "custom_elu": (custom_elu, True),
    "softmax": (softmax, False),
}


def inputs(n: int, dtype: str, seed: int = 0, domain=(-10.0, 10.0)) -> tf.Tensor:
    """n values uniform in ``domain`` as a (n // 10, 10) batch (n < 10: shape (1, n))."""
    rng = np.random.default_rng(seed)
    shape = (n // 10, 10) if n >= 10 else (1, n)
    return tf.constant(rng.uniform(*domain, size=shape), dtype)


# -- timing ----------------------------------------------------------------------------------

def forward_backward(fn, x):
    """One plain eager forward + backward pass, gradient fetched to NumPy: the floor."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x, output_gradients=tf.ones_like(y)).numpy()


def timed(thunk: Callable[[], Any]) -> float:
    start = time.perf_counter()
    thunk()
    return time.perf_counter() - start


def median_time(thunk: Callable[[], Any], repeats: int) -> float:
    return statistics.median(timed(thunk) for _ in range(repeats))


def interleaved_medians(thunks: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each thunk, run round-robin so load changes hit all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in thunks}
    for _ in range(repeats):
        for k, thunk in thunks.items():
            times[k].append(timed(thunk))
    return {k: statistics.median(v) for k, v in times.items()}


class Counted:
    """Wrap a target to count its calls (forward evaluations, whatever dtype)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.__name__ = getattr(fn, "__name__", "target")
        self.__qualname__ = self.__name__

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def gradcheck_source() -> str:
    """Which gradcheck is measured: its directory and git state (commit, dirty or not).

    To measure a commit without others' uncommitted edits, export it and put it first on the
    path: ``git archive HEAD | tar -x -C /tmp/gc && git rev-parse HEAD > /tmp/gc/COMMIT`` and
    ``PYTHONPATH=/tmp/gc:/tmp/gc/plugin python bench/<script>.py`` (the editable install's
    finder comes after sys.path).
    """
    import subprocess

    import gradcheck

    where = os.path.dirname(os.path.dirname(os.path.abspath(gradcheck.__file__)))
    try:
        state = subprocess.run(["git", "-C", where, "describe", "--always", "--dirty"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        state = ""
    if not state and os.path.exists(os.path.join(where, "COMMIT")):
        with open(os.path.join(where, "COMMIT")) as f:
            state = f"export of {f.read().strip()[:10]}"
    return f"gradcheck from {where} ({state or 'unknown state'})"


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"# {platform.node()} {os.cpu_count()} cpus, load avg {load[0]:.2f} "
            f"{load[1]:.2f} {load[2]:.2f}; tensorflow {tf.__version__}, numpy {np.__version__}; "
            f"{gradcheck_source()}")
