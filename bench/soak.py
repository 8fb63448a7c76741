"""False-positive soak: fuzz code that is known to be correct under many seeds, count findings.

Runs every correct example (the targets declared in ``examples/*.py``; ``examples/buggy`` is
left out) and every library activation that ``tests/test_library_activations.py`` enumerates
(same rules, same options, its known library bugs excluded: a finding there may be the bug,
even one gradcheck catches only by chance), each in each dtype, under
``--seeds`` Hypothesis seeds with ``--examples`` examples each. Every finding on this code is a
false positive of gradcheck: it is printed with its reproducer, and the total is the figure
that must be 0. Not part of CI (a full run takes hours); run it before changing tolerances,
kink handling or edge-value generation, e.g.::

    .venv/bin/python bench/soak.py                          # 20 seeds x 200 examples
    .venv/bin/python bench/soak.py --seeds 3 --examples 50 --only swish
    .venv/bin/python bench/soak.py --no-library --dtypes float16,bfloat16 --json soak.json
    .venv/bin/python bench/soak.py --jobs 8                 # on a machine with cores to spare
    .venv/bin/python bench/soak.py --layers --no-examples --no-library --seeds 2 --examples 40

Exit status: 0 when nothing was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float16", "bfloat16", "float32", "float64")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fuzz correct examples and library activations under many seeds and count "
                    "the findings (false positives; the figure must be 0).")
    parser.add_argument("--seeds", type=int, default=20,
                        help="Hypothesis seeds per target and dtype (default: 20)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, ... (default: 0)")
    parser.add_argument("--examples", type=int, default=200,
                        help="Hypothesis examples per seed (default: 200)")
    parser.add_argument("--dtypes", default=",".join(DTYPES),
                        help=f"comma-separated dtypes (default: {','.join(DTYPES)}); a target "
                             "is only run in the dtypes it declares")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only targets whose name contains TEXT (repeatable)")
    parser.add_argument("--no-examples", action="store_true",
                        help="skip the correct examples of examples/")
    parser.add_argument("--no-library", action="store_true",
                        help="skip the keras.activations / tf.nn activations")
    parser.add_argument("--layers", action="store_true",
                        help="also Keras' own layers and normalizations (keras_layer_targets)")
    parser.add_argument("--examples-dir", type=Path, default=ROOT / "examples",
                        help="where the correct examples live (default: examples/)")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="worker processes, one item (target x dtype) at a time each "
                             "(default: 1)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write every run and finding to PATH as JSON")
    args = parser.parse_args(argv)
    args.dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    unknown = [d for d in args.dtypes if d not in DTYPES]
    if unknown:
        parser.error(f"--dtypes: unknown dtype {unknown[0]!r}; expected names from {DTYPES}")
    for name in ("seeds", "examples", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def example_targets(directory: Path):
    """(label, target, options, dtypes) for each target declared in directory/*.py."""
    from gradcheck._declare import registered_in

    found = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith(("test_", "conftest")):
            continue
        module = _import_file(path, f"_soak_examples_{path.stem}")
        for entry in registered_in(module.__name__):
            label = f"examples/{path.name}::{entry.name}"
            found.append((label, entry.target, {}, entry.declaration.dtypes))
    return found


def library_targets():
    """(label, fn, options, dtypes) from the enumeration of tests/test_library_activations."""
    lib = _import_file(ROOT / "tests" / "test_library_activations.py", "_soak_library")
    found = []
    for name, fn, options, skip in lib.TARGETS:
        if skip:
            continue
        # A known library bug is left out: it is not correct code, and a finding there may be
        # the bug itself, even where gradcheck catches it only by chance (MISSED_BY_GRADCHECK).
        dtypes = tuple(d for d in DTYPES if (name, d) not in lib.KNOWN_LIBRARY_BUGS
                       and (name, None) not in lib.KNOWN_LIBRARY_BUGS)
        found.append((name, fn, options, dtypes))
    return found


def keras_layer_targets():
    """(label, target, options, dtypes): Keras' own layers, as a user declares them (a class,
    ``init``, ``input_shape``), and the row normalizations users copy. Correct code, so every
    finding is a false positive, except where a dtype is left out below for a genuine bug
    (a finding there is right):

    * a norm floored at epsilon = 1e-12 (UnitNormalization, tf.math.l2_normalize,
      keras.ops.normalize): in float16 the epsilon rounds to 0, so a zero row gives 0 / 0 =
      NaN;
    * recurrent layers in bfloat16: TensorFlow's CPU kernels do not run them (an error)."""
    import keras
    import tensorflow as tf

    layers, no_float16 = keras.layers, ("bfloat16", "float32", "float64")
    no_bfloat16 = ("float16", "float32", "float64")
    rows, sequences = {"input_shape": (None, 4)}, {"input_shape": (None, 3, 2)}
    table = [
        ("Dense", layers.Dense, {"units": 3}, rows, DTYPES),
        ("Dense(tanh)", layers.Dense, {"units": 3, "activation": "tanh"}, rows, DTYPES),
        ("Dense(relu)", layers.Dense, {"units": 3, "activation": "relu"}, rows, DTYPES),
        ("EinsumDense", layers.EinsumDense, {"equation": "ab,bc->ac", "output_shape": 3},
         rows, DTYPES),
        ("LayerNormalization", layers.LayerNormalization, {}, rows, DTYPES),
        ("BatchNormalization", layers.BatchNormalization, {}, rows, DTYPES),
        ("GroupNormalization", layers.GroupNormalization, {"groups": 2}, rows, DTYPES),
        ("UnitNormalization", layers.UnitNormalization, {}, rows, no_float16),
        ("PReLU", layers.PReLU, {}, rows, DTYPES),
        ("LeakyReLU", layers.LeakyReLU, {}, rows, DTYPES),
        ("Softmax", layers.Softmax, {}, rows, DTYPES),
        ("Conv1D", layers.Conv1D, {"filters": 2, "kernel_size": 2}, sequences, DTYPES),
        ("SimpleRNN", layers.SimpleRNN, {"units": 2}, sequences, no_bfloat16),
        ("GRU", layers.GRU, {"units": 2}, sequences, no_bfloat16),
        ("MaxPooling1D", layers.MaxPooling1D, {"pool_size": 2}, {"input_shape": (None, 4, 2)},
         DTYPES),
    ]
    found = [(f"keras.layers.{name}", cls, {"init": init, "elementwise": False, **shape}, dtypes)
             for name, cls, init, shape, dtypes in table]
    found += [
        ("tf.math.l2_normalize", lambda x: tf.math.l2_normalize(x, axis=-1),
         {"elementwise": False}, no_float16),
        ("keras.ops.normalize", lambda x: keras.ops.normalize(x, axis=-1),
         {"elementwise": False}, no_float16),
    ]
    return found


def _setup():
    """Import gradcheck with a soak profile: no example database, so that no run replays
    another run's failure and every seed is independent."""
    sys.path.insert(0, str(ROOT))
    import logging

    from hypothesis import settings

    # gradcheck traces targets under tf.function on purpose (mode checks): TF's retracing
    # warnings are noise here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    settings.register_profile("gradcheck-soak", database=None)
    settings.load_profile("gradcheck-soak")


def collect(args) -> list[tuple[str, object, dict, str]]:
    """The (label, target, options, dtype) items to soak, in a stable order."""
    targets = []
    if not args.no_examples:
        targets += example_targets(args.examples_dir)
    if not args.no_library:
        targets += library_targets()
    if args.layers:
        targets += keras_layer_targets()
    if args.only:
        targets = [t for t in targets if any(text in t[0] for text in args.only)]
    return [(label, fn, options, dtype) for label, fn, options, dtypes in targets
            for dtype in dtypes if dtype in args.dtypes]


def soak_item(fn, options: dict, label: str, dtype: str, seeds, examples: int):
    """Fuzz one target in one dtype under each seed.

    Returns (entries, (examples run, of them repeats of an input that had passed), text to
    print, seconds taken)."""
    import gradcheck

    started = time.perf_counter()
    entries, examples_run, repeated, text = [], 0, 0, []
    for seed in seeds:
        try:
            report = gradcheck.fuzz(fn, dtype=dtype, max_examples=examples, hypothesis_seed=seed,
                                    **options)
        except Exception as exc:  # noqa: BLE001 - a crash of gradcheck itself counts too
            text.append(f"\nCRASH {label} [{dtype}] seed {seed}: {type(exc).__name__}: {exc}")
            entries.append({"target": label, "dtype": dtype, "seed": seed, "ok": False,
                            "crash": f"{type(exc).__name__}: {exc}"})
            continue
        examples_run += report.meta.get("examples", 0)
        repeated += report.meta.get("repeated", 0)
        entry = {"target": label, "dtype": dtype, "seed": seed, "ok": report.ok,
                 "examples": report.meta.get("examples"),
                 "repeated": report.meta.get("repeated", 0)}
        if not report.ok:
            entry.update(kinds=report.kinds, report=report.to_dict())
            text.append(f"\nFINDING {label} [{dtype}] seed {seed}:\n{report}")
        entries.append(entry)
    return entries, (examples_run, repeated), "\n".join(text), time.perf_counter() - started


# -- --jobs N: one process per job, each collecting the same items and running those it is given

_WORKER_ITEMS: dict = {}


def _worker_init(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _setup()
    for label, fn, options, dtype in collect(args):
        _WORKER_ITEMS[(label, dtype)] = (fn, options)


def _worker_run(label: str, dtype: str, seeds, examples: int):
    fn, options = _WORKER_ITEMS[(label, dtype)]
    return soak_item(fn, options, label, dtype, seeds, examples)


def _run_items(args, items, seeds):
    """Yield (label, dtype, soak_item's result) for each item, as it finishes."""
    if args.jobs == 1:
        for label, fn, options, dtype in items:
            yield label, dtype, soak_item(fn, options, label, dtype, seeds, args.examples)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # never fork a process that imported TF
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_worker_init,
                             initargs=(args,)) as pool:
        futures = {pool.submit(_worker_run, label, dtype, seeds, args.examples): (label, dtype)
                   for label, _, _, dtype in items}
        for future in as_completed(futures):
            label, dtype = futures[future]
            yield label, dtype, future.result()


def main(argv=None) -> int:
    args = parse_args(argv)
    _setup()
    items = collect(args)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"soak: {len(items)} target x dtype items, {args.seeds} seeds x {args.examples} "
          f"examples each, {args.jobs} job(s)", flush=True)

    start = time.perf_counter()
    results, findings, examples_run, repeated = [], 0, 0, 0
    for label, dtype, (entries, (examples, repeats), text, took) in _run_items(args, items,
                                                                              seeds):
        results += entries
        examples_run += examples
        repeated += repeats
        failed = [e["seed"] for e in entries if not e["ok"]]
        findings += len(failed)
        if text:
            print(text, flush=True)
        status = "ok" if not failed else f"FAILED seeds {failed}"
        print(f"{label} [{dtype}]: {status} ({took:.1f} s)", flush=True)

    wall = time.perf_counter() - start
    print(f"\nsoak: {findings} finding(s) on correct code in {len(items) * args.seeds} fuzz "
          f"runs ({examples_run} examples, {examples_run - repeated} checked: {repeated} "
          f"repeated an input that had passed); wall time {wall:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "findings": findings, "runs": len(items) * args.seeds, "examples": examples_run,
            "repeated": repeated,
            "wall_s": round(wall, 1), "seeds": list(seeds), "examples_per_seed": args.examples,
            "results": results}, indent=1))
    return 0 if findings == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
