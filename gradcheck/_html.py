"""The HTML report of ``pytest --gradcheck --gradcheck-html PATH``: one self-contained page.

:func:`render` turns the plugin's JSON report document (``{"results": [...], "summary": ...,
versions, seed}``) and the figures of failing items (base64 PNG) into a page with no external
resources: a summary line, a table of every target x dtype with its outcome and finding kinds,
and, per item, its findings, reproducer and figure (inlined as a data: URI). Pure Python and
the standard library, no TensorFlow: the pytest controller writes it.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

from ._options import DTYPES

__all__ = ["render"]

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 80em; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1.6em 0 0.4em; font-family: ui-monospace, monospace; }
.meta { color: #666; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f6; }
td.target { font-family: ui-monospace, monospace; }
.passed { background: #e8f5e9; } .failed { background: #fdecea; }
.error, .timed-out, .xpassed { background: #fff4e0; }
.skipped, .not-run, .xfailed { background: #f0f0f0; }
.crashed, .interrupted { background: #f3e5f5; }
.outcome { font-weight: 600; } .kinds { font-size: 0.85em; color: #444; }
pre { background: #f7f7f9; padding: 0.7em; overflow-x: auto; white-space: pre-wrap;
      font-size: 0.85em; }
ul.findings li { margin-bottom: 0.6em; }
code { font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin-top: 0.5em; }
a { color: #0b57d0; text-decoration: none; }
"""


def render(document: Mapping[str, Any], figures: Mapping[str, str] | None = None,
           figure_errors: Mapping[str, str] | None = None, *,
           title: str = "gradcheck report") -> str:
    """The HTML page for a JSON report document.

    Args:
        document: the plugin's report: ``results`` (one dict per item: nodeid, target, dtype,
            outcome, examples, duration_s, findings, kinds_seen, reproducer, error...),
            ``summary`` (outcome counts), ``gradcheck_version``, ``tensorflow_version``,
            ``seed``.
        figures: node id -> base64 PNG of that item's figure.
        figure_errors: node id -> why its figure could not be drawn.
        title: the page title.
    """
    figures, figure_errors = figures or {}, figure_errors or {}
    results = list(document.get("results", []))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{_e(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>", _header(document, results),
        "<h2>Targets × dtypes</h2>", _matrix(results),
        "<h2>Every check</h2>", "".join(_item(r, figures.get(r["nodeid"]),
                                             figure_errors.get(r["nodeid"])) for r in results),
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _css(outcome: str) -> str:
    """The CSS class of an outcome: ``timed out`` -> ``timed-out``."""
    return _e(outcome.replace(" ", "-"))


def _anchor(nodeid: str) -> str:
    return "item-" + "".join(c if c.isalnum() else "-" for c in nodeid)


def _header(document: Mapping[str, Any], results: list[dict[str, Any]]) -> str:
    summary = document.get("summary") or {}
    counts = ", ".join(f"{n} {outcome}" for outcome, n in summary.items() if n) or "no checks"
    targets = len({r["target"] for r in results})
    versions = (f"gradcheck {document.get('gradcheck_version')}, TensorFlow "
                f"{document.get('tensorflow_version')}, Hypothesis seed "
                f"{document.get('seed') if document.get('seed') is not None else 'not set'}")
    return (f'<p><strong>{len(results)} checks</strong> ({targets} targets): {_e(counts)}</p>'
            f'<p class="meta">{_e(versions)}</p>')


def _matrix(results: list[dict[str, Any]]) -> str:
    """One row per target, one column per dtype: outcome and kinds, linked to the details."""
    targets: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        targets.setdefault(result["target"], {})[result["dtype"]] = result
    seen = {r["dtype"] for r in results}
    dtypes = [d for d in DTYPES if d in seen] + sorted(seen - set(DTYPES))
    rows = ["<table>", "<tr><th>target</th>" + "".join(f"<th>{_e(d)}</th>" for d in dtypes)
            + "</tr>"]
    for target, by_dtype in targets.items():
        cells = []
        for dtype in dtypes:
            result = by_dtype.get(dtype)
            if result is None:
                cells.append('<td class="meta">not checked</td>')
                continue
            kinds = _kinds(result)
            cells.append(
                f'<td class="{_css(result["outcome"])}" title="{_e(result["nodeid"])}">'
                f'<a href="#{_anchor(result["nodeid"])}"><span class="outcome">'
                f'{_e(result["outcome"])}</span></a>'
                + (f'<br><span class="kinds">{_e(", ".join(kinds))}</span>' if kinds else "")
                + "</td>")
        rows.append(f'<tr><td class="target">{_e(target)}</td>{"".join(cells)}</tr>')
    rows.append("</table>")
    return "\n".join(rows)


def _kinds(result: Mapping[str, Any]) -> list[str]:
    return list(result.get("kinds_seen") or [f["kind"] for f in result.get("findings", [])])


def _item(result: Mapping[str, Any], png: str | None, figure_error: str | None) -> str:
    nodeid, outcome = result["nodeid"], result["outcome"]
    swept = f' · {result["swept"]} values swept' if result.get("swept") else ""
    if result.get("sweep_skipped"):
        swept = f' · not swept: {_e(result["sweep_skipped"])}'
    repeated = (f' ({result["repeated"]} repeated an input that had passed: not checked '
                f'again)' if result.get("repeated") else "")
    facts = (f'<span class="outcome">{_e(outcome)}</span> · {result.get("examples", 0)} '
             f'examples{repeated}{swept} · {float(result.get("duration_s", 0.0)):.2f} s')
    parts = [f'<h3 id="{_anchor(nodeid)}">{_e(nodeid)}</h3>',
             f'<p class="{_css(outcome)}">{facts}</p>']
    for why in ("reason", "xfail_reason"):  # crashed / interrupted, or a known failure
        if result.get(why):
            parts.append(f"<p>{_e(result[why])}</p>")
    if result.get("error"):
        parts.append(f"<pre>{_e(result['error'])}</pre>")
    findings = result.get("findings") or []
    if findings:
        parts.append('<ul class="findings">' + "".join(
            f"<li><strong>{_e(f['kind'])}</strong>: {_e(f['message'])}</li>" for f in findings)
            + "</ul>")
    if result.get("kinds_seen"):
        parts.append(f"<p>kinds seen while fuzzing: {_e(', '.join(result['kinds_seen']))}</p>")
    if result.get("reproducer"):
        parts.append(f"<p>reproduce:</p><pre>{_e(result['reproducer'])}</pre>")
    if result.get("hypothesis_blob"):
        parts.append(f"<p>Hypothesis: <code>{_e(result['hypothesis_blob'])}</code></p>")
    if png:
        parts.append(f'<img alt="figure of {_e(nodeid)}" src="data:image/png;base64,{png}">')
    elif figure_error:
        parts.append(f'<p class="meta">no figure: {_e(figure_error)}</p>')
    return "\n".join(parts)
