"""Plots of a target's derivative: f, the analytic f' and the numerical f', one column per dtype.

    import gradcheck.plot

    fig = gradcheck.plot.derivatives(my_activation, path="my_activation.png")

Each column is one dtype. Its top panel is f over the declared domain, computed in that dtype;
the next is the analytic derivative (autodiff in that dtype, upstream dy all ones) beside the
numerical one (central differences of the float64 version when the target runs in float64,
otherwise of the target itself, with the core's step ``eps^(1/3) * max(1, |x|)``). Below come
the derivatives with respect to each scalar parameter: each ``args`` entry of an activation and
each trainable weight of a layer (one panel per component of a small parameter), over the same
points.

Elementwise targets are drawn over a grid of the domain (declared kinks and 0 included). Other
targets are drawn along a line ``x0 + t * u`` through a random base point ``x0`` in a random
direction ``u`` (both from ``seed``): the panels show ``mean f(x0 + t * u)`` and its derivative
in ``t``. A target whose input has several features (``input_shape=(None, 4)``) is drawn with
every feature set to ``x`` and the mean over the features plotted.

What is marked:

- mismatch (red shading and dots): the analytic derivative disagrees with the numerical one by
  the core's rule: :func:`gradcheck._numerics.judge_lines` with the allowances of
  :func:`gradcheck.check` (in float16/bfloat16 also its window of inputs the dtype cannot tell
  apart);
- NaN/Inf in f or in a derivative (crosses along the bottom edge);
- declared kinks (dotted lines) and detected ones (triangles along the top edge);
- for elementwise targets, the analytic derivative taken with a random upstream dy and divided
  by it, wherever that differs from the all-ones one (a gradient that ignores or mishandles dy).

Each column's title names the target and dtype and what :func:`gradcheck.check` reports at the
plotted points. The figure carries the same facts as plain data in ``figure.gradcheck``.

matplotlib is an optional dependency (``pip install gradcheck[plot]``). Only its
object-oriented API is used, never pyplot: plotting changes no global state and needs no display.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    from ._plot_data import Curve, Panel
    from ._plot_points import Spec

__all__ = ["derivatives"]

#: Size of one panel in inches, and of the legend strip under the panels.
PANEL_SIZE = (4.8, 2.4)
LEGEND_ROW_HEIGHT = 0.2
MIN_WIDTH = 8.0
SUPTITLE_CHARS_PER_INCH = 8
#: Mismatching points are also dotted when there are at most this many (shading alone can be
#: too thin to see for a single point); more are shaded only, keeping the curves visible.
MAX_MISMATCH_DOTS = 40
#: Characters per line of a column title (wider lines run into the next column).
TITLE_WIDTH = 56

# Colours and styles, kept together so that every panel reads the same.
_F_STYLE = {"color": "0.15", "linewidth": 1.6}
_ANALYTIC_STYLE = {"color": "tab:blue", "linewidth": 2.2, "alpha": 0.85}
_NUMERICAL_STYLE = {"color": "tab:orange", "linewidth": 1.3, "linestyle": "--"}
_MISMATCH_COLOR = "tab:red"
_LEGEND_ORDER = ("f (", "analytic derivative", "numerical derivative", "mismatch:",
                 "mismatching point", "analytic with a random dy", "NaN/Inf", "declared kink",
                 "kink detected", "minimal failing input")
_NONFINITE_COLOR = "darkviolet"


def derivatives(target: Any, *, dtypes: Iterable[str] | None = None, points: int = 401,
                seed: int = 0, path: Any = None, dpi: int = 100,
                highlight: Sequence[float] = (), **declaration_options: Any) -> Any:
    """Draw f, its analytic and its numerical derivative for every dtype of ``target``.

    Args:
        target: a function of tensors (plain, ``tf.custom_gradient``, ``tf.function``), a
            Keras Layer subclass, instance or zero-argument factory, a target declared with
            ``@gradcheck.activation``/``@gradcheck.layer``, or a registry entry
            (:class:`gradcheck._declare.Registered`).
        dtypes: the dtype names to draw, one column each (default: the declared ones; a Layer
            instance: its own).
        points: points along the abscissa (at most 41 for targets that are not batch
            independent, which are called once per point).
        seed: seeds the base point and direction of non-elementwise targets, the values of
            tensor parameters, and the random upstream dy.
        path: where to save the figure as PNG (anything ``Figure.savefig`` accepts), or None.
        dpi: resolution; the image is ``figure.get_size_inches() * dpi`` pixels.
        highlight: abscissa values to mark, e.g. the input fuzzing shrank a failure to.
        **declaration_options: fields of :class:`gradcheck._declare.Declaration` that replace
            the declared ones, e.g. ``domain=(-5, 5)``.

    Returns:
        A ``matplotlib.figure.Figure``. Its attribute ``gradcheck`` holds what was found per
        dtype as plain data: ``{"target": ..., "abscissa": "x" | "t", "panels": [...]}``, each
        panel a dict with ``dtype``, ``points``, ``mismatched``, ``nonfinite_f``,
        ``nonfinite_gradient``, ``kinks`` (abscissae), ``parameters`` (label -> mismatched
        points), ``random_dy_differs`` (points where a random dy changes the analytic
        derivative), ``check`` (the finding kinds :func:`gradcheck.check` reports there) and
        ``error`` (the exception text when the target raised, else None).

    Raises:
        ImportError: matplotlib is not installed.
        TypeError, ValueError: an unknown option, a dtype that is not declared for a Layer
            instance, ``points < 5``.
    """
    _require_matplotlib()
    from ._plot_data import compute_panel, quiet_tensorflow  # TensorFlow, on first use
    from ._plot_points import Spec

    spec = Spec.resolve(target, dtypes, points, seed, tuple(highlight), declaration_options)
    with quiet_tensorflow():
        panels = [compute_panel(spec, dtype) for dtype in spec.dtypes]
    figure = _draw(spec, panels, dpi)
    figure.gradcheck = {"target": spec.entry.qualified, "abscissa": spec.abscissa,
                        "panels": [panel.summary() for panel in panels]}
    if path is not None:
        figure.savefig(path, dpi=dpi)
    return figure


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("gradcheck.plot needs matplotlib: pip install 'gradcheck[plot]' "
                          "(or pip install matplotlib)") from exc


# -- drawing -----------------------------------------------------------------------------------

def _draw(spec: Spec, panels: list[Panel], dpi: int) -> Any:
    from matplotlib.figure import Figure

    rows = 2 + max(len(p.parameters) for p in panels)
    cols = len(panels)
    width = max(MIN_WIDTH, PANEL_SIZE[0] * cols)
    figure = Figure(figsize=(width, PANEL_SIZE[1] * rows), dpi=dpi, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, sharex="col")
    for col, panel in enumerate(panels):
        _draw_column(spec, panel, list(axes[:, col]))
    kind = "elementwise, over the declared domain" if spec.decl.elementwise else \
        "along a random line through the domain"
    title = _suptitle(f"gradcheck: {spec.entry.qualified}", f"f and its derivatives ({kind})",
                      int(width * SUPTITLE_CHARS_PER_INCH))
    figure.suptitle(title, fontsize=12, fontweight="bold")
    legend_rows = _legend(figure, axes.ravel(), ncols=2 if width >= 9 else 1)
    # Room for the title lines and the legend under the panels, so they never squeeze them.
    extra = 0.3 * title.count("\n") + LEGEND_ROW_HEIGHT * legend_rows + 0.5
    figure.set_size_inches(width, PANEL_SIZE[1] * rows + extra)
    return figure


def _suptitle(name: str, what: str, chars: int) -> str:
    """``name — what`` on one line when it fits, else each on lines of its own."""
    if len(name) + 3 + len(what) <= chars:
        return f"{name} — {what}"
    return "\n".join(line for text in (name, what)
                     for line in textwrap.wrap(text, chars, break_long_words=False))


def _draw_column(spec: Spec, panel: Panel, axes: list[Any]) -> None:
    top = axes[0]
    top.set_title(_column_title(spec, panel), fontsize=9.5, loc="left")
    if panel.error is not None:
        _draw_error(panel, axes)
        return
    xs = panel.points.abscissa
    _draw_f(spec, panel, top)
    _draw_derivative(spec, panel, axes[1], panel.primary, panel.random_dy)
    axes[1].set_ylabel(_derivative_label(spec, panel))
    for ax, curve in zip(axes[2:], panel.parameters):
        _draw_derivative(spec, panel, ax, curve, None)
        ax.set_ylabel(f"∂f/∂{curve.label}", fontsize=9)
        ax.text(0.01, 0.96, f"w.r.t. {curve.label} = {curve.value:.4g}", fontsize=8,
                transform=ax.transAxes, va="top", ha="left", color="0.3")
    if panel.left_out:
        axes[1].text(0.99, 0.03, "not drawn: " + ", ".join(panel.left_out), fontsize=7,
                     transform=axes[1].transAxes, ha="right", va="bottom", color="0.35")
    used = 2 + len(panel.parameters)
    for ax in axes[used:]:
        ax.set_visible(False)
    axes[used - 1].set_xlabel(_abscissa_label(spec, panel))
    axes[used - 1].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:used]:
        ax.grid(True, color="0.9", linewidth=0.6)
        ax.set_xlim(xs[0], xs[-1])


def _column_title(spec: Spec, panel: Panel) -> str:
    """Target and dtype, what the panels show, what gradcheck.check says; wrapped to fit."""
    head = f"{spec.entry.name} [{panel.dtype}]"
    if panel.error is not None:
        return f"{head}\nthe target raised"
    curve, total = panel.primary, panel.points.abscissa.size
    facts = []
    if curve.mismatch.any():
        facts.append(f"f′ mismatch at {int(curve.mismatch.sum())}/{total} points")
    facts += [f"∂f/∂{c.label} mismatch at {int(c.mismatch.sum())}/{total} points"
              for c in panel.parameters if c.mismatch.any()]
    if panel.random_dy is not None:
        count = int(np.isfinite(panel.random_dy).sum())
        facts.append(f"a random dy changes f′ at {count} points: dy mishandled")
    nonfinite = panel.nonfinite_f | curve.nonfinite
    if nonfinite.any():
        facts.append(f"NaN/Inf at {int(nonfinite.sum())}/{total} points")
    lines = [head, "; ".join(facts) if facts else "analytic = numerical at every point"]
    lines.append("gradcheck.check at these points: "
                 + (", ".join(panel.check_kinds) if panel.check_kinds else "gradients OK"))
    if panel.points.note:
        lines.append(f"({panel.points.note})")
    if panel.reference_dtype != "float64":
        lines.append(f"(no float64 version runs: numerical side in {panel.reference_dtype})")
    return "\n".join(wrapped for line in lines
                     for wrapped in textwrap.wrap(line, TITLE_WIDTH, subsequent_indent="  "))


def _draw_error(panel: Panel, axes: list[Any]) -> None:
    text = "\n".join(textwrap.wrap(f"the target raised in {panel.dtype}: {panel.error}", 60)[:8])
    axes[0].text(0.02, 0.5, text, transform=axes[0].transAxes, fontsize=8.5, va="center",
                 color=_MISMATCH_COLOR, family="monospace")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax in axes[1:]:
        ax.set_visible(False)


def _draw_f(spec: Spec, panel: Panel, ax: Any) -> None:
    xs = panel.points.abscissa
    f = np.where(panel.nonfinite_f, np.nan, panel.f)
    ax.plot(xs, f, label="f (computed in the column's dtype)", **_F_STYLE)
    _shade(ax, xs, panel.primary.mismatch)
    _mark_nonfinite(ax, xs, panel.nonfinite_f, "NaN/Inf in f", "D")
    _mark_kinks(spec, ax, panel.kinks)
    ax.set_ylabel(_f_label(spec, panel))
    _limits(ax, [f])


def _draw_derivative(spec: Spec, panel: Panel, ax: Any, curve: Curve,
                     random_dy: np.ndarray | None) -> None:
    xs = panel.points.abscissa
    analytic = np.where(curve.nonfinite, np.nan, curve.analytic)
    numerical = np.where(np.isfinite(curve.numerical), curve.numerical, np.nan)
    _shade(ax, xs, curve.mismatch)
    ax.plot(xs, analytic, label="analytic derivative (autodiff, column's dtype, dy = 1)",
            **_ANALYTIC_STYLE)
    ax.plot(xs, numerical, label="numerical derivative (central differences, float64 unless "
                                 "noted)",
            **_NUMERICAL_STYLE)
    if 0 < curve.mismatch.sum() <= MAX_MISMATCH_DOTS:
        ax.plot(xs[curve.mismatch], analytic[curve.mismatch], "o", color=_MISMATCH_COLOR,
                markersize=3.5, label="mismatching point", zorder=4)
    if random_dy is not None:
        ax.plot(xs, random_dy, ".", color="tab:green", markersize=4, zorder=3,
                label="analytic with a random dy, ÷ dy (off the line: dy mishandled)")
    _mark_nonfinite(ax, xs, curve.nonfinite, "NaN/Inf in a derivative", "x")
    _mark_kinks(spec, ax, panel.kinks)
    _limits(ax, [numerical, analytic] + ([random_dy] if random_dy is not None else []))


def _shade(ax: Any, xs: np.ndarray, mask: np.ndarray) -> None:
    """Shade each run of mismatching points, half a spacing beyond its ends."""
    if not mask.any():
        return
    edges = np.concatenate([[xs[0]], (xs[:-1] + xs[1:]) / 2, [xs[-1]]])
    start = None
    for i, bad in enumerate(np.append(mask, False)):
        if bad and start is None:
            start = i
        elif not bad and start is not None:
            ax.axvspan(edges[start], edges[i], color=_MISMATCH_COLOR, alpha=0.18, linewidth=0,
                       label="mismatch: analytic ≠ numerical beyond gradcheck's tolerance")
            start = None


def _mark_nonfinite(ax: Any, xs: np.ndarray, mask: np.ndarray, label: str,
                    marker: str) -> None:
    """Crosses (diamonds for f) along the bottom edge where the values are NaN/Inf."""
    if mask is None or not mask.any():
        return
    ax.plot(xs[mask], np.full(int(mask.sum()), 0.03), marker, color=_NONFINITE_COLOR,
            markersize=4 if marker == "D" else 5, transform=ax.get_xaxis_transform(),
            label=label, clip_on=False, zorder=5)


def _mark_kinks(spec: Spec, ax: Any, detected: list[float]) -> None:
    if spec.decl.elementwise:
        for k in spec.decl.kinks:
            ax.axvline(k, color="0.45", linestyle=":", linewidth=1.2, label="declared kink")
    if detected:
        ax.plot(detected, np.full(len(detected), 0.95), "v", color="0.3", markersize=6,
                transform=ax.get_xaxis_transform(), label="kink detected", zorder=5)
    for x in spec.highlight:
        ax.axvline(x, color="tab:purple", linewidth=1.0, alpha=0.7,
                   label="minimal failing input (fuzzing)")


def _limits(ax: Any, series: list[np.ndarray]) -> None:
    """y-limits from the bulk of the values: a single spike (a jump of f seen by finite
    differences, a huge wrong gradient) must not flatten everything else."""
    values = np.concatenate([s[np.isfinite(s)] for s in series if s is not None])
    if values.size == 0:
        ax.set_ylim(-1, 1)
        return
    lo, hi = values.min(), values.max()
    if values.size > 50:
        # Outliers beyond one bulk-width past the 0.5/99.5 percentiles are left off the axis.
        bulk_lo, bulk_hi = np.percentile(values, [0.5, 99.5])
        width = bulk_hi - bulk_lo
        lo = lo if lo >= bulk_lo - width else bulk_lo
        hi = hi if hi <= bulk_hi + width else bulk_hi
    pad = 0.08 * (hi - lo) if hi > lo else max(0.5, 0.1 * abs(hi))
    ax.set_ylim(lo - pad, hi + pad)


def _f_label(spec: Spec, panel: Panel) -> str:
    if spec.decl.elementwise:
        return "f(x)" if panel.points.origin.size == 1 else "mean f(x)"
    return "mean f(x0 + t·u)"


def _derivative_label(spec: Spec, panel: Panel) -> str:
    if spec.decl.elementwise:
        return "f′(x)" if panel.points.origin.size == 1 else "d/dx mean f(x)"
    return "d/dt mean f(x0 + t·u)"


def _abscissa_label(spec: Spec, panel: Panel) -> str:
    return "x" if spec.decl.elementwise else "t (x = x0 + t·u)"


def _legend(figure: Any, axes: Iterable[Any], ncols: int) -> int:
    """One legend for the figure, under the panels: each label once. Returns its rows."""
    seen: dict[str, Any] = {}
    for ax in axes:
        if not ax.get_visible():
            continue
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, (handle, label))
    if seen:
        order = sorted(seen, key=lambda label: next(
            (rank for rank, start in enumerate(_LEGEND_ORDER) if label.startswith(start)),
            len(_LEGEND_ORDER)))
        handles, labels = zip(*(seen[label] for label in order))
        figure.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)),
                      fontsize=8.5, frameon=False)
    return -(-len(seen) // ncols)
