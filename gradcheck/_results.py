"""The results of a ``pytest --gradcheck`` session: gathered per item, then written once.

:class:`ResultLog` keeps one plain-data result per gradcheck item (node id, target, dtype,
outcome, examples, findings, ...) and the figures of failing items, and writes the JSON report,
the PNG figures and the HTML page (:mod:`gradcheck._html`). :func:`failure_text` is what a
failing item prints, shared by the pytest plugin and the command line; :func:`item_figure` draws
a failing item's figure as base64 PNG. Pure Python: nothing here imports pytest, and TensorFlow
only where a figure is drawn, so an xdist controller stays light.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

__all__ = ["OUTCOMES", "ResultLog", "failure_text", "item_figure", "plural"]

OUTCOMES = ("passed", "failed", "error", "skipped")
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
        lines.append(f"  examples run: {meta['examples']}{seed}")
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
        "duration_s": round(float(duration), 3),
        "findings": [{"kind": f["kind"], "message": f["message"], "inputs": f["inputs"]}
                     for f in (report.to_dict()["findings"] if report is not None else [])],
        "kinds_seen": list(meta.get("kinds_seen", report.kinds if report else [])),
        "reproducer": report.reproducer if report is not None else None,
        "hypothesis_blob": meta.get("hypothesis_blob"),
    }
    if error is not None:
        result["error"] = error
    return result


# -- figures -----------------------------------------------------------------------------------

def item_figure(registered: Any, dtype: str, report: Any) -> dict[str, str]:
    """The item's figure as base64 PNG (JSON-safe), or why it could not be drawn."""
    import io

    try:
        from .plot import derivatives

        figure = derivatives(registered, dtypes=(dtype,), points=FIGURE_POINTS,
                             highlight=_failing_x(registered, report))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    except Exception as exc:  # noqa: BLE001 - a figure is a bonus: never fail the run for it
        return {"error": f"{type(exc).__name__}: {exc}"}
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
        self.figures: dict[str, dict[str, str]] = {}  # nodeid -> {"png": ...} or {"error": ...}

    def remember_order(self, nodeids: Iterable[str]) -> None:
        for nodeid in nodeids:
            self.order.setdefault(nodeid, len(self.order))

    def take(self, nodeid: str, when: str, passed: bool, failed: bool, skipped: bool,
             info: dict[str, Any], result: dict[str, Any] | None) -> None:
        """One phase report (setup, call, teardown) of a gradcheck item."""
        entry = self.results.setdefault(nodeid, {
            "nodeid": nodeid, "target": info["target"], "dtype": info["dtype"],
            "outcome": "passed", "examples": 0, "duration_s": 0.0, "findings": []})
        if when == "call" and isinstance(result, dict):
            entry.update(result)
        elif skipped:
            entry["outcome"] = "skipped"
        elif failed:
            entry["outcome"] = "error" if when != "call" else "failed"

    def summary_line(self) -> str:
        """``gradcheck: 6 checks (3 targets x 2 dtypes): 4 passed, 2 failed; failed by kind``."""
        results = self.results.values()
        counts = _counts(results)
        kinds: dict[str, int] = {}
        for result in results:
            if result["outcome"] == "failed":
                for kind in result.get("kinds_seen") or [f["kind"] for f in result["findings"]]:
                    kinds[kind] = kinds.get(kind, 0) + 1
        targets = {result["target"] for result in results}
        dtypes = {result["dtype"] for result in results}
        line = (f"gradcheck: {plural(len(self.results), 'check')} "
                f"({plural(len(targets), 'target')} x {plural(len(dtypes), 'dtype')}): "
                + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n))
        if kinds:
            from ._report import KINDS

            ordered = sorted(kinds, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS))
            line += "; failed by kind: " + ", ".join(f"{k} {kinds[k]}" for k in ordered)
        return line

    def write(self, seed: Any, report: Path | None, plots: Path | None,
              html: Path | None) -> None:
        """Write the figures, the JSON report and the HTML page, each where asked."""
        if plots is not None:
            self.write_figures(plots)
        document = self.document(seed)
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(document, indent=2) + "\n")
        if html is not None:
            from ._html import render

            pngs = {nodeid: f["png"] for nodeid, f in self.figures.items() if "png" in f}
            errors = {nodeid: f["error"] for nodeid, f in self.figures.items() if "error" in f}
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(render(document, pngs, errors), encoding="utf-8")

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

        arrival = {nodeid: index for index, nodeid in enumerate(self.results)}
        results = sorted(self.results.values(), key=lambda r: (
            self.order.get(r["nodeid"], len(self.order)), arrival[r["nodeid"]]))
        return {"gradcheck_version": __version__,
                "tensorflow_version": _tensorflow_version(), "seed": seed,
                "results": results, "summary": _counts(results)}


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
    return counts


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
