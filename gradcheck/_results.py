"""The results of a ``pytest --gradcheck`` session: gathered per item, written as it goes.

:class:`ResultLog` keeps one plain-data result per gradcheck item (node id, target, dtype,
outcome, examples, findings, ...) and the figures of failing items, and writes the JSON report,
the PNG figures and the HTML page (:mod:`gradcheck._html`).

An item's outcome is what pytest decided (:data:`OUTCOMES`), never what the item hoped: an item
that started and never reported is ``crashed`` (its process died: ``os._exit``, a segfault, the
OOM killer) or, when the session was interrupted, ``interrupted``; both carry a ``reason``.
Collected items that never started are ``not run``. The report files are rewritten whenever an
item starts and ends, with the running item written as crashed, so that what is on disk after
the process dies is true. :func:`failure_text` is what a
failing item prints, shared by the pytest plugin and the command line; :func:`item_figure` draws
a failing item's figure as base64 PNG. Pure Python: nothing here imports pytest, and TensorFlow
only where a figure is drawn, so an xdist controller stays light.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES", "ResultLog", "failure_text", "item_figure", "plural"]

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "timed out", "crashed",
            "interrupted", "not run")
_ALWAYS_COUNTED = OUTCOMES[:4]  # the rest appear in the summary when they occur
_RUNNING = "running"  # started, not finished: never written as such
CRASHED = ("the process running this item ended before it finished (os._exit, a signal such "
           "as SIGSEGV or SIGKILL, or the out-of-memory killer?): run it alone with "
           "-p no:xdist to see how it ends")
INTERRUPTED = "the session was interrupted (KeyboardInterrupt, Ctrl-C) while this item ran"
_DTYPE_ID = re.compile(r"^[^:]+::[^:\[]+\[(float16|bfloat16|float32|float64)\]$")
#: Points along x in an item's figure: fewer than gradcheck.plot's default, for speed.
FIGURE_POINTS = 201


def failure_text(report: Any) -> str:
    """What a failing item prints: the report, every kind seen, and how to reproduce it."""
    meta = report.meta
    lines = [str(report)]
    if meta.get("kinds_seen"):
        lines.append(f"  kinds seen while fuzzing: {', '.join(meta['kinds_seen'])}")
    if meta.get("examples") is not None:
        seed = f", seed {meta['seed']}" if meta.get("seed") is not None else ""
        repeated = (f" ({meta['repeated']} repeated an input that had passed: not checked "
                    f"again)" if meta.get("repeated") else "")
        lines.append(f"  examples run: {meta['examples']}{repeated}{seed}")
    if meta.get("hypothesis_blob"):
        lines.append(f"  Hypothesis reproduce blob: {meta['hypothesis_blob']}")
    return "\n".join(lines)


def item_result(outcome: str, duration: float, report: Any = None,
                error: str | None = None) -> dict[str, Any]:
    """The plain-data result of one item run: outcome, examples, findings, reproducer."""
    meta = report.meta if report is not None else {}
    result = {
        "outcome": outcome,
        "examples": meta.get("examples", 0),
        "repeated": meta.get("repeated", 0),  # examples whose input had passed: not rechecked
        "swept": meta.get("swept", 0),  # values checked by the sweep phase
        # why it did not run to the end, or what it flagged that no check alone showed
        "sweep_skipped": meta.get("sweep_skipped"),
        "duration_s": round(float(duration), 3),
        "findings": [{"kind": f["kind"], "message": f["message"], "inputs": f["inputs"]}
                     for f in (report.to_dict()["findings"] if report is not None else [])],
        "kinds_seen": list(meta.get("kinds_seen", report.kinds if report else [])),
        "reproducer": report.reproducer if report is not None else None,
        "hypothesis_blob": meta.get("hypothesis_blob"),
    }
    if error is not None:
        result["error"] = error
    if report is not None and "timeout" in report.kinds:
        result["timed_out"] = True
    return result


# -- figures -----------------------------------------------------------------------------------

def item_figure(registered: Any, dtype: str, report: Any,
                timeout: float | None = None) -> dict[str, str]:
    """The item's figure as base64 PNG (JSON-safe), or why it could not be drawn.

    Drawing calls the target again, at hundreds of points: under the item's time limit
    (``timeout``, seconds) and its guards, as fuzzing is (a target that sleeps hung the run
    here, one that called ``sys.exit`` left a traceback), the process-wide settings it
    changes put back after it. A target that already ran past its
    limit is not called again."""
    import io

    from ._arrays import _said
    from ._global_state import restored_global_state
    from ._timeout import TimeLimitExceeded, time_limit

    if "timeout" in getattr(report, "kinds", ()):
        return {"error": "not drawn: the target ran past its time limit"}
    try:
        from .plot import derivatives

        with restored_global_state(), time_limit(timeout, f"{registered.name} (its figure)"):
            figure = derivatives(registered, dtypes=(dtype,), points=FIGURE_POINTS,
                                 highlight=_failing_x(registered, report))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    except TimeLimitExceeded as exc:
        return {"error": f"not drawn: drawing ran past the time limit of {exc.seconds:g} s"}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a figure is a bonus: never fail the run for it
        if type(exc).__module__.startswith("_pytest"):  # pytest's own outcomes go on up
            raise
        return {"error": f"{type(exc).__name__}: {_said(exc)}"}
    return {"png": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _failing_x(registered: Any, report: Any) -> tuple[float, ...]:
    """For an elementwise target, up to 3 values of the minimal failing x inside the domain."""
    declaration = registered.declaration
    if not declaration.elementwise or not report.findings:
        return ()
    low, high = declaration.domain
    x = report.findings[0].inputs.get("x")
    values = [v for v in _flat(x) if isinstance(v, (int, float)) and low <= v <= high]
    return tuple(dict.fromkeys(values))[:3]


def _flat(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for part in value for item in _flat(part)]
    return [value]


# -- the session's results ---------------------------------------------------------------------

class ResultLog:
    """Every gradcheck item's result, in collection order, and the figures of failing items."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.order: dict[str, int] = {}
        self.items: dict[str, dict[str, Any]] = {}  # collected gradcheck items: target, dtype
        self.figures: dict[str, dict[str, str]] = {}  # nodeid -> {"png": ...} or {"error": ...}

    def remember_order(self, nodeids: Iterable[str],
                       items: dict[str, dict[str, Any]] | None = None) -> None:
        """The collection order; ``items`` (node id -> target, dtype) names the gradcheck
        items among them, else those are told by their ids (``path::name[dtype]``)."""
        for nodeid in nodeids:
            self.order.setdefault(nodeid, len(self.order))
            info = (items or {}).get(nodeid) if items is not None else _info_from(nodeid)
            if info is not None:
                self.items.setdefault(nodeid, info)

    def is_item(self, nodeid: str) -> bool:
        return nodeid in self.items or nodeid in self.results

    def forget(self, nodeid: str) -> None:
        """Not a gradcheck item after all (under xdist, items are told by their ids)."""
        self.items.pop(nodeid, None)
        self.results.pop(nodeid, None)

    def started(self, nodeid: str) -> None:
        """An item began: until it reports, it counts as running (crashed, if never)."""
        self._entry(nodeid, None)["outcome"] = _RUNNING

    def take(self, nodeid: str, when: str, outcome: str, info: dict[str, Any] | None,
             result: dict[str, Any] | None = None, xfail: bool | str | None = None,
             reason: str | None = None) -> None:
        """One phase report of an item: ``when`` is setup, call, teardown, or ``???`` for
        pytest-xdist's report of a worker that died running it; ``outcome`` is pytest's
        (passed, failed, skipped); ``xfail`` the reason of an expected failure (pytest's
        ``wasxfail``), None for an ordinary item."""
        xfail = None if xfail is False else xfail
        entry = self._entry(nodeid, info)
        if isinstance(xfail, str) and xfail:
            entry["xfail_reason"] = xfail
        if isinstance(result, dict):
            entry.update({k: v for k, v in result.items() if k != "outcome"})
        if when == "???":
            interrupted = reason is not None and reason.startswith(INTERRUPTED)
            entry["outcome"] = "interrupted" if interrupted else "crashed"
            entry["reason"] = reason or CRASHED
        elif outcome == "skipped":
            entry["outcome"] = "xfailed" if xfail is not None else "skipped"
        elif outcome == "failed" and when == "call":
            entry["outcome"] = "timed out" if entry.get("timed_out") else "failed"
        elif outcome == "failed":
            if entry["outcome"] != "failed":
                entry["outcome"] = "error"
            if reason:
                entry.setdefault("error", reason)
        elif when == "call":
            entry["outcome"] = "xpassed" if xfail is not None else "passed"
        elif when == "teardown" and entry["outcome"] == _RUNNING:
            entry["outcome"] = "passed"  # a setup and teardown with no call in between

    def ended(self, reason: str) -> None:
        """The process is about to end (the time limit's watchdog): running items crashed,
        for ``reason``."""
        for entry in self.results.values():
            if entry["outcome"] == _RUNNING:
                entry["outcome"], entry["reason"] = "crashed", reason

    def interrupted(self, reason: str | None) -> None:
        """The session stops here: running items are interrupted, not crashed."""
        for entry in self.results.values():
            if entry["outcome"] == _RUNNING:
                entry["outcome"], entry["reason"] = "interrupted", reason or INTERRUPTED

    def _entry(self, nodeid: str, info: dict[str, Any] | None) -> dict[str, Any]:
        if nodeid not in self.results:
            info = info or self.items.get(nodeid) or _info_from(nodeid) or {
                "target": nodeid, "dtype": ""}
            self.results[nodeid] = {
                "nodeid": nodeid, "target": info["target"], "dtype": info["dtype"],
                "outcome": _RUNNING, "examples": 0, "duration_s": 0.0, "findings": []}
        return self.results[nodeid]

    def summary_line(self) -> str:
        """``gradcheck: 6 checks (3 targets x 2 dtypes): 4 passed, 2 failed; failed by kind``."""
        results = self.final_results()
        counts = _counts(results)
        kinds: dict[str, int] = {}
        for result in results:
            if result["outcome"] == "failed":
                for kind in result.get("kinds_seen") or [f["kind"] for f in result["findings"]]:
                    kinds[kind] = kinds.get(kind, 0) + 1
        targets = {result["target"] for result in results}
        dtypes = {result["dtype"] for result in results}
        line = (f"gradcheck: {plural(len(results), 'check')} "
                f"({plural(len(targets), 'target')} x {plural(len(dtypes), 'dtype')}): "
                + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n))
        if kinds:
            from ._report import KINDS

            ordered = sorted(kinds, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS))
            line += "; failed by kind: " + ", ".join(f"{k} {kinds[k]}" for k in ordered)
        for result in results:
            if result.get("reason"):
                line += f"\ngradcheck: {result['outcome']}: {result['nodeid']}: {result['reason']}"
        return line

    def write(self, seed: Any, report: Path | None, plots: Path | None,
              html: Path | None) -> None:
        """Write the figures, the JSON report and the HTML page, each where asked; called
        again as items start and end, each file replaced whole (never half written)."""
        if plots is not None:
            self.write_figures(plots)
        document = self.document(seed)
        if report is not None:
            _replace(report, json.dumps(document, indent=2) + "\n")
        if html is not None:
            from ._html import render

            pngs = {nodeid: f["png"] for nodeid, f in self.figures.items() if "png" in f}
            errors = {nodeid: f["error"] for nodeid, f in self.figures.items() if "error" in f}
            _replace(html, render(document, pngs, errors))

    def write_figures(self, folder: Path) -> None:
        """One PNG per failing item that has a figure, named after its node id."""
        folder.mkdir(parents=True, exist_ok=True)
        for nodeid, figure in self.figures.items():
            if "png" not in figure or nodeid not in self.results:
                continue
            path = folder / _file_name(nodeid)
            path.write_bytes(base64.b64decode(figure["png"]))
            self.results[nodeid]["figure"] = str(path)

    def document(self, seed: Any) -> dict[str, Any]:
        """The JSON report: versions, seed, one result per item in collection order."""
        from . import __version__

        results = self.final_results()
        return {"gradcheck_version": __version__,
                "tensorflow_version": _tensorflow_version(), "seed": seed,
                "results": results, "summary": _counts(results)}


    def final_results(self) -> list[dict[str, Any]]:
        """Every item in collection order, as it stands: running ones as crashed, collected
        ones that never started as not run."""
        results = [dict(r, outcome="crashed", reason=CRASHED) if r["outcome"] == _RUNNING
                   else r for r in self.results.values()]
        results += [{"nodeid": nodeid, "target": info["target"], "dtype": info["dtype"],
                     "outcome": "not run", "examples": 0, "duration_s": 0.0, "findings": []}
                    for nodeid, info in self.items.items() if nodeid not in self.results]
        arrival = {r["nodeid"]: index for index, r in enumerate(results)}
        return sorted(results, key=lambda r: (self.order.get(r["nodeid"], len(self.order)),
                                              arrival[r["nodeid"]]))


