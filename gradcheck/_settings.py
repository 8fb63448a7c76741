"""The pytest plugin's settings: each looked up on the command line, then in the ini file (a
``@pytest.mark.gradcheck`` marker first for the fixtures), and validated; a bad value is a
``pytest.UsageError`` naming where it was set. ``pytest_gradcheck.Settings`` holds them; the
plugin imports this module only when a session or fixture needs them, so that loading the
plugin imports nothing heavy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ._options import DTYPES
from ._timeout import DEFAULT_TIMEOUT_S

__all__ = ["session_settings", "marker_settings", "has_matplotlib"]


def session_settings(config: pytest.Config) -> dict[str, Any]:
    """The fields of ``pytest_gradcheck.Settings`` for a session: command line, then ini,
    then default; a bad value is a UsageError naming where it was set."""
    examples, source = _lookup(config, "max_examples", deprecated="examples")
    examples = None if examples is None else _positive_int(examples, source)
    dtypes, source = _lookup(config, "dtypes")
    dtypes = DTYPES if dtypes is None else _dtype_list(dtypes, source, DTYPES)
    report, plots, html = (_path_setting(config, name) for name in ("report", "plots", "html"))
    if plots is not None and not has_matplotlib():
        raise pytest.UsageError("gradcheck: --gradcheck-plots needs matplotlib to draw the "
                                "figures: pip install 'gradcheck[plot]' (or pip install "
                                "matplotlib)")
    seed = config.getoption("--hypothesis-seed", default=None)
    if isinstance(seed, str) and seed.lstrip("-").isdigit():
        seed = int(seed)
    timeout, source = _lookup(config, "timeout")
    timeout = DEFAULT_TIMEOUT_S if timeout is None else _seconds(timeout, source)
    sweep = not config.getoption("gradcheck_no_sweep") and config.getini("gradcheck_sweep")
    return dict(max_examples=examples, dtypes=tuple(dtypes), report=report, hypothesis_seed=seed,
                plots=plots, html=html, timeout=timeout, sweep=bool(sweep))


def _path_setting(config: pytest.Config, name: str) -> Path | None:
    """A path setting: relative to the current directory on the command line, to the ini
    file's directory in the ini file."""
    value, source = _lookup(config, name)
    if value is None:
        return None
    base = (config.invocation_params.dir if source.startswith("command")
            else config.inipath.parent if config.inipath else config.rootpath)
    return base / str(value)


def has_matplotlib() -> bool:
    """Whether matplotlib is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _lookup(config: pytest.Config, name: str, deprecated: str | None = None) -> tuple[Any, str]:
    """The value of a setting and where it came from: command line first, then ini; in each,
    the current spelling before a ``deprecated`` one, which still works but warns."""
    where = config.inipath.name if config.inipath else "the ini file"
    for kind, get in (("command line option", config.getoption), ("ini option", config.getini)):
        for spelling in (name, deprecated):
            if spelling is None:
                continue
            value = get(f"gradcheck_{spelling}")
            if value in (None, "", []):
                continue
            old, new = (f"--gradcheck-{spelling}".replace("_", "-"),
                        f"--gradcheck-{name}".replace("_", "-"))
            if kind == "ini option":
                old, new = f"gradcheck_{spelling}", f"gradcheck_{name}"
            if spelling == deprecated:
                _warn_deprecated(config, f"{kind} {old}", new)
            return value, f"{kind} {old}" + (f" in {where}" if kind == "ini option" else "")
    return None, ""


def _warn_deprecated(config: pytest.Config, old: str, new: str) -> None:
    """Warn, as pytest does for its own renamed options, that ``old`` is now ``new``."""
    config.issue_config_time_warning(pytest.PytestDeprecationWarning(
        f"gradcheck: the {old} is deprecated and will be removed in the next release; "
        f"use {new} instead"), stacklevel=2)


def _positive_int(value: Any, source: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"gradcheck: invalid value {value!r} for {source}: expected a "
                                "positive integer number of examples, e.g. 100")
    return int(text)


def _seconds(value: Any, source: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise pytest.UsageError(f"gradcheck: invalid value {value!r} for {source}: expected a "
                                "number of seconds >= 0, e.g. 300 (0: no time limit)")
    return seconds


def _dtype_list(value: Any, source: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    names = tuple(dict.fromkeys(str(item).strip() for item in items))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        found = f"unknown dtype {unknown[0]!r}" if unknown else "no dtype"
        raise pytest.UsageError(f"gradcheck: invalid value {value!r} for {source}: {found}; "
                                f"expected comma-separated names from {', '.join(valid)}")
    return names


def marker_settings(marker: Any, where: str) -> dict[str, Any]:
    """The fields a ``@pytest.mark.gradcheck(...)`` on ``where`` sets, validated."""
    unknown = set(marker.kwargs) - {"max_examples", "dtypes"}
    if marker.args or unknown:
        raise pytest.UsageError(f"gradcheck: {where}: @pytest.mark.gradcheck takes the keyword "
                                "arguments max_examples= and dtypes= only, got "
                                f"args={marker.args!r} kwargs={marker.kwargs!r}")
    source = f"@pytest.mark.gradcheck on {where}"
    fields: dict[str, Any] = {}
    if marker.kwargs.get("max_examples") is not None:
        fields["max_examples"] = _positive_int(marker.kwargs["max_examples"],
                                           f"max_examples of {source}")
    if marker.kwargs.get("dtypes") is not None:
        fields["dtypes"] = _dtype_list(marker.kwargs["dtypes"], f"dtypes of {source}", DTYPES)
    return fields
