"""Issue 16's three ratios in one run: a fuzzed example, a @tf.function item, a check at n = 1e5.

    .venv/bin/python bench/item_speed.py                       # ~2 min
    .venv/bin/python bench/item_speed.py --examples 50 --repeats 3 --dtype float16
    PYTHONPATH=/tmp/gc:/tmp/gc/plugin .venv/bin/python bench/item_speed.py   # another commit

(a) One fuzzed example against one plain eager forward + backward of the same target at the
    same input. For each target (swish: plain autodiff; custom_elu: a tf.custom_gradient, as in
    examples/custom_gradients.py) and form (undecorated, ``@tf.function``), one item is
    ``gradcheck.fuzz(target, dtype=..., max_examples=N, hypothesis_seed=rep)`` with the
    default options (the sweep, the mode sample): what ``pytest --gradcheck`` runs per target
    and dtype, without an example database. Every form is a fresh function object, as in a
    fresh process. Right after each example's check (around ``_Fuzz.example``) the floor is
    timed at exactly that input: one forward + backward of a fresh undecorated target, as
    bench/speed.py interleaves it with checks; its first call (kernels) left out, and its
    time taken out of the item's. A tight loop of forward + backward at the same inputs,
    timed after the item, is printed too ("loop"): ~40% faster, caches warm. An example's
    cost is the item's time less its sweep (timed around ``sweep_registered``: once per item,
    whatever the number of examples), over the examples: drawing, Hypothesis's engine, the
    check, first-call traces included. It is split into the checks (the time of each call of
    ``_Fuzz.example``; "median": the median check, what an example costs once the item's
    traces are made) and the rest (drawing, the engine, gradcheck's loop). Alone: drawing
    and Hypothesis's engine per example, with the same strategy, seed and phases, a test
    that does nothing.
(b) The ``@tf.function`` item against the undecorated one (issue 16 asks for at most 1.5x).
(c) One ``gradcheck.check`` at n = --big-n (default options, float32 uniform in [-10, 10] as
    in bench/speed.py) against one plain forward + backward, timed round-robin.

All rounds are interleaved (within each repetition every target and form in turn, the floor
right after each item), so a load change on the shared machine hits all of them alike; medians
over the repetitions are printed. Times are this process's CPU time (waiting for a core is not
counted), the wall-clock ratios next to them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
import tensorflow as tf
from _common import TARGETS, forward_backward, inputs, machine_line, make_custom_elu
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded

import gradcheck
from gradcheck import _fuzz, _sweep
from gradcheck._declare import Declaration
from gradcheck.strategies import inputs_for

DOMAINS = {"swish": (-100.0, 100.0), "custom_elu": (-1000.0, 1000.0)}
FORMS = ("undecorated", "@tf.function")


def make(name: str, decorated: bool):
    """A fresh function object for the target, ``tf.function``-decorated or not."""
    if name == "swish":
        def swish(x):
            return x * tf.sigmoid(x)

        fn = swish
    else:
        fn = make_custom_elu()
    return tf.function(fn) if decorated else fn


class Clock:
    """CPU and wall seconds since start."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def read(self) -> tuple[float, float]:
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