def crash_reason(message: str, worker_error: str) -> str:
    """Why pytest-xdist reports an item as crashed: its message and the worker's error."""
    message = message or "the worker crashed"
    if worker_error == "keyboard-interrupt":
        return f"{INTERRUPTED} ({message.replace('crashed', 'stopped')})"
    return f"{message}{f' ({worker_error})' if worker_error else ''}; {CRASHED}"


def _info_from(nodeid: str) -> dict[str, Any] | None:
    """Target and dtype told from a gradcheck item's id, ``path::name[dtype]``."""
    match = _DTYPE_ID.match(nodeid)
    if match is None:
        return None
    path, _, name = nodeid.partition("::")
    module = Path(path).with_suffix("").name
    return {"target": f"{module}:{name[: name.rindex('[')]}", "dtype": match.group(1)}


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (or a
    process killed mid-write) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _file_name(nodeid: str) -> str:
    """``src/acts.py::elu[float16]`` -> ``src_acts.py__elu-float16.png``."""
    name = nodeid.replace("::", "__").replace("[", "-").replace("]", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") + ".png"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counts(results: Any) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[result["outcome"]] += 1
    return {k: n for k, n in counts.items() if n or k in _ALWAYS_COUNTED}


def _tensorflow_version() -> str | None:
    """TensorFlow's version, without importing it on an xdist controller that never did."""
    module = sys.modules.get("tensorflow")
    if module is not None and hasattr(module, "__version__"):
        return module.__version__
    from importlib import metadata

    for dist in metadata.packages_distributions().get("tensorflow", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover
            continue
    return None
