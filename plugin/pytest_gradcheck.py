"""pytest plugin for gradcheck: ``pytest --gradcheck`` fuzzes every declared target.

With ``--gradcheck``, pytest imports the Python modules under the given paths (as
``--doctest-modules`` does: ``conftest.py``, ``setup.py`` and ``__main__.py`` are skipped) and
collects one item per target declared there with ``@gradcheck.activation`` or
``@gradcheck.layer`` and per dtype, e.g. ``src/acts.py::custom_elu[float16]``. Each item fuzzes
its target with Hypothesis and fails with the minimal input found, every finding kind seen and
a reproducer. An item's id is ``path::name[dtype]`` with ``dtype`` as its parameter, as pytest's
cache parses ids back, so ``--lf``, ``--ff``, ``--sw`` and ``-k`` work on gradcheck items. pytest
marks stacked on a declared target (``xfail``, ``skip``, ``skipif``, custom marks) and the
declaration's ``xfail=`` apply to its items; xfailed and xpassed items say so in the report.
Without ``--gradcheck`` the plugin collects nothing and imports neither TensorFlow nor
Hypothesis; it is loaded as pytest starts, so it imports nothing heavy itself.

Settings, each with a command-line option and an ini twin (``[tool.pytest.ini_options]``):

    --gradcheck-max-examples N  gradcheck_max_examples  Hypothesis examples per target and dtype
    --gradcheck-dtypes a,b      gradcheck_dtypes     dtypes to check (a subset of the four)
    --gradcheck-report PATH     gradcheck_report     write a JSON report there
    --gradcheck-plots DIR       gradcheck_plots      write the figure of every failing item there
    --gradcheck-html PATH       gradcheck_html       write a self-contained HTML report there
    --gradcheck-timeout SECONDS gradcheck_timeout    time limit per item (default 300, 0: none)
    --gradcheck-no-sweep        gradcheck_sweep      skip the sweep phase (ini: false)

The old spellings ``--gradcheck-examples`` and ``gradcheck_examples`` still work for one release
and warn (``PytestDeprecationWarning``) naming the new one.
Precedence: the decorator (``max_examples=``, ``timeout=``) > command line > ini > default.
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
TIMEOUT_HELP = ("seconds one gradcheck item may fuzz before it stops and fails with the input it "
                "was checking (default: 300; 0: no limit); a declaration's timeout= takes "
                "precedence; with pytest-timeout, the shorter limit applies")
HTML_HELP = ("write one self-contained HTML page summarising every gradcheck item (target x "
             "dtype, outcome, findings, the figures of failing items inlined) to this path")
SWEEP_HELP = ("skip the first phase of elementwise items: gradcheck.sweep at every "
              "float16/bfloat16 value (dense in float32/float64) before Hypothesis")
MARKER = ("gradcheck(*, max_examples=None, dtypes=None): settings for the gradcheck_check and "
          "gradcheck_settings fixtures in this test; gradcheck items carry this marker too")

_USER_PROPERTY = "gradcheck"          # (target, dtype) of an item, set when it is created
_RESULT_PROPERTY = "gradcheck_result"  # what running it found, set by runtest
_FIGURE_PROPERTY = "gradcheck_figure"  # {"png": base64} or {"error": text}, failing items only


# -- options and settings ----------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck (precedence: decorator > command line > ini)")
    group.addoption("--gradcheck", action="store_true", default=False, help=GRADCHECK_HELP)
    group.addoption("--gradcheck-max-examples", metavar="N", default=None, help=EXAMPLES_HELP)
    group.addoption("--gradcheck-examples", metavar="N", default=None,
                    help="deprecated spelling of --gradcheck-max-examples")
    group.addoption("--gradcheck-dtypes", metavar="DTYPES", default=None, help=DTYPES_HELP)
    group.addoption("--gradcheck-report", metavar="PATH", default=None, help=REPORT_HELP)
    group.addoption("--gradcheck-plots", metavar="DIR", default=None, help=PLOTS_HELP)
    group.addoption("--gradcheck-html", metavar="PATH", default=None, help=HTML_HELP)
    group.addoption("--gradcheck-timeout", metavar="SECONDS", default=None, help=TIMEOUT_HELP)
    group.addoption("--gradcheck-no-sweep", action="store_true", default=False, help=SWEEP_HELP)
    parser.addini("gradcheck_max_examples", EXAMPLES_HELP, default=None)
    parser.addini("gradcheck_examples", "deprecated spelling of gradcheck_max_examples",
                  default=None)
    parser.addini("gradcheck_dtypes", DTYPES_HELP, default=None)
    parser.addini("gradcheck_report", REPORT_HELP, default=None)
    parser.addini("gradcheck_plots", PLOTS_HELP, default=None)
    parser.addini("gradcheck_html", HTML_HELP, default=None)
    parser.addini("gradcheck_timeout", TIMEOUT_HELP, default=None)
    parser.addini("gradcheck_sweep", "false: " + SWEEP_HELP, type="bool", default=True)


@dataclass(frozen=True)
class Settings:
    """The resolved gradcheck settings of a session (or of one test, with its marker).

    Attributes:
        max_examples: Hypothesis examples per target and dtype; None leaves it to the
            Hypothesis profile.
        dtypes: the dtypes to check.
        report: where the JSON report goes, or None.
        hypothesis_seed: the ``--hypothesis-seed`` value, or None.
        plots: the folder for the figures of failing items, or None.
        html: where the HTML report goes, or None.
        timeout: seconds one item may fuzz (None or 0: no limit).
        sweep: whether elementwise items start with the sweep phase.
    """

    max_examples: int | None
    dtypes: tuple[str, ...]
    report: Path | None
    hypothesis_seed: int | str | None
    plots: Path | None = None
    html: Path | None = None
    timeout: float | None = None
    sweep: bool = True

    @property
    def examples(self) -> int | None:
        """Deprecated spelling of ``max_examples`` (warns)."""
        _warn_renamed("gradcheck_settings.examples", "gradcheck_settings.max_examples")
        return self.max_examples

    @property
    def seed(self) -> int | str | None:
        """Deprecated spelling of ``hypothesis_seed`` (warns)."""
        _warn_renamed("gradcheck_settings.seed", "gradcheck_settings.hypothesis_seed")
        return self.hypothesis_seed

    @property
    def figures(self) -> bool:
        """Whether failing items draw their figure (for the plots folder or the HTML page)."""
        from gradcheck._settings import has_matplotlib

        return self.plots is not None or (self.html is not None and has_matplotlib())

    def examples_for(self, declaration: Any) -> int | None:
        """Examples for one target: its declaration's ``max_examples`` wins."""
        return declaration.max_examples or self.max_examples


