"""pytest plugin for gradcheck: ``pytest --gradcheck`` fuzzes every declared target.

With ``--gradcheck``, pytest imports the Python modules under the given paths (as
``--doctest-modules`` does: ``conftest.py``, ``setup.py`` and ``__main__.py`` are skipped) and
collects one item per target declared there with ``@gradcheck.activation`` or
``@gradcheck.layer`` and per dtype, e.g. ``src/acts.py::custom_elu[float16]``. Each item fuzzes
its target with Hypothesis and fails with the minimal input found, every finding kind seen and
a reproducer. Without ``--gradcheck`` the plugin collects nothing and imports neither
TensorFlow nor Hypothesis; it is loaded as pytest starts, so it imports nothing heavy itself.

Settings, each with a command-line option and an ini twin (``[tool.pytest.ini_options]``):

    --gradcheck-examples N      gradcheck_examples   Hypothesis examples per target and dtype
    --gradcheck-dtypes a,b      gradcheck_dtypes     dtypes to check (a subset of the four)
    --gradcheck-report PATH     gradcheck_report     write a JSON report there
    --gradcheck-plots DIR       gradcheck_plots      write the figure of every failing item there
    --gradcheck-html PATH       gradcheck_html       write a self-contained HTML report there
    --gradcheck-no-sweep        gradcheck_sweep      skip the sweep phase (ini: false)

Precedence: the decorator (``max_examples=``) > command line > ini > Hypothesis's profile.
For dtypes, an item exists for each dtype that the declaration *and* the session allow. A
relative report path is taken from the current directory on the command line, and from the ini
file's directory in the ini file.
In tests, ``@pytest.mark.gradcheck(max_examples=..., dtypes=...)`` plays the decorator's part
for the ``gradcheck_settings`` and ``gradcheck_check`` fixtures. Seeds and profiles are
Hypothesis's own options (``--hypothesis-seed``, ``--hypothesis-profile``); the seed, when
given, is recorded in the report. Under pytest-xdist, results travel from workers as plain
data in ``report.user_properties`` and the controller writes the report once.

Figures (``--gradcheck-plots``, ``--gradcheck-html``; they need matplotlib, ``pip install
gradcheck[plot]``): the process that runs a failing item draws its figure
(:func:`gradcheck.plot.derivatives`, the item's dtype, the minimal failing input marked) and
ships it as base64 PNG in a user property of its own, which the controller takes off the report
before other plugins (JUnit XML) see it; the controller writes one PNG per failing item and the
HTML page (every target x dtype, outcome, findings, figures inlined) once, at the end.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

import pytest

__all__ = ["Settings", "GradcheckModule", "GradcheckItem", "gradcheck_settings",
           "gradcheck_check"]

GRADCHECK_HELP = ("collect and fuzz every target declared with @gradcheck.activation or "
                  "@gradcheck.layer in the Python modules under the given paths")
EXAMPLES_HELP = ("Hypothesis examples per target and dtype (default: the Hypothesis profile's "
                 "max_examples); a declaration's max_examples= takes precedence, and the "
                 "command line over the ini file")
DTYPES_HELP = ("comma-separated dtypes to check, from float16, bfloat16, float32, float64 "
               "(default: all); each target is checked in those it also declares")
REPORT_HELP = "write a JSON report of every gradcheck item to this path"
PLOTS_HELP = ("write the figure of every failing gradcheck item to this folder, one PNG per "
              "item (needs matplotlib: pip install gradcheck[plot])")
HTML_HELP = ("write one self-contained HTML page summarising every gradcheck item (target x "
             "dtype, outcome, findings, the figures of failing items inlined) to this path")
SWEEP_HELP = ("skip the first phase of elementwise items: gradcheck.sweep at every "
              "float16/bfloat16 value (dense in float32/float64) before Hypothesis")
MARKER = ("gradcheck(*, max_examples=None, dtypes=None): settings for the gradcheck_check and "
          "gradcheck_settings fixtures in this test; gradcheck items carry this marker too")

_USER_PROPERTY = "gradcheck"          # (target, dtype) of an item, set when it is created
_RESULT_PROPERTY = "gradcheck_result"  # what running it found, set by runtest
_FIGURE_PROPERTY = "gradcheck_figure"  # {"png": base64} or {"error": text}, failing items only
#: Points along x in an item's figure: fewer than gradcheck.plot's default, for speed.
FIGURE_POINTS = 201
_OUTCOMES = ("passed", "failed", "error", "skipped")


# -- options and settings ----------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck (precedence: decorator > command line > ini)")
    group.addoption("--gradcheck", action="store_true", default=False, help=GRADCHECK_HELP)
    group.addoption("--gradcheck-examples", metavar="N", default=None, help=EXAMPLES_HELP)
    group.addoption("--gradcheck-dtypes", metavar="DTYPES", default=None, help=DTYPES_HELP)
    group.addoption("--gradcheck-report", metavar="PATH", default=None, help=REPORT_HELP)
    group.addoption("--gradcheck-plots", metavar="DIR", default=None, help=PLOTS_HELP)
    group.addoption("--gradcheck-html", metavar="PATH", default=None, help=HTML_HELP)
    group.addoption("--gradcheck-no-sweep", action="store_true", default=False, help=SWEEP_HELP)
    parser.addini("gradcheck_examples", EXAMPLES_HELP, default=None)
    parser.addini("gradcheck_dtypes", DTYPES_HELP, default=None)
    parser.addini("gradcheck_report", REPORT_HELP, default=None)
    parser.addini("gradcheck_plots", PLOTS_HELP, default=None)
    parser.addini("gradcheck_html", HTML_HELP, default=None)
    parser.addini("gradcheck_sweep", "false: " + SWEEP_HELP, type="bool", default=True)


@dataclass(frozen=True)
class Settings:
    """The resolved gradcheck settings of a session (or of one test, with its marker).

    Attributes:
        examples: Hypothesis examples per target and dtype; None leaves it to the
            Hypothesis profile.
        dtypes: the dtypes to check.
        report: where the JSON report goes, or None.
        seed: the ``--hypothesis-seed`` value, or None.
        plots: the folder for the figures of failing items, or None.
        html: where the HTML report goes, or None.
        sweep: whether elementwise items start with the sweep phase.
    """

    examples: int | None
    dtypes: tuple[str, ...]
    report: Path | None
    seed: int | str | None
    plots: Path | None = None
    html: Path | None = None
    sweep: bool = True

    @property
    def figures(self) -> bool:
        """Whether failing items draw their figure (for the plots folder or the HTML page)."""
        return self.plots is not None or (self.html is not None and _has_matplotlib())

    def examples_for(self, declaration: Any) -> int | None:
        """Examples for one target: its declaration's ``max_examples`` wins."""
        return declaration.max_examples or self.examples


