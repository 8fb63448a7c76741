"""One fuzz example's check of each declared example layer, at one input: where a layer item's
time goes per example, without Hypothesis, the sweep or first-call traces.

    .venv/bin/python bench/layer_checks.py                     # ~1 min
    PYTHONPATH=/tmp/gc:/tmp/gc/plugin .venv/bin/python bench/layer_checks.py   # another commit

For each layer declared in examples/trainable_layers.py and examples/per_layer_activations.py
(and each --dtypes), one ``_Fuzz`` item as ``pytest --gradcheck`` makes it checks the same
input (shape --shape, uniform in [-3, 3], or the declaration's own feature axes) once to build
the layer, its float64 twin and their traces, then --repeats more times; the median of those
is printed, with the float64 reference calls one check makes (the twin's ``__call__``s that
are not nested in another layer's). Modes are compared on the first check only (its value
classes are then covered, ``_mode_sample.py``), as on a repeated fuzz example. Interleave two
commits' runs to compare them: the machine is shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
import keras
import numpy as np
from _common import machine_line

from gradcheck._declare import registered_in
from gradcheck._fuzz import _Fuzz

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = ("trainable_layers.py", "per_layer_activations.py")


def layers() -> list:
    found = []
    for name in FILES:
        spec = importlib.util.spec_from_file_location(f"bench_{name[:-3]}", EXAMPLES / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += [e for e in registered_in(module.__name__) if e.declaration.kind == "layer"]
    return found


def input_for(entry, shape: tuple[int, ...], dtype: str, rng) -> tuple[np.ndarray, ...]:
    declared = entry.declaration.input_shape
    if declared is not None:  # fixed feature axes: (None, 4) -> (batch, 4)
        shape = tuple(shape[0] if d is None else d for d in declared)
    return (rng.uniform(-3, 3, shape).astype(dtype),)


def forget(fz: _Fuzz) -> None:
    """Check the same input again, on purpose: a fuzz run skips one that passed (6ac0fc3 on)."""
    if hasattr(fz, "passed_digests"):
        fz.passed_digests.clear()


def reference_calls(fz: _Fuzz, x) -> int:
    """The float64 layer calls one check of x makes (outermost ``__call__``s only)."""
    real, depth, count = keras.layers.Layer.__call__, [0], [0]

    def counted(self, *args, **kwargs):
        if depth[0] == 0 and getattr(self, "compute_dtype", None) == "float64":
            count[0] += 1
        depth[0] += 1
        try:
            return real(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    keras.layers.Layer.__call__ = counted
    try:
        fz.example(x)
    finally:
        keras.layers.Layer.__call__ = real
    return count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--dtypes", default="float32,float16")
    parser.add_argument("--shape", default="3,5", help="batch, features (default 3,5)")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    print(machine_line())
    print(f"# median of {args.repeats} checks of one fuzz example at the same input, after one "
          f"that builds and traces; float64 calls: the reference's per check")
    print(f"{'layer':24} {'dtype':9} {'ms':>8} {'float64 calls':>14}")
    rng = np.random.default_rng(0)
    for entry in layers():
        for dtype in args.dtypes.split(","):
            fz = _Fuzz(entry, dtype, 5, 0, None)
            x = input_for(entry, shape, dtype, rng)
            fz.example(x)
            times = []
            for _ in range(args.repeats):
                forget(fz)
                start = time.perf_counter()
                fz.example(x)
                times.append(time.perf_counter() - start)
            forget(fz)
            calls = reference_calls(fz, x)
            print(f"{entry.name:24} {dtype:9} {statistics.median(times) * 1e3:8.2f} {calls:14d}")


if __name__ == "__main__":
    main()
