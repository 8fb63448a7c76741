"""Wall time of the whole job, ``pytest --gradcheck examples/``, in one process and with -n 2.

    .venv/bin/python bench/whole_run.py                  # both modes once (~10 min on 2 cores)
    .venv/bin/python bench/whole_run.py --modes 1        # single process only
    .venv/bin/python bench/whole_run.py --paths examples/custom_gradients.py --repeats 2

Default settings: no --gradcheck-max-examples (the Hypothesis profile's 100 examples per target and
dtype), every dtype. Each run starts from an empty working directory, hence an empty Hypothesis
example database (replayed failures would otherwise make later runs cheaper than the first);
the repository's pytest configuration still applies (rootdir is the repository). The buggy
examples fail on purpose, so pytest exits 1. Modes alternate when --repeats > 1, so a load
change on a shared machine hits both alike; the load average is printed with each run.

Printed: wall and CPU time per mode (children's user + system time); the cores each mode got
(cpu / wall: on a shared machine -n 2 may not get its second core, which the speed-up alone
hides); the measured speed-up and the one the CPU times allow with free cores; from the JSON
report of the single-process run, the time per target x dtype (the item's fuzzing time) and how
much of the wall time the items account for (the rest: interpreter, TensorFlow import,
collection); and -n 2 simulated from those item times (greedy, in collection order).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def gradcheck_source() -> str:
    """Where the pytest runs will import gradcheck from (PYTHONPATH first), and its git state."""
    probe = ("import os, gradcheck; print(os.path.dirname(os.path.dirname("
             "os.path.abspath(gradcheck.__file__))))")
    where = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                           text=True).stdout.strip()
    state = subprocess.run(["git", "-C", where, "describe", "--always", "--dirty"],
                           capture_output=True, text=True).stdout.strip()
    commit = Path(where, "COMMIT")
    if not state and commit.exists():
        state = f"export of {commit.read_text().strip()[:10]}"
    return f"gradcheck from {where} ({state or 'unknown state'})"


def run_once(paths: list[str], workers: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="gradcheck-bench-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", "--gradcheck", *paths, "-q",
               f"--gradcheck-report={report}", *extra]
        if workers > 1:
            cmd += ["-n", str(workers)]
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        lines = proc.stdout.strip().splitlines()
        tail = lines[-1:] if lines else [proc.stderr[-300:]]
        data = json.loads(report.read_text()) if report.exists() else {"results": []}
    return {"wall": wall, "cpu": cpu, "rc": proc.returncode, "load": load,
            "load_after": os.getloadavg()[0], "tail": tail[0],
            "results": data.get("results", []), "summary": data.get("summary", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=[str(REPO / "examples")])
    parser.add_argument("--modes", type=int, nargs="+", default=[1, 2],
                        help="worker counts: 1 = one process, k > 1 = pytest -n k")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--top", type=int, default=0,
                        help="print only the N slowest target rows (0: all)")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args()
    paths = [str(Path(p).resolve()) for p in args.paths]

    print(f"# {os.cpu_count()} cpus; python {sys.version.split()[0]}; "
          f"pytest --gradcheck {' '.join(args.paths)}; {gradcheck_source()}")
    walls: dict[int, list[float]] = {m: [] for m in args.modes}
    first: dict[int, dict] = {}
    for r in range(args.repeats):
        for mode in args.modes:
            out = run_once(paths, mode, args.pytest_args)
            walls[mode].append(out["wall"])
            first.setdefault(mode, out)
            print(f"run {r + 1} {'one process' if mode == 1 else f'-n {mode}':<12} "
                  f"wall {out['wall']:6.1f} s, cpu {out['cpu']:6.1f} s  (1-min load avg "
                  f"{out['load']:.2f} before, {out['load_after']:.2f} after; exit {out['rc']}; "
                  f"{out['tail']})", flush=True)
    single = first.get(1)
    med = {m: statistics.median(v) for m, v in walls.items()}
    for mode in args.modes:
        out = first[mode]
        label = "one process" if mode == 1 else f"-n {mode}"
        print(f"{label}: used {out['cpu'] / out['wall']:.2f} cores on average (cpu / wall of "
              f"the first run)")
    for mode in args.modes:
        if mode != 1 and 1 in med:
            speedup = med[1] / med[mode]
            print(f"-n {mode}: {speedup:.2f}x faster than one process (median wall "
                  f"{med[1]:.1f} s vs {med[mode]:.1f} s; target >= 1.6x: "
                  f"{'met' if speedup >= 1.6 else 'MISSED'})")
            # Both runs are CPU-bound: with `mode` free cores, -n spreads its CPU time over
            # them, so the wall time cannot beat cpu / mode; the one process cannot beat its cpu.
            bound = first[1]["cpu"] / (first[mode]["cpu"] / mode)
            print(f"-n {mode} with {mode} free cores, from CPU time: one process needs "
                  f"{first[1]['cpu']:.1f} cpu-s, -n {mode} {first[mode]['cpu']:.1f} cpu-s "
                  f"(+{100 * (first[mode]['cpu'] / first[1]['cpu'] - 1):.0f}%: a second "
                  f"interpreter and TensorFlow import, xdist), so at best {bound:.2f}x")
    if single and single["results"]:
        table(single, args.top)
        for mode in args.modes:
            if mode > 1:
                print(f"simulated -n {mode} on an otherwise idle machine (greedy assignment of "
                      f"the one-process item times in collection order, start-up paid once per "
                      f"worker in parallel): {simulate(single, mode):.1f} s, i.e. "
                      f"{single['wall'] / simulate(single, mode):.2f}x")
                differ(single, first[mode], mode)


def simulate(out: dict, workers: int) -> float:
    times = [r["duration_s"] for r in out["results"]]
    fixed = out["wall"] - sum(times)
    finish = [0.0] * workers
    heapq.heapify(finish)
    for t in times:
        heapq.heappush(finish, heapq.heappop(finish) + t)
    return max(finish) + fixed


def differ(a: dict, b: dict, mode: int) -> None:
    """Items whose outcome differs between the one-process run and the -n run (Hypothesis is
    not derandomized by default: a buggy target may be caught in one run and not the other;
    a correct target failing in one of them would be a false positive worth a look)."""
    outcome = {r["nodeid"]: r["outcome"] for r in a["results"]}
    diffs = [(r["nodeid"], outcome.get(r["nodeid"]), r["outcome"]) for r in b["results"]
             if outcome.get(r["nodeid"]) != r["outcome"]]
    if diffs:
        print(f"outcomes that differ, one process vs -n {mode}:")
        for nodeid, one, other in diffs:
            print(f"  {nodeid}: {one} vs {other}")


def table(out: dict, top: int) -> None:
    results = out["results"]
    dtypes = [d for d in ("float16", "bfloat16", "float32", "float64")
              if any(r["dtype"] == d for r in results)]
    per: dict[str, dict[str, dict]] = {}
    for r in results:
        per.setdefault(r["target"], {})[r["dtype"]] = r
    total = sum(r["duration_s"] for r in results)
    longest = max(results, key=lambda r: r["duration_s"])
    rows = sorted(per.items(), key=lambda kv: -sum(r["duration_s"] for r in kv[1].values()))
    if top:
        rows = rows[:top]
    width = max(len(t) for t, _ in rows)
    print("\nseconds per target x dtype (one process; F = failed, as the buggy examples "
          "should; examples run in brackets when not 100)")
    print(f"{'target':<{width}} " + " ".join(f"{d:>13}" for d in dtypes) + f" {'sum':>7}")
    for target, cells in rows:
        text = []
        for d in dtypes:
            r = cells.get(d)
            if r is None:
                text.append(f"{'-':>13}")
                continue
            mark = "F" if r["outcome"] != "passed" else " "
            ex = f"[{r['examples']}]" if r.get("examples") not in (100, None) else ""
            text.append(f"{r['duration_s']:>7.2f}{mark}{ex:>5}")
        print(f"{target:<{width}} " + " ".join(text)
              + f" {sum(c['duration_s'] for c in cells.values()):>7.1f}")
    by_dtype = {d: sum(r["duration_s"] for r in results if r["dtype"] == d) for d in dtypes}
    counts = {d: sum(1 for r in results if r["dtype"] == d) for d in dtypes}
    print("per dtype: " + ", ".join(f"{d} {by_dtype[d]:.1f} s over {counts[d]} items "
                                    f"({by_dtype[d] / max(1, counts[d]):.2f} s/item)"
                                    for d in dtypes))
    fixed = out["wall"] - total
    print(f"{len(results)} items, {total:.1f} s fuzzing in all, mean {total / len(results):.2f} s, "
          f"longest {longest['duration_s']:.1f} s ({longest['target']}[{longest['dtype']}]); "
          f"wall {out['wall']:.1f} s, so {fixed:.1f} s outside the items (start-up, import, "
          f"collection, other tests); ideal -n 2 wall ~ "
          f"{max(total / 2, longest['duration_s']) + fixed:.1f} s")


if __name__ == "__main__":
    main()