_settings_key = pytest.StashKey[Settings]()


def _session_settings(config: pytest.Config) -> Settings:
    """Resolve (once per session) and validate the settings; bad values are a UsageError."""
    if _settings_key not in config.stash:
        config.stash[_settings_key] = _resolve(config)
    return config.stash[_settings_key]


def _resolve(config: pytest.Config) -> Settings:
    from gradcheck._declare import DTYPES

    examples, source = _lookup(config, "examples")
    examples = None if examples is None else _positive_int(examples, source)
    dtypes, source = _lookup(config, "dtypes")
    dtypes = DTYPES if dtypes is None else _dtype_list(dtypes, source, DTYPES)
    report, plots, html = (_path_setting(config, name) for name in ("report", "plots", "html"))
    if plots is not None and not _has_matplotlib():
        raise pytest.UsageError("gradcheck: --gradcheck-plots needs matplotlib to draw the "
                                "figures: pip install 'gradcheck[plot]' (or pip install "
                                "matplotlib)")
    seed = config.getoption("--hypothesis-seed", default=None)
    if isinstance(seed, str) and seed.lstrip("-").isdigit():
        seed = int(seed)
    sweep = not config.getoption("gradcheck_no_sweep") and config.getini("gradcheck_sweep")
    return Settings(examples=examples, dtypes=tuple(dtypes), report=report, seed=seed,
                    plots=plots, html=html, sweep=bool(sweep))


