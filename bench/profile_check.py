"""Where the time of one gradcheck.check goes: cProfile buckets plus a cost model from parts.

    .venv/bin/python bench/profile_check.py                      # swish float32, n = 1e5
    .venv/bin/python bench/profile_check.py --target softmax --n 100000
    .venv/bin/python bench/profile_check.py --n 1000000 --top 25
    .venv/bin/python bench/profile_check.py --fuzz examples/custom_gradients.py:custom_elu

With --fuzz FILE:TARGET it profiles one item of the whole run instead (fuzz_registered of that
declared target in --dtype, the Hypothesis profile's examples, no example database): time per
example, and how much of it is gradcheck.check vs Hypothesis vs the rest.

Prints, for one target / dtype / n:
1. the cost of the parts a check is made of, timed alone (medians): one forward+backward in the
   input dtype (the floor of bench/cost.py), one forward in the float64 reference with the
   tf.constant it needs and the float64 NumPy copy of its output, one full-size NumPy pass;
2. the target calls a check makes (counted) and the check's own median time, with the ratio;
3. a cProfile of --profile-runs checks: cumulative time of gradcheck's steps, and total
   self time by where the code lives (gradcheck/_check.py, _numerics.py, NumPy, TensorFlow's
   Python, TensorFlow's kernels via pywrap, other), then the --top functions by self time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import numpy as np
import tensorflow as tf

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import TARGETS, Counted, forward_backward, inputs, machine_line, median_time

import gradcheck

STEPS = ["check", "forward_backward", "choose_reference", "evaluate", "samples",
         "confirm_elementwise", "check_diagonal", "confirm_batch_independent", "check_rows",
         "check_joint", "judge_lines", "_judge_carefully", "estimate", "kinks", "rounding",
         "within_rounding_window", "_f64", "_signed", "as_tensors", "judge", "check_modes",
         "check_loss_scaled"]


def bucket(filename: str) -> str:
    if any(f"gradcheck/{m}.py" in filename for m in ("_check", "_routes", "_arrays")):
        return "gradcheck/_check.py (NumPy glue, own lines)"
    if "gradcheck/_numerics.py" in filename:
        return "gradcheck/_numerics.py (own lines)"
    if "gradcheck/" in filename:
        return "gradcheck/other"
    if "numpy" in filename or filename.startswith("<__array_function__") or "{method '" in filename:
        return "numpy"
    if "pywrap" in filename or "_pywrap" in filename or "TFE_" in filename:
        return "tensorflow C++ (ops, kernels)"
    if "tensorflow" in filename or "keras" in filename:
        return "tensorflow/keras Python"
    if filename.startswith("~") or filename.startswith("<built-in"):
        return "builtins (incl. C calls into TF/NumPy)"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="swish", choices=list(TARGETS))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile-runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--fuzz", metavar="FILE:TARGET", default=None)
    parser.add_argument("--no-modes", action="store_true",
                        help="pass modes=() (first-order check only) where check() has it")
    args = parser.parse_args()
    if args.fuzz:
        profile_fuzz(args.fuzz, args.dtype, args.top)
        return
    fn, elementwise = TARGETS[args.target]
    if args.no_modes:
        check = gradcheck.check
        gradcheck.check = lambda *a, **k: check(*a, modes=(), **k)
    x = inputs(args.n, args.dtype)
    x64 = tf.cast(x, tf.float64)
    a64 = x64.numpy()

    print(machine_line())
    print(f"# {args.target}, {args.dtype}, n = {args.n}, elementwise={elementwise}"
          + (", modes=()" if args.no_modes else ""))
    counted = Counted(fn)
    gradcheck.check(counted, x, elementwise=elementwise)
    forward_backward(fn, x)
    parts = {
        "forward+backward, input dtype (the floor)": lambda: forward_backward(fn, x),
        "forward only, input dtype": lambda: fn(x).numpy(),
        "forward in float64 from NumPy (tf.constant + call + cast/.numpy())":
            lambda: np.asarray(tf.cast(fn(tf.constant(a64 + 1e-3, tf.float64)),
                                       tf.float64).numpy()),
        "float64 forward call alone (tensor already built)": lambda: fn(x64).numpy(),
        "tf.constant(float64 array)": lambda: tf.constant(a64, tf.float64),
        "one NumPy pass over n float64 (a * b + c)": lambda: a64 * a64 + a64,
        "rng.uniform(size=n) + rng.choice(size=n)": lambda: (
            np.random.default_rng(0).choice([-1.0, 1.0], size=a64.shape),
            np.random.default_rng(0).uniform(0.5, 1.5, size=a64.shape)),
        "gradcheck.check": lambda: gradcheck.check(fn, x, elementwise=elementwise),
    }
    times = {k: median_time(t, args.repeats) for k, t in parts.items()}
    floor = times["forward+backward, input dtype (the floor)"]
    print(f"\n{'part':<70} {'ms':>9} {'x floor':>8}")
    for k, t in times.items():
        print(f"{k:<70} {t * 1e3:>9.3f} {t / floor:>8.2f}")
    print(f"target calls per check: {counted.calls} (1 in {args.dtype} under the tape, the rest "
          f"in the float64 reference)")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.profile_runs):
        gradcheck.check(fn, x, elementwise=elementwise)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw = stats.stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in raw.values())
    runs = args.profile_runs
    print(f"\ncProfile over {runs} checks: {total / runs * 1e3:.1f} ms per check "
          f"(profiler overhead included)")
    print(f"{'gradcheck step (cumulative, per check)':<44} {'ms':>8} {'%':>6} {'calls':>6}")
    for step in STEPS:
        hits = [(k, v) for k, v in raw.items() if k[2] == step and "gradcheck" in k[0]]
        if not hits:
            continue
        cum = sum(v[3] for _, v in hits)
        ncalls = sum(v[1] for _, v in hits)
        print(f"{step:<44} {cum / runs * 1e3:>8.2f} {100 * cum / total:>6.1f} "
              f"{ncalls / runs:>6.1f}")
    buckets: dict[str, float] = {}
    for (filename, _, name), v in raw.items():
        label = bucket(filename if filename != "~" else name)
        buckets[label] = buckets.get(label, 0.0) + v[2]
    print(f"\n{'self time by where the code lives':<44} {'ms':>8} {'%':>6}")
    for label, t in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"{label:<44} {t / runs * 1e3:>8.2f} {100 * t / total:>6.1f}")
    print(f"\ntop {args.top} functions by self time (per check):")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:args.top]
    for (filename, line, name), v in rows:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"  {v[2] / runs * 1e3:>8.2f} ms {v[1] / runs:>7.1f} calls  {name}  "
              f"({where}:{line})")


def profile_fuzz(spec: str, dtype: str, top: int) -> None:
    import importlib.util
    import time

    from hypothesis import settings

    from gradcheck._declare import registered_in
    from gradcheck._fuzz import fuzz_registered

    path, name = spec.rsplit(":", 1)
    module_spec = importlib.util.spec_from_file_location("bench_fuzz_target", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    entry = next(e for e in registered_in(module.__name__) if e.name == name)
    settings.register_profile("bench-no-db", database=None)
    settings.load_profile("bench-no-db")
    print(machine_line())
    fuzz_registered(entry, dtype, max_examples=5)  # warm up: tracing, imports
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    report = fuzz_registered(entry, dtype)
    profiler.disable()
    wall = time.perf_counter() - start
    examples = report.meta.get("examples", 0)
    raw = pstats.Stats(profiler).stats
    total = sum(v[2] for v in raw.values())

    def cumulative(func: str, where: str) -> tuple[float, float]:
        hits = [v for k, v in raw.items() if k[2] == func and where in k[0]]
        return sum(v[3] for v in hits), sum(v[1] for v in hits)

    print(f"# fuzz {spec} [{dtype}]: {examples} examples, {wall:.2f} s "
          f"({wall / max(1, examples) * 1e3:.1f} ms per example; profiled total "
          f"{total:.2f} s), ok={report.ok}")
    for func, where in (("check", "gradcheck/_check.py"), ("execute", "gradcheck/_check.py"),
                        ("forward_backward", "gradcheck/_check.py"),
                        ("check_gradients", "gradcheck/_check.py"),
                        ("evaluate", "gradcheck/_check.py"), ("as_tensors", "gradcheck/_inputs.py"),
                        ("as_target", "gradcheck/_targets.py"),
                        ("do_draw", "hypothesis"),
                        ("draw", "hypothesis/internal/conjecture/data.py"),
                        ("inputs_for", "gradcheck/strategies.py")):
        cum, ncalls = cumulative(func, where)
        if ncalls:
            print(f"  {func:<18} ({where}) {cum:7.3f} s {100 * cum / total:5.1f}%  "
                  f"{ncalls:6.0f} calls")
    by: dict[str, float] = {}
    for (filename, _, fname), v in raw.items():
        key = ("hypothesis" if "hypothesis" in filename else
               "gradcheck/" + filename.split("gradcheck/")[-1] if "gradcheck/" in filename else
               "numpy" if "numpy" in filename else
               "tensorflow/keras Python" if ("tensorflow" in filename or "keras" in filename)
               else "C calls (TF ops, NumPy, builtins)" if filename == "~" else "other Python")
        by[key] = by.get(key, 0.0) + v[2]
    print("  self time by module:")
    for key, t in sorted(by.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {key:<40} {t:7.3f} s {100 * t / total:5.1f}%")
    print(f"  top {top} by self time:")
    for (filename, line, fname), v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        where = filename.split("site-packages/")[-1]
        print(f"    {v[2]:7.3f} s {v[1]:8.0f} calls  {fname}  ({where}:{line})")


if __name__ == "__main__":
    main()
