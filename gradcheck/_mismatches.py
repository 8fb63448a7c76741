"""How the routes' rejected elements and lines read: ``gradient_mismatch`` messages.

The per-element route (``_routes.check_diagonal``) hands its rejected elements over as a
:class:`Mismatch`, reported by :func:`report_mismatch` at the element that misses by the most
against its tolerance; the row and joint routes word their own lines with the clauses here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import _index
from ._conditioning import overflow_clause
from ._declared_gradient import analytic_source
from ._lines import WrongFormula
from ._records import Add, ForwardBackward, Reference
from ._report import distinct_texts

__all__ = ["Mismatch", "formula_clause", "report_mismatch", "shown_allowance"]


@dataclass(frozen=True)
class Mismatch:
    """The elements of param ``k`` that the per-element route rejected, with what it compared
    there (per unit step along each element, the cotangent included)."""

    k: int
    bad: np.ndarray          # bool, of the param's shape
    analytic: np.ndarray
    numerical: np.ndarray
    bound: np.ndarray        # the numerical side's error bound
    allowance: np.ndarray    # the analytic side's rounding
    #: Where a low dtype's formula is wrong in float64 too (``_lines.wrong_formula``): the
    #: float64 twin's value per element (NaN elsewhere); None where there is none.
    formula: np.ndarray | None = None
    #: Where an intermediate overflowed (``_conditioning.overflowed``); None where none did.
    overflowed: np.ndarray | None = None


def report_mismatch(fb: ForwardBackward, ref: Reference, found: Mismatch, *, add: Add) -> None:
    """A per-element route's ``gradient_mismatch`` (:func:`check_diagonal`), if any."""
    p, bad, analytic, numerical, bound, allowance = (
        fb.params[found.k], found.bad, found.analytic, found.numerical, found.bound,
        found.allowance)
    if not bad.any():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.abs(analytic - numerical) / (bound + allowance + 1e-300), -1)
    j = int(np.nanargmax(excess))
    idx = _index(j, numerical.shape)
    dy = fb.v.flat[j]
    ours, theirs = distinct_texts(analytic.flat[j] / dy, numerical.flat[j] / dy, 9)
    add("gradient_mismatch",
        f"gradient mismatch for {p.label} at index {idx}, x = "
        f"{p.value.flat[j]:.9g} ({fb.dtype.name}): analytic ({analytic_source(fb.target.fn)}) "
        f"{analytic.flat[j]:.9g} vs numerical (finite differences, "
        f"{ref.dtype.name}) {numerical.flat[j]:.9g} ± "
        f"{bound.flat[j] + allowance.flat[j]:.3g}, upstream dy = {dy:.4g} "
        f"(derivative {ours} vs {theirs})"
        f"{_element_formula_clause(fb, found.formula, j, dy)}"
        f"{overflow_clause(fb) if _flagged(found.overflowed, j) else ''}; "
        f"{int(bad.sum())} / {bad.size} elements ({100 * bad.mean():.1f}%) mismatched",
        param=p.label, index=list(idx), x=p.value.flat[j], dy=dy,
        analytic=analytic.flat[j], numerical=numerical.flat[j],
        bound=bound.flat[j] + allowance.flat[j],
        mismatched=int(bad.sum()), total=int(bad.size))


def shown_allowance(allowance, wrong: WrongFormula | None):
    """The analytic side's allowance each line was last held to."""
    return allowance if wrong is None else np.where(wrong.wrong, wrong.allowance, allowance)


def _flagged(mask: np.ndarray | None, j: int) -> bool:
    return mask is not None and bool(mask.flat[j])


def _element_formula_clause(fb: ForwardBackward, formula: np.ndarray | None, j: int,
                            dy: float) -> str:
    """What an element failed by ``wrong_formula`` adds to its message."""
    if formula is None or not np.isfinite(formula.flat[j]):
        return ""
    return (f"; the same code in float64 gives the derivative {formula.flat[j] / dy:.9g}, "
            f"wrong as well: a wrong formula, not {fb.dtype.name}'s rounding")


def formula_clause(fb: ForwardBackward, wrong: WrongFormula | None, i: int | None) -> str:
    """What a line failed by ``wrong_formula`` adds to its message."""
    if wrong is None or not wrong.wrong[() if i is None else i]:
        return ""
    exact = wrong.exact[() if i is None else i]
    return (f"; the same code in float64 gives {float(exact):.9g}, wrong as well, and the "
            f"analytic value misses by more than its distance from that: a wrong formula, "
            f"not {fb.dtype.name}'s rounding")