def _path_setting(config: pytest.Config, name: str) -> Path | None:
    """A path setting: relative to the current directory on the command line, to the ini
    file's directory in the ini file."""
    value, source = _lookup(config, name)
    if value is None:
        return None
    base = (config.invocation_params.dir if source.startswith("command")
            else config.inipath.parent if config.inipath else config.rootpath)
    return base / str(value)


def _has_matplotlib() -> bool:
    """Whether matplotlib is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _lookup(config: pytest.Config, name: str) -> tuple[Any, str]:
    """The value of a setting and where it came from: command line first, then ini."""
    value = config.getoption(f"gradcheck_{name}")
    if value is not None:
        return value, f"command line option --gradcheck-{name}"
    value = config.getini(f"gradcheck_{name}")
    if value in (None, "", []):
        return None, ""
    where = config.inipath.name if config.inipath else "the ini file"
    return value, f"ini option gradcheck_{name} in {where}"


def _positive_int(value: Any, source: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"gradcheck: invalid value {value!r} for {source}: expected a "
                                "positive integer number of examples, e.g. 100")
    return int(text)


def _dtype_list(value: Any, source: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    names = tuple(dict.fromkeys(str(item).strip() for item in items))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        found = f"unknown dtype {unknown[0]!r}" if unknown else "no dtype"
        raise pytest.UsageError(f"gradcheck: invalid value {value!r} for {source}: {found}; "
                                f"expected comma-separated names from {', '.join(valid)}")
    return names


def _marked(settings: Settings, marker: Any, where: str) -> Settings:
    """``settings`` with a ``@pytest.mark.gradcheck(...)``'s values put first."""
    from gradcheck._declare import DTYPES

    unknown = set(marker.kwargs) - {"max_examples", "dtypes"}
    if marker.args or unknown:
        raise pytest.UsageError(f"gradcheck: {where}: @pytest.mark.gradcheck takes the keyword "
                                "arguments max_examples= and dtypes= only, got "
                                f"args={marker.args!r} kwargs={marker.kwargs!r}")
    source = f"@pytest.mark.gradcheck on {where}"
    if marker.kwargs.get("max_examples") is not None:
        settings = replace(settings, examples=_positive_int(marker.kwargs["max_examples"],
                                                            f"max_examples of {source}"))
    if marker.kwargs.get("dtypes") is not None:
        settings = replace(settings, dtypes=_dtype_list(marker.kwargs["dtypes"],
                                                        f"dtypes of {source}", DTYPES))
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if config.getoption("gradcheck"):
        _session_settings(config)  # fail early, before collection, on a bad value
        results = _Results(config)
        config.pluginmanager.register(results, "gradcheck-results")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistOrder(results), "gradcheck-xdist")


# -- collection --------------------------------------------------------------------------------

def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".py" or not parent.config.getoption("gradcheck"):
        return None
    if file_path.name in ("conftest.py", "setup.py", "__main__.py"):
        return None
    return GradcheckModule.from_parent(parent, path=file_path)


class GradcheckModule(pytest.Module):
    """A Python module imported by pytest's importer; one item per declared target and dtype."""

    def collect(self) -> list[pytest.Item]:
        from gradcheck._declare import registered_in

        try:
            module = self.obj
        except self.CollectError:
            if self._is_test_module():
                return []  # pytest's own collector of this file reports the same error
            raise
        except Exception as exc:
            if self._is_test_module():
                return []
            raise self.CollectError(
                f"gradcheck: importing module {self.path.name} ({self.path}) raised "
                f"{type(exc).__name__}: {exc}\n{_traceback_from(exc, self.path)}") from exc
        dtypes = _session_settings(self.config).dtypes
        return [GradcheckItem.from_parent(self, name=f"{entry.name}[{dtype}]",
                                          registered=entry, dtype=dtype)
                for entry in registered_in(module.__name__)
                if _declared_by(entry, module)
                for dtype in entry.declaration.dtypes if dtype in dtypes]

    def _is_test_module(self) -> bool:
        """Whether pytest's Python collector also collects (and imports) this file."""
        if self.session.isinitpath(self.path):
            return True
        for pattern in self.config.getini("python_files"):
            if fnmatch(self.path.name, pattern) if "/" not in pattern else \
                    fnmatch(self.path.as_posix(), f"*/{pattern}"):
                return True
        return False


