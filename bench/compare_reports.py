"""Diff two ``pytest --gradcheck --gradcheck-report`` JSON files item by item.

    python bench/compare_reports.py BEFORE.json AFTER.json

For each item (node id) it compares the outcome and the set of finding kinds; it prints every
item that differs, or is in one report only, and exits 1 if any does (0 when every verdict is
the same). Messages, inputs and timings are not compared: a refactor may reword them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def verdicts(path: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """node id -> (outcome, sorted finding kinds) of one report."""
    results = json.loads(Path(path).read_text())["results"]
    return {r["nodeid"]: (r["outcome"], tuple(sorted({f["kind"] for f in r.get("findings", [])})))
            for r in results}


def differences(before: dict, after: dict) -> list[str]:
    """One line per item whose verdict differs between ``before`` and ``after``."""
    lines = []
    for nodeid in sorted(before.keys() | after.keys()):
        old, new = before.get(nodeid), after.get(nodeid)
        if old != new:
            lines.append(f"{nodeid}: {_show(old)} -> {_show(new)}")
    return lines


def _show(verdict: tuple[str, tuple[str, ...]] | None) -> str:
    if verdict is None:
        return "(absent)"
    outcome, kinds = verdict
    return f"{outcome} [{', '.join(kinds)}]" if kinds else outcome


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/compare_reports.py BEFORE.json AFTER.json", file=sys.stderr)
        return 2
    before, after = verdicts(argv[0]), verdicts(argv[1])
    lines = differences(before, after)
    for line in lines:
        print(line)
    print(f"{len(before)} items before, {len(after)} after, {len(lines)} differ")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
