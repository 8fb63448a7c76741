"""The cost of one fuzzed item and of one fuzzed example, against the floor of the work itself.

    .venv/bin/python bench/item_speed.py                    # 100 examples, 3 repetitions
    .venv/bin/python bench/item_speed.py --examples 50 --repeats 5 --dtype float16
    PYTHONPATH=/tmp/gc:/tmp/gc/plugin .venv/bin/python bench/item_speed.py   # another commit

For each target (swish: plain autodiff; custom_elu: a tf.custom_gradient, as in
examples/custom_gradients.py) and each of its two forms (undecorated, and ``@tf.function``), one
item is ``gradcheck.fuzz(target, dtype=..., max_examples=N, hypothesis_seed=rep)``: what
``pytest --gradcheck`` runs per target and dtype, sweep phase included, without an example
database. Every form is a fresh function object (a fresh process would trace it again too), and
the items run round-robin within each repetition, so a load change on a shared machine hits all
of them alike. Medians over the repetitions are printed.

Printed per target and form: the item's wall time, per example (the item over its examples);
Hypothesis's drawing alone per example (the same strategy and seed, a test that does nothing);
and the floor: one plain eager forward + backward of the undecorated target at the inputs that
run drew, per example. Then the ratio of the ``@tf.function`` item to the undecorated one
(issue 16 asks for at most 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (quiet TensorFlow before gradcheck imports it)
import tensorflow as tf
from _common import forward_backward, machine_line, make_custom_elu
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as seeded

import gradcheck
from gradcheck._declare import Declaration
from gradcheck.strategies import inputs_for

DOMAINS = {"swish": (-100.0, 100.0), "custom_elu": (-1000.0, 1000.0)}


def make(name: str, decorated: bool):
    """A fresh function object for the target, ``tf.function``-decorated or not."""
    if name == "swish":
        def swish(x):
            return x * tf.sigmoid(x)

        fn = swish
    else:
        fn = make_custom_elu()
    return tf.function(fn) if decorated else fn


def drawn(name: str, dtype: str, examples: int, rep: int) -> tuple[list, float]:
    """The inputs Hypothesis draws for the item (same strategy and seed) and the seconds per
    example that drawing alone takes."""
    got: list = []
    declaration = Declaration(kind="activation", domain=DOMAINS[name])

    @seeded(rep)
    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs_for(declaration, dtype))
    def test(inputs):
        got.append(inputs)

    start = time.perf_counter()
    test()
    return got, (time.perf_counter() - start) / max(1, len(got))


def floor(name: str, inputs: list) -> float:
    """Seconds per example of one eager forward + backward at each drawn input."""
    fn = make(name, decorated=False)
    tensors = [tf.constant(x) for x, *_ in inputs]
    forward_backward(fn, tensors[0])  # first-call costs aside
    start = time.perf_counter()
    for x in tensors:
        forward_backward(fn, x)
    return (time.perf_counter() - start) / max(1, len(tensors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--targets", nargs="+", default=list(DOMAINS))
    args = parser.parse_args()
    settings.register_profile("bench-no-db", database=None)
    settings.load_profile("bench-no-db")
    print(machine_line())
    print(f"# {args.examples} examples per item, dtype {args.dtype}, {args.repeats} repetitions "
          f"(medians)")
    gradcheck.fuzz(make("swish", False), dtype=args.dtype, max_examples=3)  # imports, first traces
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for rep in range(args.repeats):
        for name in args.targets:
            for form in ("undecorated", "@tf.function"):
                fn = make(name, form == "@tf.function")
                start = time.perf_counter()
                report = gradcheck.fuzz(fn, dtype=args.dtype, max_examples=args.examples,
                                        hypothesis_seed=rep, domain=DOMAINS[name])
                wall = time.perf_counter() - start
                if not report.ok:
                    print(f"  ! {name} {form} rep {rep}: {report.kinds} "
                          f"({report.findings[0].message[:100]})")
                n = max(1, report.meta["examples"])
                row = rows.setdefault((name, form), {"item": [], "example": [], "n": []})
                row["item"].append(wall)
                row["example"].append(wall / n)
                row["n"].append(n)
            inputs, draw = drawn(name, args.dtype, args.examples, rep)
            row = rows.setdefault((name, "draw"), {"draw": [], "floor": []})
            row["draw"].append(draw)
            row["floor"].append(floor(name, inputs))
    med = {k: {m: statistics.median(v) for m, v in row.items()} for k, row in rows.items()}
    print(f"\n{'target':<11} {'form':<13} {'item s':>7} {'ms/example':>11} {'examples':>9} "
          f"{'x floor':>8}")
    for name in args.targets:
        base = med[name, "draw"]
        for form in ("undecorated", "@tf.function"):
            m = med[name, form]
            print(f"{name:<11} {form:<13} {m['item']:>7.2f} {m['example'] * 1e3:>11.2f} "
                  f"{m['n']:>9.0f} {m['example'] / base['floor']:>8.1f}")
        print(f"{name:<11} {'drawing':<13} {'':>7} {base['draw'] * 1e3:>11.2f}")
        print(f"{name:<11} {'fwd+bwd':<13} {'':>7} {base['floor'] * 1e3:>11.2f}")
        ratio = [d / u for d, u in zip(rows[name, "@tf.function"]["item"],
                                       rows[name, "undecorated"]["item"])]
        print(f"{name:<11} @tf.function / undecorated per item: median {statistics.median(ratio):.2f}"
              f" (each repetition: {', '.join(f'{r:.2f}' for r in ratio)})")


if __name__ == "__main__":
    main()