def _declared_by(entry: Any, module: Any) -> bool:
    """Whether this very module object declared ``entry`` (not an earlier one of its name)."""
    namespace = getattr(entry, "_namespace", None)
    return namespace is None or namespace is vars(module)


def _traceback_from(exc: BaseException, path: Path) -> str:
    """The traceback of an import error, from the imported module's frame on."""
    excinfo = pytest.ExceptionInfo.from_exception(exc)
    excinfo.traceback = excinfo.traceback.cut(path=path)
    return str(excinfo.getrepr(style="short"))


class GradcheckItem(pytest.Item):
    """Fuzz one registered target in one dtype."""

    def __init__(self, *, registered: Any, dtype: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered
        self.dtype = dtype
        self.add_marker("gradcheck")
        self.user_properties.append(
            (_USER_PROPERTY, {"target": registered.qualified, "dtype": dtype}))

    def runtest(self) -> None:
        from gradcheck import GradcheckError
        from gradcheck._fuzz import fuzz_registered

        settings = _session_settings(self.config)
        examples = settings.examples_for(self.registered.declaration)
        started = time.perf_counter()
        try:
            report = fuzz_registered(self.registered, self.dtype, max_examples=examples,
                                     database_key=self.nodeid.encode(), sweep=settings.sweep)
        except Exception as exc:
            self._record("error", time.perf_counter() - started,
                         error=f"{type(exc).__name__}: {exc}")
            raise
        self._record("passed" if report.ok else "failed",
                     report.meta.get("duration_s", time.perf_counter() - started), report)
        if not report.ok:
            if _session_settings(self.config).figures:
                self.user_properties.append(
                    (_FIGURE_PROPERTY, _figure(self.registered, self.dtype, report)))
            raise GradcheckError(report)

    def _record(self, outcome: str, duration: float, report: Any = None,
                error: str | None = None) -> None:
        meta = report.meta if report is not None else {}
        result = {
            "outcome": outcome,
            "examples": meta.get("examples", 0),
            "swept": meta.get("swept", 0),  # values checked by the sweep phase
            "duration_s": round(float(duration), 3),
            "findings": [{"kind": f["kind"], "message": f["message"], "inputs": f["inputs"]}
                         for f in (report.to_dict()["findings"] if report is not None else [])],
            "kinds_seen": list(meta.get("kinds_seen", report.kinds if report else [])),
            "reproducer": report.reproducer if report is not None else None,
            "hypothesis_blob": meta.get("hypothesis_blob"),
        }
        if error is not None:
            result["error"] = error
        self.user_properties.append((_RESULT_PROPERTY, result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        from gradcheck import GradcheckError

        if isinstance(excinfo.value, GradcheckError):
            return _failure_text(excinfo.value.report)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        lineno = self.registered.lineno
        return self.path, (lineno - 1 if lineno else None), \
            f"gradcheck {self.registered.qualified}[{self.dtype}]"


def _figure(registered: Any, dtype: str, report: Any) -> dict[str, str]:
    """The item's figure as base64 PNG (JSON-safe), or why it could not be drawn."""
    import base64
    import io

    try:
        from gradcheck.plot import derivatives

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


def _failure_text(report: Any) -> str:
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


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def gradcheck_settings(request: pytest.FixtureRequest) -> Settings:
    """The session's gradcheck :class:`Settings`, with this test's gradcheck marker applied."""
    settings = _session_settings(request.config)
    marker = request.node.get_closest_marker("gradcheck")
    if marker is not None:
        settings = _marked(settings, marker, request.node.nodeid)
    return settings


@pytest.fixture
def gradcheck_check(gradcheck_settings: Settings) -> Callable[..., None]:
    """A function that checks a target with this test's settings; it raises GradcheckError.

    ``gradcheck_check(fn, **declaration_options)`` fuzzes ``fn`` in every dtype that both the
    options (``dtypes=``, default all) and the settings allow; ``gradcheck_check(fn, x, ...)``
    checks it at the given inputs with :func:`gradcheck.assert_gradients`.
    """
    return functools.partial(_check, gradcheck_settings)


def _check(settings: Settings, target: Any, *inputs: Any, **options: Any) -> None:
    import gradcheck

    if inputs:
        gradcheck.assert_gradients(target, *inputs, **options)
        return
    from gradcheck._declare import DTYPES
    from gradcheck._fuzz import fuzz

    registered = _declaration_of(target)
    declared = options.pop("dtypes", registered.dtypes if registered else DTYPES)
    declared = (declared,) if isinstance(declared, str) else tuple(declared)
    dtypes = [dtype for dtype in declared if dtype in settings.dtypes]
    if not dtypes:
        raise ValueError(f"gradcheck_check: no dtype left to check: the target allows "
                         f"{declared} and the settings allow {settings.dtypes}")
    examples = (options.pop("max_examples", None)
                or (registered.max_examples if registered else None) or settings.examples)
    for dtype in dtypes:
        report = fuzz(target, dtype=dtype, max_examples=examples, dtypes=tuple(dtypes),
                      **options)
        if not report.ok:
            raise gradcheck.GradcheckError(report)


def _declaration_of(target: Any) -> Any:
    """The declaration ``target`` was registered with by a decorator, if any."""
    from gradcheck._declare import registry

    return next((r.declaration for r in reversed(registry()) if r.target is target), None)


# -- results: JSON report and terminal summary (controller side under xdist) -------------------

class _Results:
    """Gathers what gradcheck items report; registered only when --gradcheck is given."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[str, dict[str, Any]] = {}
        self.order: dict[str, int] = {}
        self.figures: dict[str, dict[str, str]] = {}  # nodeid -> {"png": ...} or {"error": ...}

    def pytest_report_header(self) -> str:
        settings = _session_settings(self.config)
        examples = settings.examples or "Hypothesis profile default"
        report = "".join(f", {name}={value}" for name, value in (
            ("report", settings.report), ("plots", settings.plots), ("html", settings.html))
            if value)
        return f"gradcheck: examples={examples}, dtypes={','.join(settings.dtypes)}{report}"

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._remember_order(item.nodeid for item in session.items)

    def _remember_order(self, nodeids: Any) -> None:
        for nodeid in nodeids:
            self.order.setdefault(nodeid, len(self.order))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._take_figure(report)
        properties = dict(report.user_properties)
        info = properties.get(_USER_PROPERTY)
        if not isinstance(info, dict):
            return  # not a gradcheck item
        entry = self.results.setdefault(report.nodeid, {
            "nodeid": report.nodeid, "target": info["target"], "dtype": info["dtype"],
            "outcome": "passed", "examples": 0, "duration_s": 0.0, "findings": []})
        result = properties.get(_RESULT_PROPERTY)
        if report.when == "call" and isinstance(result, dict):
            entry.update(result)
        elif report.skipped:
            entry["outcome"] = "skipped"
        elif report.failed:
            entry["outcome"] = "error" if report.when != "call" else "failed"

    def _take_figure(self, report: pytest.TestReport) -> None:
        """Keep an item's figure and take it off the report: a base64 PNG is no property for
        JUnit XML or other plugins to copy. An xdist worker leaves it on: it travels with the
        report to the controller."""
        if hasattr(self.config, "workerinput"):
            return
        kept = []
        for name, value in report.user_properties:
            if name == _FIGURE_PROPERTY and isinstance(value, dict):
                self.figures[report.nodeid] = value
            else:
                kept.append((name, value))
        report.user_properties = kept

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        results = self.results.values()
        counts = _counts(results)
        kinds: dict[str, int] = {}
        for result in results:
            if result["outcome"] == "failed":
                for kind in result.get("kinds_seen") or [f["kind"] for f in result["findings"]]:
                    kinds[kind] = kinds.get(kind, 0) + 1
        targets = {result["target"] for result in results}
        dtypes = {result["dtype"] for result in results}
        line = (f"gradcheck: {_plural(len(self.results), 'check')} "
                f"({_plural(len(targets), 'target')} x {_plural(len(dtypes), 'dtype')}): "
                + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n))
        if kinds:
            from gradcheck import KINDS

            ordered = sorted(kinds, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS))
            line += "; failed by kind: " + ", ".join(f"{k} {kinds[k]}" for k in ordered)
        terminalreporter.section("gradcheck", sep="-")
        terminalreporter.write_line(line)
        settings = _session_settings(self.config)
        if hasattr(self.config, "workerinput"):
            return
        if settings.plots is not None:
            written = sum(1 for r in self.results.values() if r.get("figure"))
            terminalreporter.write_line(f"gradcheck: {_plural(written, 'figure')} of failing "
                                        f"items written to {settings.plots}")
        for name, path in (("JSON report", settings.report), ("HTML report", settings.html)):
            if path is not None:
                terminalreporter.write_line(f"gradcheck: {name} written to {path}")
        if settings.html is not None and not _has_matplotlib():
            terminalreporter.write_line("gradcheck: the HTML report has no figures: matplotlib "
                                        "is not installed (pip install 'gradcheck[plot]')")
        for nodeid, figure in self.figures.items():
            if "error" in figure:
                terminalreporter.write_line(f"gradcheck: no figure for {nodeid}: "
                                            f"{figure['error']}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        settings = _session_settings(self.config)
        if hasattr(self.config, "workerinput"):
            return  # xdist workers hand their results to the controller, which writes
        if settings.plots is not None:
            self.write_figures(settings.plots)
        document = self.document(settings)
        if settings.report is not None:
            settings.report.parent.mkdir(parents=True, exist_ok=True)
            settings.report.write_text(json.dumps(document, indent=2) + "\n")
        if settings.html is not None:
            from gradcheck._html import render

            pngs = {nodeid: f["png"] for nodeid, f in self.figures.items() if "png" in f}
            errors = {nodeid: f["error"] for nodeid, f in self.figures.items() if "error" in f}
            settings.html.parent.mkdir(parents=True, exist_ok=True)
            settings.html.write_text(render(document, pngs, errors), encoding="utf-8")

    def write_figures(self, folder: Path) -> None:
        """One PNG per failing item that has a figure, named after its node id."""
        import base64

        folder.mkdir(parents=True, exist_ok=True)
        for nodeid, figure in self.figures.items():
            if "png" not in figure or nodeid not in self.results:
                continue
            path = folder / _file_name(nodeid)
            path.write_bytes(base64.b64decode(figure["png"]))
            self.results[nodeid]["figure"] = str(path)

    def document(self, settings: Settings) -> dict[str, Any]:
        """The JSON report: versions, seed, one result per item in collection order."""
        import gradcheck

        arrival = {nodeid: index for index, nodeid in enumerate(self.results)}
        results = sorted(self.results.values(), key=lambda r: (
            self.order.get(r["nodeid"], len(self.order)), arrival[r["nodeid"]]))
        return {"gradcheck_version": gradcheck.__version__,
                "tensorflow_version": _tensorflow_version(), "seed": settings.seed,
                "results": results, "summary": _counts(results)}


class _XdistOrder:
    """With pytest-xdist, the controller learns the collection order from the workers."""

    def __init__(self, results: _Results) -> None:
        self.results = results

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.results._remember_order(ids)


def _file_name(nodeid: str) -> str:
    """``src/acts.py::elu[float16]`` -> ``src_acts.py__elu-float16.png``."""
    import re

    name = nodeid.replace("::", "__").replace("[", "-").replace("]", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") + ".png"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counts(results: Any) -> dict[str, int]:
    counts = dict.fromkeys(_OUTCOMES, 0)
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