_settings_key = pytest.StashKey[Settings]()


def _warn_renamed(old: str, new: str) -> None:
    import warnings

    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  pytest.PytestDeprecationWarning, stacklevel=3)


def _session_settings(config: pytest.Config) -> Settings:
    """Resolve (once per session) and validate the settings; bad values are a UsageError."""
    if _settings_key not in config.stash:
        from gradcheck._settings import session_settings

        config.stash[_settings_key] = Settings(**session_settings(config))
    return config.stash[_settings_key]


def _marked(settings: Settings, marker: Any, where: str) -> Settings:
    """``settings`` with a ``@pytest.mark.gradcheck(...)``'s values put first."""
    from gradcheck._settings import marker_settings

    return replace(settings, **marker_settings(marker, where))


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
        from gradcheck._global_state import exit_zero_fails
        from gradcheck._timeout import TimeLimitExceeded, time_limit

        limit = _session_settings(self.config).timeout
        try:  # os._exit(0) at import is not a green run, a loop at import not a hung one
            with exit_zero_fails(), time_limit(limit, f"importing module {self.path.name}"):
                module = self.obj
        except self.CollectError:
            if self._is_test_module():
                return []  # pytest's own collector of this file reports the same error
            raise
        except TimeLimitExceeded as exc:
            raise self.CollectError(
                f"gradcheck: importing module {self.path.name} ({self.path}) ran past the time "
                f"limit of {exc.seconds:g} s (--gradcheck-timeout): does it start work at "
                "import (a training loop, a download, input())? Move that under "
                "`if __name__ == \"__main__\":`") from None
        except (Exception, SystemExit) as exc:  # sys.exit() at import: an INTERNALERROR else
            if self._is_test_module():
                return []
            from gradcheck._arrays import _said

            raise self.CollectError(
                f"gradcheck: importing module {self.path.name} ({self.path}) raised "
                f"{type(exc).__name__}: {_said(exc)}\n{_traceback_from(exc, self.path)}") from exc
        dtypes = _session_settings(self.config).dtypes
        return [GradcheckItem.from_parent(
                    self, name=f"{entry.name}[{dtype}]", registered=entry, dtype=dtype,
                    # the id pytest's cache (--lf, --ff, --sw) parses "name[dtype]" back into
                    nodeid=f"{self.nodeid}::{entry.name}[{dtype}]")
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
        from gradcheck._marks import target_marks

        for mark in target_marks(registered, dtype):
            self.add_marker(mark)
        self.user_properties.append(
            (_USER_PROPERTY, {"target": registered.qualified, "dtype": dtype}))

    def runtest(self) -> None:
        from gradcheck import GradcheckError
        from gradcheck._fuzz import fuzz_registered
        from gradcheck._timeout import outer_limit

        settings = _session_settings(self.config)
        examples = settings.examples_for(self.registered.declaration)
        threads = self.config.pluginmanager.get_plugin("gradcheck-results").threads
        started = time.perf_counter()
        try:
            with threads.watching(self.nodeid):
                report = fuzz_registered(self.registered, self.dtype, max_examples=examples,
                                         database_key=self.nodeid.encode(),
                                         timeout=outer_limit(self, settings.timeout),
                                         sweep=settings.sweep)
        except Exception as exc:
            from gradcheck._arrays import _said
            from gradcheck._report import plain_text, truncated

            self._record("error", time.perf_counter() - started,
                         error=truncated(plain_text(f"{type(exc).__name__}: {_said(exc)}")))
            raise
        self._record("passed" if report.ok else "failed",
                     report.meta.get("duration_s", time.perf_counter() - started), report)
        if not report.ok:
            if _session_settings(self.config).figures:
                from gradcheck._results import item_figure

                declared = self.registered.declaration.timeout  # beats the session's
                limit = declared if declared is not None else outer_limit(self, settings.timeout)
                with threads.watching(self.nodeid):
                    figure = item_figure(self.registered, self.dtype, report, limit)
                self.user_properties.append((_FIGURE_PROPERTY, figure))
            raise GradcheckError(report)

    def _record(self, outcome: str, duration: float, report: Any = None,
                error: str | None = None) -> None:
        from gradcheck._results import item_result

        self.user_properties.append(
            (_RESULT_PROPERTY, item_result(outcome, duration, report, error)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        from gradcheck import GradcheckError

        if isinstance(excinfo.value, GradcheckError):
            from gradcheck._results import failure_text

            return failure_text(excinfo.value.report)
        if isinstance(excinfo.value, (TypeError, ValueError)) and \
                str(excinfo.value).startswith("gradcheck"):
            from gradcheck._report import truncated

            return truncated(str(excinfo.value))  # gradcheck cannot check it, and says why
        return super().repr_failure(excinfo, style="short")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        lineno = self.registered.lineno
        return self.path, (lineno - 1 if lineno else None), \
            f"gradcheck {self.registered.qualified}[{self.dtype}]"


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
    from gradcheck._options import DTYPES
    from gradcheck._fuzz import fuzz

    registered = _declaration_of(target)
    declared = options.pop("dtypes", registered.dtypes if registered else DTYPES)
    declared = (declared,) if isinstance(declared, str) else tuple(declared)
    dtypes = [dtype for dtype in declared if dtype in settings.dtypes]
    if not dtypes:
        raise ValueError(f"gradcheck_check: no dtype left to check: the target allows "
                         f"{declared} and the settings allow {settings.dtypes}")
    examples = (options.pop("max_examples", None)
                or (registered.max_examples if registered else None)
                or settings.max_examples)
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
    """Hands what gradcheck items report to a :class:`gradcheck._results.ResultLog` and writes
    it as items start and end (so that a crash leaves a true report), and once more at the end;
    registered only when --gradcheck is given. Under xdist the controller does all of it."""

    def __init__(self, config: pytest.Config) -> None:
        from gradcheck._results import ResultLog

        from gradcheck._threads import LeftThreads
        from gradcheck._timeout import on_process_end

        self.config = config
        self.log = ResultLog()
        self.threads = LeftThreads()
        self.exitstatus = 0
        self.interruption: str | None = None
        self.writes = not hasattr(config, "workerinput")
        on_process_end(self._ended)

    def pytest_report_header(self) -> str:
        settings = _session_settings(self.config)
        examples = settings.max_examples or "Hypothesis profile default"
        report = "".join(f", {name}={value}" for name, value in (
            ("report", settings.report), ("plots", settings.plots), ("html", settings.html))
            if value)
        limit = f"{settings.timeout:g}s" if settings.timeout else "none"
        return (f"gradcheck: max_examples={examples}, dtypes={','.join(settings.dtypes)}, "
                f"timeout={limit}{report}")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.log.remember_order((item.nodeid for item in session.items), {
            item.nodeid: {"target": item.registered.qualified, "dtype": item.dtype}
            for item in session.items if isinstance(item, GradcheckItem)})
        self._write()  # every item "not run" until it starts

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.log.is_item(nodeid):
            self.log.started(nodeid)
            self._write()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._take_figure(report)
        properties = dict(report.user_properties)
        info = properties.get(_USER_PROPERTY)
        crashed = report.when == "???"  # pytest-xdist: the worker running it died
        if not (isinstance(info, dict) or (crashed and self.log.is_item(report.nodeid))):
            self.log.forget(report.nodeid)  # an ordinary test whose id looked like an item's
            return
        reason = None
        if crashed or (report.failed and report.when != "call"):
            reason = _crash_reason(report) if crashed else _first_line(report.longreprtext)
        self.log.take(report.nodeid, report.when, report.outcome,
                      info if isinstance(info, dict) else None,
                      properties.get(_RESULT_PROPERTY), getattr(report, "wasxfail", None), reason)
        if report.when in ("teardown", "???") or report.failed:
            self._write()

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        from gradcheck._report import truncated

        message = str(excinfo.value).strip()
        self.interruption = truncated(
            f"interrupted by {excinfo.typename}{': ' + message if message else ''} (Ctrl-C, "
            "or raised by the target) while this item ran", 1000)

    def _ended(self, message: str) -> None:
        """The time limit's watchdog ends the process: the running item says why, and the
        capture is lifted so that the watchdog's message reaches the terminal (as
        pytest-timeout's thread method does), not a capture file no one reads."""
        self.log.ended(message)
        self._write()
        self._lift_capture()

    def _lift_capture(self) -> None:
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            try:
                capture.suspend_global_capture(in_=True)
            except Exception:  # noqa: BLE001 - the message is in the report either way
                pass

    def _write(self) -> None:
        if not self.writes:
            return
        settings = _session_settings(self.config)
        if settings.report is None and settings.html is None:
            return
        try:
            self.log.write(settings.hypothesis_seed, settings.report, None, settings.html)
        except OSError as exc:  # a full disk must not hide the test outcomes
            self.config.issue_config_time_warning(
                pytest.PytestWarning(f"gradcheck: cannot write the report: {exc}"), 2)

    def _take_figure(self, report: pytest.TestReport) -> None:
        """Keep an item's figure and take it off the report: a base64 PNG is no property for
        JUnit XML or other plugins to copy. An xdist worker leaves it on: it travels with the
        report to the controller."""
        if hasattr(self.config, "workerinput"):
            return
        kept = []
        for name, value in report.user_properties:
            if name == _FIGURE_PROPERTY and isinstance(value, dict):
                self.log.figures[report.nodeid] = value
            else:
                kept.append((name, value))
        report.user_properties = kept

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from gradcheck._results import plural
        from gradcheck._settings import has_matplotlib

        if not self.log.results:
            return
        terminalreporter.section("gradcheck", sep="-")
        terminalreporter.write_line(self.log.summary_line())
        settings = _session_settings(self.config)
        if hasattr(self.config, "workerinput"):
            return
        if settings.plots is not None:
            written = sum(1 for r in self.log.results.values() if r.get("figure"))
            terminalreporter.write_line(f"gradcheck: {plural(written, 'figure')} of failing "
                                        f"items written to {settings.plots}")
        for name, path in (("JSON report", settings.report), ("HTML report", settings.html)):
            if path is not None:
                terminalreporter.write_line(f"gradcheck: {name} written to {path}")
        if settings.html is not None and not has_matplotlib():
            terminalreporter.write_line("gradcheck: the HTML report has no figures: matplotlib "
                                        "is not installed (pip install 'gradcheck[plot]')")
        for nodeid, figure in self.log.figures.items():
            if "error" in figure:
                terminalreporter.write_line(f"gradcheck: no figure for {nodeid}: "
                                            f"{figure['error']}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from gradcheck._timeout import on_process_end

        on_process_end(None)
        self.exitstatus = int(exitstatus)
        settings = _session_settings(self.config)
        if exitstatus == pytest.ExitCode.INTERRUPTED or self.interruption is not None:
            self.log.interrupted(self.interruption)
        if not self.writes:
            return  # xdist workers hand their results to the controller, which writes
        self.log.write(settings.hypothesis_seed, settings.report, settings.plots, settings.html)


    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        """A thread an item left running would hang the process's exit: end it instead."""
        self.threads.end_process(self.exitstatus, before=self._lift_capture)


class _XdistOrder:
    """With pytest-xdist, the controller learns the collection order from the workers."""

    def __init__(self, results: _Results) -> None:
        self.results = results

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.results.log.remember_order(ids)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if error:  # why a worker went down, for the item it was running (see _crash_reason)
            _node_errors[getattr(node.gateway, "id", "?")] = str(error)


_node_errors: dict[str, str] = {}  # xdist worker id -> the error it went down with


def _crash_reason(report: pytest.TestReport) -> str:
    """Why pytest-xdist reports an item as crashed: its message and the worker's error."""
    from gradcheck._results import crash_reason

    worker = getattr(getattr(report, "node", None), "gateway", None)
    lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
    return crash_reason(lines[-1][:1000] if lines else "",
                        _node_errors.get(getattr(worker, "id", None) or "", ""))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:1000]