class Recorder:
    """While active: the inputs each fuzz example checked, its check's time, the sweep's, and
    the floor timed right after each check (``floor``; ``aside``: the rest of that timing,
    tf.constant and the first call, also to take out of the item's time)."""

    def __init__(self, name: str):
        self.floor_fn = make(name, decorated=False)

    def __enter__(self):
        self.inputs, self.each = [], []  # the inputs checked, the CPU seconds of each check
        self.checks, self.sweep = [0.0, 0.0], [0.0, 0.0]
        self.floor, self.aside = [0.0, 0.0], [0.0, 0.0]
        self.example, self.sweep_fn = _fuzz._Fuzz.example, _sweep.sweep_registered
        recorder, example, sweep_fn = self, self.example, self.sweep_fn

        def timed_example(fuzz, inputs):
            recorder.inputs.append(inputs)
            clock = Clock()
            try:
                return example(fuzz, inputs)
            finally:
                spent = clock.read()
                recorder.checks = _add(recorder.checks, spent)
                recorder.each.append(spent[0])
                recorder.time_floor(inputs[0])

        def timed_sweep(*args, **kwargs):
            clock = Clock()
            try:
                return sweep_fn(*args, **kwargs)
            finally:
                recorder.sweep = _add(recorder.sweep, clock.read())

        _fuzz._Fuzz.example, _sweep.sweep_registered = timed_example, timed_sweep
        return self

    def time_floor(self, x) -> None:
        clock = Clock()
        x = tf.constant(x)
        if len(self.inputs) == 1:
            forward_backward(self.floor_fn, x)  # first-call costs aside
        self.aside = _add(self.aside, clock.read())
        clock = Clock()
        forward_backward(self.floor_fn, x)
        self.floor = _add(self.floor, clock.read())

    def __exit__(self, *exc):
        _fuzz._Fuzz.example, _sweep.sweep_registered = self.example, self.sweep_fn


def _add(a: list[float], b) -> list[float]:
    return [x + y for x, y in zip(a, b)]


def floor(name: str, checked: list) -> tuple[float, float]:
    """CPU and wall seconds of one eager forward + backward at each checked input, summed."""
    fn = make(name, decorated=False)
    tensors = [tf.constant(x) for x, *_ in checked]
    forward_backward(fn, tensors[0])  # first-call costs aside
    clock = Clock()
    for x in tensors:
        forward_backward(fn, x)
    return clock.read()


def drawing(name: str, dtype: str, examples: int, rep: int) -> float:
    """CPU seconds per example of Hypothesis alone: the item's strategy, seed and phases."""
    count = [0]
    declaration = Declaration(kind="activation", domain=DOMAINS[name])

    @seeded(rep)
    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck),
              phases=[p for p in Phase if p is not Phase.explain])
    @given(inputs_for(declaration, dtype))
    def test(inputs):
        count[0] += 1

    clock = Clock()
    test()
    return clock.read()[0] / max(1, count[0])


def fuzz_rounds(args) -> dict:
    rows: dict = {}
    for rep in range(args.repeats):
        for name in args.targets:
            for form in FORMS:
                fn = make(name, form == "@tf.function")
                with Recorder(name) as rec:
                    clock = Clock()
                    report = gradcheck.fuzz(fn, dtype=args.dtype, max_examples=args.examples,
                                            hypothesis_seed=rep, domain=DOMAINS[name])
                    item = clock.read()
                if not report.ok:
                    print(f"  ! {name} {form} rep {rep}: {report.kinds}")
                n = max(1, len(rec.inputs))
                loop = floor(name, rec.inputs)
                row = rows.setdefault((name, form), {})
                for i, unit in enumerate(("cpu", "wall")):
                    spent = item[i] - rec.floor[i] - rec.aside[i]
                    per_example = (spent - rec.sweep[i]) / n
                    row.setdefault(f"item {unit}", []).append(spent)
                    row.setdefault(f"example {unit}", []).append(per_example)
                    row.setdefault(f"floor {unit}", []).append(rec.floor[i] / n)
                    row.setdefault(f"loop {unit}", []).append(loop[i] / n)
                    row.setdefault(f"ratio {unit}", []).append(per_example * n / rec.floor[i])
                    row.setdefault(f"checks {unit}", []).append(rec.checks[i] / n)
                    row.setdefault(f"sweep {unit}", []).append(rec.sweep[i])
                row.setdefault("examples", []).append(n)
                row.setdefault("typical check", []).append(statistics.median(rec.each))
                row.setdefault("modes", []).append(report.meta.get("modes_compared", 0))
            rows.setdefault((name, "draw"), []).append(
                drawing(name, args.dtype, args.examples, rep))
    return rows


