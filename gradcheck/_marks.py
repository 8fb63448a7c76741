"""pytest marks of a declared target, for its ``pytest --gradcheck`` items.

``@pytest.mark.xfail(reason=...)``, ``skip``, ``skipif`` and custom marks (for ``-m``) stacked
on a declared function or Layer class apply to each of its items, and so does the
declaration's ``xfail=`` (for every dtype, or for the dtypes it names). Imported by the plugin
only, so that declaring never imports pytest.
"""

from __future__ import annotations

from typing import Any

import pytest

from ._intent import xfail_reason

__all__ = ["target_marks"]

#: Marks of a declared target that mean nothing for its gradcheck items.
NOT_FOR_ITEMS = ("parametrize", "usefixtures")


def target_marks(registered: Any, dtype: str) -> list[pytest.MarkDecorator]:
    """The marks for the item of ``registered`` in ``dtype``: the target's own, then
    ``xfail=``'s for that dtype."""
    marks = [getattr(pytest.mark, mark.name).with_args(*mark.args, **mark.kwargs)
             for mark in getattr(registered.target, "pytestmark", [])
             if isinstance(mark, pytest.Mark) and mark.name not in NOT_FOR_ITEMS]
    reason = xfail_reason(registered.declaration.xfail, dtype)
    if reason is not None:
        marks.append(pytest.mark.xfail(reason=reason))
    return marks
