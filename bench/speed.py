"""Speed of one gradcheck.check (issue 16): against one plain forward+backward and compute_gradient.

    .venv/bin/python bench/speed.py                        # ~2 min
    .venv/bin/python bench/speed.py --repeats 15 --sizes 10 1000 100000
    PYTHONPATH=/tmp/gc:/tmp/gc/plugin .venv/bin/python bench/speed.py   # another commit (see
                                                           # _common.gradcheck_source)

Prints, in one run:

(a) for swish and the custom ELU (float32, inputs uniform in [-10, 10] as an (n/10, 10) batch):
    the median time of one plain eager forward+backward (the floor), of one check with the
    default options (``modes`` included) and of one check with ``modes=()``, timed round-robin
    (floor, check, check, floor, ...) so that load changes hit all three alike; the ratios to
    the floor are what the issue's goals are stated in. The same rounds also give the ratios
    of this process's CPU time, steadier than wall time where other processes share the
    cores (waiting for a core is not counted);
(b) one check against one ``tf.test.compute_gradient`` at --cg-n (interleaved the same way);
(c) the target calls one check makes: eager calls (counted by a wrapper), the elements they
    evaluate in units of n (a call on a stacked input of 4n counts 1 call and 4n), split by
    dtype; and the mode check's traced calls, which run a graph without calling the Python
    function (counted around ``gradcheck._modes._traced``, whose result every traced call is).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
from _common import TARGETS, forward_backward, inputs, machine_line

import gradcheck


class Tally:
    """Wrap a target: count its eager calls and the elements they evaluate, per dtype."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: dict[str, int] = {}
        self.elements: dict[str, int] = {}
        self.__name__ = self.__qualname__ = getattr(fn, "__name__", "target")

    def __call__(self, x, *rest):
        if tf.executing_eagerly():
            key = x.dtype.name
            self.calls[key] = self.calls.get(key, 0) + 1
            self.elements[key] = self.elements.get(key, 0) + int(np.prod(x.shape))
        return self.fn(x, *rest)


def rounds(jobs: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each job (key) and median CPU time of this process (key + " cpu"),
    timed round-robin: on a shared machine the CPU time is the steadier of the two."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    times.update({f"{k} cpu": [] for k in jobs})
    for _ in range(repeats):
        for k, thunk in jobs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            thunk()
            times[k].append(time.perf_counter() - wall)
            times[f"{k} cpu"].append(time.process_time() - cpu)
    return {k: statistics.median(v) for k, v in times.items()}


class TracedCalls:
    """Count calls of the functions ``gradcheck._modes._traced`` returns, while active."""

    def __enter__(self):
        from gradcheck import _modes

        self.calls, self.module, self.original = 0, _modes, _modes._traced

        def traced(*args, **kwargs):
            fn = self.original(*args, **kwargs)

            def counted(*a, **k):
                self.calls += 1
                return fn(*a, **k)

            return counted

        _modes._traced = traced
        return self

    def __exit__(self, *exc):
        self.module._traced = self.original


def thunks(fn, x, elementwise, modes) -> dict:
    """The floor, and one check per ``modes`` value (None: the default, "check"; () "first")."""
    found = {"base": lambda: forward_backward(fn, x)}
    for m in modes:
        found["check" if m is None else "first"] = (
            lambda m=m: gradcheck.check(fn, x, elementwise=elementwise, modes=m))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 100_000])
    parser.add_argument("--targets", nargs="+", default=["swish", "custom_elu"],
                        choices=list(TARGETS))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--cg-n", type=int, default=100)
    parser.add_argument("--cg-repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine_line())

    print(f"\n(a) one check / one plain eager forward+backward, {args.dtype}, median of "
          f"{args.repeats} interleaved rounds")
    print(f"{'target':<11} {'n':>7} {'fwd+bwd ms':>10} {'check ms':>9} {'ratio':>6} "
          f"{'modes=() ms':>11} {'ratio':>6} | CPU time: {'ratio':>6} {'modes=()':>8}")
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        for n in args.sizes:
            x = inputs(n, args.dtype)
            forward_backward(fn, x)
            for modes in (None, ()):  # warm up: kernels, the mode check's trace
                gradcheck.check(fn, x, elementwise=elementwise, modes=modes)
            med = rounds(thunks(fn, x, elementwise, modes=((), None)), args.repeats)
            print(f"{name:<11} {n:>7} {med['base'] * 1e3:>10.3f} {med['check'] * 1e3:>9.2f} "
                  f"{med['check'] / med['base']:>6.1f} {med['first'] * 1e3:>11.2f} "
                  f"{med['first'] / med['base']:>6.1f} | {'':>9} "
                  f"{med['check cpu'] / med['base cpu']:>6.1f} "
                  f"{med['first cpu'] / med['base cpu']:>8.1f}", flush=True)

    print(f"\n(b) one check / one tf.test.compute_gradient at n = {args.cg_n}, median of "
          f"{args.cg_repeats} interleaved rounds")
    print(f"{'target':<11} {'check ms':>9} {'compute_gradient ms':>19} {'cg / check':>10}")
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        x = inputs(args.cg_n, args.dtype)
        gradcheck.check(fn, x, elementwise=elementwise)
        tf.test.compute_gradient(fn, [x])
        med = rounds({"check": thunks(fn, x, elementwise, modes=(None,))["check"],
                      "cg": lambda fn=fn, x=x: tf.test.compute_gradient(fn, [x])},
                     args.cg_repeats)
        print(f"{name:<11} {med['check'] * 1e3:>9.2f} {med['cg'] * 1e3:>19.1f} "
              f"{med['cg'] / med['check']:>10.0f} (CPU time: "
              f"{med['cg cpu'] / med['check cpu']:.0f})", flush=True)

    print("\n(c) target calls per check: eager (elements evaluated, in units of n), by dtype; "
          "traced (the mode check)")
    print(f"{'target':<11} {'n':>7} {'modes':<8} {'calls':<24} {'elements / n':<26} "
          f"{'traced':>6}  verdict")
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        for n in args.sizes:
            x = inputs(n, args.dtype)
            for modes in (None, ()):
                tally = Tally(fn)
                gradcheck.check(tally, x, elementwise=elementwise, modes=modes)  # traces
                tally.calls, tally.elements = {}, {}
                with TracedCalls() as traced:
                    report = gradcheck.check(tally, x, elementwise=elementwise, modes=modes)
                size = int(np.prod(x.shape))
                calls = ", ".join(f"{c} {d}" for d, c in sorted(tally.calls.items()))
                elements = ", ".join(f"{e / size:g} {d}" for d, e in sorted(
                    tally.elements.items()))
                print(f"{name:<11} {n:>7} {'default' if modes is None else '()':<8} "
                      f"{calls:<24} {elements:<26} {traced.calls:>6}  "
                      f"{'ok' if report.ok else report.kinds}")


if __name__ == "__main__":
    main()