def big_rounds(args) -> dict:
    rows: dict = {}
    for name in args.targets:
        fn, elementwise = TARGETS[name]
        x = inputs(args.big_n, args.dtype)
        jobs = {"floor": lambda fn=fn, x=x: forward_backward(fn, x),
                "check": lambda fn=fn, x=x, e=elementwise: gradcheck.check(fn, x, elementwise=e)}
        for job in jobs.values():
            job()  # kernels, the mode check's trace
        times: dict = {}
        for _ in range(args.big_repeats):
            for key, job in jobs.items():
                clock = Clock()
                job()
                for unit, t in zip(("cpu", "wall"), clock.read()):
                    times.setdefault(f"{key} {unit}", []).append(t)
        rows[name] = {k: statistics.median(v) for k, v in times.items()}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--targets", nargs="+", default=list(DOMAINS))
    parser.add_argument("--big-n", type=int, default=100_000)
    parser.add_argument("--big-repeats", type=int, default=15)
    args = parser.parse_args()
    settings.register_profile("bench-no-db", database=None)
    settings.load_profile("bench-no-db")
    print(machine_line())
    print(f"# {args.examples} examples per item, dtype {args.dtype}, {args.repeats} repetitions "
          f"(medians); CPU time, wall-clock ratios in brackets")
    for decorated in (False, True):  # imports, TensorFlow's first trace of a gradient
        gradcheck.fuzz(make("swish", decorated), dtype=args.dtype, max_examples=3)
    rows = fuzz_rounds(args)
    med = {k: ({m: statistics.median(v) for m, v in row.items()} if isinstance(row, dict)
               else statistics.median(row)) for k, row in rows.items()}

    print("\n(a) one fuzzed example / one forward+backward at the same input (issue 16: <= 4)")
    print(f"{'target':<11} {'form':<13} {'item s':>7} {'sweep ms':>8} {'examples':>8} "
          f"{'modes':>5} {'ms/example':>10} {'checks':>7} {'median':>6} {'rest':>6} "
          f"{'fwd+bwd':>7} {'ratio':>6} {'(wall)':>7} {'loop':>6}")
    for name in args.targets:
        for form in FORMS:
            m = med[name, form]
            print(f"{name:<11} {form:<13} {m['item cpu']:>7.2f} {m['sweep cpu'] * 1e3:>8.0f} "
                  f"{m['examples']:>8.0f} {m['modes']:>5.0f} {m['example cpu'] * 1e3:>10.2f} "
                  f"{m['checks cpu'] * 1e3:>7.2f} {m['typical check'] * 1e3:>6.2f} "
                  f"{(m['example cpu'] - m['checks cpu']) * 1e3:>6.2f} "
                  f"{m['floor cpu'] * 1e3:>7.3f} {m['ratio cpu']:>6.1f} "
                  f"({m['ratio wall']:>4.1f}) {m['loop cpu'] * 1e3:>6.3f}")
        print(f"{name:<11} {'Hypothesis alone (drawing, engine) ms/example':<61} {'':>7}"
              f"{med[name, 'draw'] * 1e3:>6.2f}")

    print("\n(b) the @tf.function item / the undecorated item (issue 16: <= 1.5)")
    for name in args.targets:
        ratios = {unit: [d / u for d, u in zip(rows[name, "@tf.function"][f"item {unit}"],
                                                rows[name, "undecorated"][f"item {unit}"])]
                  for unit in ("cpu", "wall")}
        print(f"{name:<11} median {statistics.median(ratios['cpu']):.2f} "
              f"({statistics.median(ratios['wall']):.2f}); each repetition: "
              f"{', '.join(f'{r:.2f}' for r in ratios['cpu'])}")

    print(f"\n(c) one check at n = {args.big_n} / one forward+backward, median of "
          f"{args.big_repeats} interleaved rounds (issue 16: <= 5)")
    for name, m in big_rounds(args).items():
        print(f"{name:<11} fwd+bwd {m['floor cpu'] * 1e3:.2f} ms, check "
              f"{m['check cpu'] * 1e3:.2f} ms: {m['check cpu'] / m['floor cpu']:.1f}x "
              f"({m['check wall'] / m['floor wall']:.1f}x wall)", flush=True)


if __name__ == "__main__":
    main()
