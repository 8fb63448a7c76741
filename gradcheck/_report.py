"""Findings and reports: what a check found, as plain data and as text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Finding", "Report", "GradcheckError", "plain_text"]

#: Every kind of finding, in the order a report lists them.
KINDS = (
    "error",
    "timeout",  # the check of one input did not finish within the time limit (issue 14)
    "dtype_mismatch",
    "shape_mismatch",
    "nonfinite_output",
    "nonfinite_gradient",
    "disconnected_gradient",
    "untracked_variable",
    "not_elementwise",
    "batch_coupling",
    "gradient_mismatch",
    "second_order_mismatch",  # order=2: the gradient's own derivative is wrong (issue 7)
    "mode_mismatch",  # tf.function / XLA (/ another device) disagrees with eager (issue 7)
    "nondeterministic",  # two calls at the same input differ (dropout, tf.random)
)


@dataclass
class Finding:
    """One problem with a target's gradients.

    Attributes:
        kind: one of :data:`KINDS`.
        message: one human-readable sentence or two: what was expected, what was found.
        inputs: the input that shows the problem, as plain lists keyed by argument name,
            plus ``"dtype"``.
        details: JSON-safe facts: index, analytic and numerical values, error bound, ...
    """

    kind: str
    message: str
    inputs: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; expected one of {KINDS}")
        # Keras 3 puts ANSI escapes (bold) in its error messages: keep text, JSON, HTML plain.
        self.message = truncated(plain_text(self.message))
        self.details = {key: truncated(plain_text(value)) if isinstance(value, str) else value
                        for key, value in self.details.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message,
                "inputs": _jsonable(self.inputs), "details": _jsonable(self.details)}


@dataclass
class Report:
    """The outcome of checking one target at one input (or, from fuzzing, many inputs).

    ``str(report)`` reads like a pytest assertion message; ``to_dict()`` is JSON-ready.
    """

    target: str
    findings: list[Finding] = field(default_factory=list)
    dtype: str | None = None
    reference_dtype: str | None = None
    reproducer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def kinds(self) -> list[str]:
        """The distinct kinds found, in :data:`KINDS` order."""
        seen = {f.kind for f in self.findings}
        return [k for k in KINDS if k in seen]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "target": self.target, "ok": self.ok, "dtype": self.dtype,
            "reference_dtype": self.reference_dtype,
            "findings": [f.to_dict() for f in self.findings],
            "reproducer": self.reproducer, **self.meta,
        })

    def __str__(self) -> str:
        where = f" [{self.dtype}]" if self.dtype else ""
        skipped = self.meta.get("skipped") or []
        notes = [skipped] if isinstance(skipped, str) else list(skipped)
        notes += self.meta.get("not_reported", [])  # a sweep's, that no check alone showed
        if self.ok and notes:  # no finding, but not all was checked
            return (f"gradcheck: {self.target}{where}: no finding; not checked: "
                    + "; ".join(notes))
        if self.ok:
            return f"gradcheck: {self.target}{where}: gradients OK"
        lines = [f"gradcheck: {self.target}{where}: {len(self.findings)} finding(s): "
                 + ", ".join(self.kinds)]
        for finding in self.findings:
            lines.append(f"- {finding.kind}: {finding.message}")
        shown = next((f.inputs for f in self.findings if f.inputs), None)
        if shown:
            lines.append(f"  input: {_short(shown)}")
        if self.reference_dtype:
            lines.append(f"  numerical reference computed in {self.reference_dtype}")
        if self.reproducer:
            lines.append(f"  reproduce: {self.reproducer}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Report {self.target} ok={self.ok} kinds={self.kinds}>"


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck.assert_gradients`; ``.report`` holds the :class:`Report`."""

    def __init__(self, report: Report):
        super().__init__(str(report))
        self.report = report


#: A target's own error message can be megabytes (a tensor printed whole): a report keeps this
#: many characters of any one message, enough for a traceback line and the values around it.
MESSAGE_LIMIT = 4000


def distinct_texts(a: float, b: float, digits: int = 6) -> tuple[str, str]:
    """``a`` and ``b`` with ``digits`` significant digits, more where those print two
    different values alike (up to 17, float64's round trip)."""
    for shown in [digits] + [d for d in (9, 12, 17) if d > digits]:
        texts = f"{a:.{shown}g}", f"{b:.{shown}g}"
        if texts[0] != texts[1] or a == b:
            break
    return texts


def truncated(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with a note saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} ... [truncated: {len(text)} characters in all]"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain_text(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, bold)."""
    return _ANSI.sub("", text)


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(_jsonable(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Plain Python data only: numpy scalars and arrays become floats and lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return repr(value)  # JSON has no NaN/Inf; keep them readable
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
