"""The command line: ``python -m gradcheck check|plot MODULE:NAME``.

``check`` fuzzes one target as ``pytest --gradcheck`` would, dtype by dtype, printing a line
per dtype as it goes and the full report of each failure; ``plot`` draws the figure of
:func:`gradcheck.plot.derivatives`. Exit status: 0 nothing found (or the figure was written),
1 findings, 2 a usage error (a target that cannot be found, imported or checked, a bad option),
with a message that names the target and says what to do.

MODULE is a dotted module importable from the current directory (``examples.acts``) or the
path of a ``.py`` file (``examples/acts.py``); NAME is an attribute of it (``custom_elu``,
``MyLayer``, ``Outer.inner``). A target declared with ``@gradcheck.activation`` or
``@gradcheck.layer`` is fuzzed with its declaration; any other function is fuzzed as an
elementwise activation on (-10, 10), a Keras Layer class as a layer.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence, TextIO

from gradcheck._options import DTYPES as DTYPE_NAMES
from gradcheck._options import interval

__all__ = ["main"]

DESCRIPTION = "Verify the gradients of a TensorFlow/Keras activation, custom gradient or layer."
TARGET_HELP = ("the target, as MODULE:NAME: MODULE is a dotted module importable from the "
               "current directory (pkg.acts) or the path of a .py file (src/acts.py); NAME is "
               "a function, Layer class or layer factory in it, declared with "
               "@gradcheck.activation/@gradcheck.layer or not")
DTYPES_HELP = ("dtypes to check, comma-separated or repeated, from float16, bfloat16, float32, "
               "float64 (default: the declared ones); only those the target also declares are "
               "checked")
EXAMPLES_HELP = ("Hypothesis examples per dtype (default: the declaration's max_examples, else "
                 "Hypothesis's profile, 100)")
SEED_HELP = ("Hypothesis's seed, as pytest's --hypothesis-seed (default: Hypothesis's own "
             "choice); the report records it")
TIMEOUT_HELP = ("seconds each dtype may fuzz before it stops and fails with the input it was "
                "checking (default: the declaration's timeout=, else 300; 0: no limit); the "
                "import of MODULE is limited alike")
OUTPUT_HELP = "where to write the figure, as PNG (parent folders are created)"
POINTS_HELP = "points along the x axis (default: 401)"
PLOT_SEED_HELP = ("seed of the random line through the domain (non-elementwise targets) and of "
                  "the random upstream dy (default: 0)")
DPI_HELP = "resolution of the PNG in dots per inch (default: 100)"
DOMAIN_HELP = ("the range inputs are drawn from, as LOW,HIGH (default: the declared domain, "
               "else -10,10); beats the declaration")
OPTION_HELP = ("any other declaration option as NAME=VALUE, VALUE a Python literal, e.g. "
               "--option 'input_shape=(None, 4)' --option elementwise=False --option "
               "'kinks=(0.0,)' (repeatable); beats the declaration")
EPILOG = ("exit status: 0 nothing found (plot: the figure was written), 1 findings, 2 usage "
          "error. examples:\n"
          "  python -m gradcheck check examples/buggy/buggy_custom_gradients.py:"
          "elu_grad_wrong_branch\n"
          "  python -m gradcheck check mypkg.acts:custom_elu --dtypes float16,float32 "
          "--max-examples 200 --hypothesis-seed 1\n"
          "  python -m gradcheck plot mypkg.acts:custom_elu -o custom_elu.png")


class UsageError(Exception):
    """Something the user must change on the command line or in the target: exit status 2."""


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0, 1 or 2) instead of exiting.

    Args:
        argv: the arguments after ``python -m gradcheck`` (default: ``sys.argv[1:]``).
        stdout, stderr: where reports and progress go (default: the process's streams).
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or an argparse usage error (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(err)
        return 2
    for old, new in getattr(args, "deprecated", ()):
        print(f"gradcheck: {old} is deprecated and will be removed in the next release; use "
              f"{new} instead", file=err)
    try:
        return args.run(args, out, err)
    except UsageError as exc:
        print(f"gradcheck: error: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("gradcheck: interrupted (KeyboardInterrupt): nothing was decided", file=err)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradcheck", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check", help="fuzz one target with Hypothesis and report what is found",
        description="Fuzz one target's gradients with Hypothesis in each dtype, as "
                    "pytest --gradcheck does, and print the report of every failure: the "
                    "minimal input, every finding kind seen, a reproducer. A line per dtype "
                    "shows progress. Exit status 0: nothing found, 1: findings, 2: usage error.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("target", metavar="MODULE:NAME", help=TARGET_HELP)
    check.add_argument("--dtypes", action="append", metavar="DTYPES", help=DTYPES_HELP)
    check.add_argument("--max-examples", type=_positive_int, metavar="N", help=EXAMPLES_HELP)
    check.add_argument("--hypothesis-seed", type=_integer, metavar="S", help=SEED_HELP)
    check.add_argument("--examples", type=_positive_int, dest="max_examples", metavar="N",
                       action=_Deprecated, help="deprecated spelling of --max-examples")
    check.add_argument("--seed", type=_integer, dest="hypothesis_seed", metavar="S",
                       action=_Deprecated, help="deprecated spelling of --hypothesis-seed")
    check.add_argument("--timeout", type=_seconds, metavar="SECONDS", help=TIMEOUT_HELP)
    check.add_argument("--domain", type=_domain, metavar="LOW,HIGH", help=DOMAIN_HELP)
    check.add_argument("--option", action="append", metavar="NAME=VALUE", default=[],
                       help=OPTION_HELP)
    check.set_defaults(run=_run_check)
    plot = commands.add_parser(
        "plot", help="draw f, the analytic and the numerical derivative to a PNG",
        description="Draw one figure with a column per dtype: f over the declared domain, "
                    "its analytic derivative (autodiff) beside the numerical one (central "
                    "differences in float64), mismatches shaded, NaN/Inf and kinks marked, "
                    "and the derivative with respect to each scalar parameter. Needs "
                    "matplotlib (pip install 'gradcheck[plot]'). Exit status 0 once the "
                    "figure is written, whatever it shows (use check for a verdict); "
                    "2: usage error.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    plot.add_argument("target", metavar="MODULE:NAME", help=TARGET_HELP)
    plot.add_argument("-o", "--output", required=True, metavar="PATH", help=OUTPUT_HELP)
    plot.add_argument("--dtypes", action="append", metavar="DTYPES", help=DTYPES_HELP)
    plot.add_argument("--points", type=_points, default=401, metavar="N", help=POINTS_HELP)
    plot.add_argument("--seed", type=_integer, default=0, metavar="S", help=PLOT_SEED_HELP)
    plot.add_argument("--dpi", type=_positive_int, default=100, metavar="DPI", help=DPI_HELP)
    plot.set_defaults(run=_run_plot)
    return parser


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


class _Deprecated(argparse.Action):
    """An old spelling of an option, kept for one release: it sets the new option's value
    and notes itself in ``args.deprecated``, for ``main`` to name the new spelling on stderr."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        new = "--" + self.dest.replace("_", "-")
        namespace.deprecated = [*getattr(namespace, "deprecated", []), (option_string, new)]


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _points(text: str) -> int:
    value = _integer(text)
    if value < 5:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 5 points are needed")
    return value


# -- check -------------------------------------------------------------------------------------

def _run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target, entry = load_target(args.target, _import_limit(args))
    if entry is None:
        print(f"gradcheck: {args.target} is not declared with @gradcheck.activation or "
              "@gradcheck.layer: checking it with the default declaration", file=err)
    from gradcheck._fuzz import fuzz
    from gradcheck._results import failure_text
    from gradcheck._timeout import DEFAULT_TIMEOUT_S

    dtypes = _dtypes_to_check(args, entry)
    options = declaration_options(args)
    declared = entry.declaration.timeout if entry is not None else None
    timeout = next(t for t in (args.timeout, options.pop("timeout", None), declared,
                               DEFAULT_TIMEOUT_S) if t is not None)
    failed = []
    for number, dtype in enumerate(dtypes, start=1):
        print(f"gradcheck: [{number}/{len(dtypes)}] {args.target} [{dtype}]: fuzzing...",
              file=err, flush=True)
        try:
            report = fuzz(target, dtype=dtype, max_examples=args.max_examples,
                          hypothesis_seed=args.hypothesis_seed, timeout=timeout, **options)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot check {args.target} [{dtype}]: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever it is, one line and exit 2
            raise UsageError(f"cannot check {args.target} [{dtype}]: "
                             f"{_exception_text(exc)}") from None
        meta = report.meta
        outcome = "passed" if report.ok else "FAILED: " + ", ".join(report.kinds)
        print(f"gradcheck: [{number}/{len(dtypes)}] {args.target} [{dtype}]: {outcome} "
              f"({meta.get('examples', 0)} examples, {meta.get('swept', 0)} values swept, "
              f"{meta.get('duration_s', 0):.1f} s)",
              file=err, flush=True)
        if not report.ok:
            failed.append(dtype)
            print(failure_text(report) + "\n", file=out, flush=True)
    return _check_summary(args.target, dtypes, failed, out)


def declaration_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--domain`` and every ``--option NAME=VALUE`` as declaration options."""
    import ast

    options: dict[str, Any] = {}
    for text in args.option:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"invalid --option {text!r}: expected NAME=VALUE, e.g. --option "
                             "'input_shape=(None, 4)'")
        if name in ("dtypes", "max_examples", "domain"):
            flag = {"dtypes": "--dtypes", "max_examples": "--max-examples", "domain": "--domain"}
            raise UsageError(f"--option {name}=...: use {flag[name]} instead")
        try:
            options[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise UsageError(f"invalid --option {text!r}: {value.strip()!r} is not a Python "
                             "literal (a number, string, tuple, dict, True/False/None); a "
                             "function such as gradient= needs a declaration in the "
                             "module") from None
    if args.domain is not None:
        options["domain"] = args.domain
    return options


def _domain(text: str) -> tuple[float, float]:
    """``--domain LOW,HIGH``, validated as a declaration's domain (``_options.interval``)."""
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH (two numbers, e.g. "
                                         "-5,5)") from None
    try:
        return interval((low, high), "--domain", optional=False)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc} (LOW must be below HIGH, both "
                                         "finite)") from None


def _dtypes_to_check(args: argparse.Namespace, entry: Any) -> list[str]:
    declared = list(entry.declaration.dtypes) if entry is not None else list(DTYPE_NAMES)
    if args.dtypes is None:
        return declared
    asked = parse_dtypes(args.dtypes)
    chosen = [d for d in asked if d in declared]
    if not chosen:
        raise UsageError(f"{args.target} declares dtypes {', '.join(declared)}; --dtypes asked "
                         f"for {', '.join(asked)}: nothing left to check. Pass one of the "
                         "declared dtypes, or add it to the declaration's dtypes=")
    return chosen


def parse_dtypes(values: Sequence[str]) -> list[str]:
    """``["float16,float32", "float64"]`` -> the names, validated, in order, once each."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in DTYPE_NAMES]
    if unknown or not names:
        found = f"unknown dtype {unknown[0]!r}" if unknown else "no dtype"
        raise UsageError(f"invalid --dtypes {','.join(values)!r}: {found}; expected "
                         f"comma-separated names from {', '.join(DTYPE_NAMES)}")
    return list(dict.fromkeys(names))


def _check_summary(name: str, dtypes: list[str], failed: list[str], out: TextIO) -> int:
    if failed:
        print(f"gradcheck: {name}: {len(failed)} of {len(dtypes)} dtype(s) failed: "
              f"{', '.join(failed)}", file=out)
        return 1
    print(f"gradcheck: {name}: gradients OK in {', '.join(dtypes)}", file=out)
    return 0


# -- plot --------------------------------------------------------------------------------------

def _run_plot(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'gradcheck[plot]' (or pip "
                         "install matplotlib)") from None
    target, entry = load_target(args.target, _import_limit(args))
    from gradcheck.plot import derivatives

    dtypes = _dtypes_to_check(args, entry) if args.dtypes else None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    which = ", ".join(dtypes) if dtypes else "declared dtypes"
    print(f"gradcheck: drawing {args.target} ({which}, {args.points} points)...", file=err,
          flush=True)
    from gradcheck._timeout import TimeLimitExceeded, time_limit

    try:
        with time_limit(_import_limit(args), f"{args.target} (its figure)"):
            figure = derivatives(entry if entry is not None else target, dtypes=dtypes,
                                 points=args.points, seed=args.seed, dpi=args.dpi)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot plot {args.target}: {exc}") from None
    except TimeLimitExceeded as exc:
        raise UsageError(f"cannot plot {args.target}: drawing ran past the time limit of "
                         f"{exc.seconds:g} s") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the target's own: one line, exit 2
        raise UsageError(f"cannot plot {args.target}: {_exception_text(exc)}") from None
    figure.savefig(output, dpi=args.dpi)
    for panel in figure.gradcheck["panels"]:
        print(f"  {panel['dtype']}: {_panel_line(panel)}", file=out)
    print(f"gradcheck: wrote {output}", file=out)
    return 0


def _panel_line(panel: dict[str, Any]) -> str:
    if panel["error"]:
        return "the target raised: " + panel["error"].splitlines()[0]
    facts = [f"f' mismatch at {panel['mismatched']}/{panel['points']} points"
             if panel["mismatched"] else "f' matches"]
    facts += [f"d/d{label} mismatch at {count} points"
              for label, count in panel["parameters"].items() if count]
    nonfinite = max(panel["nonfinite_f"], panel["nonfinite_gradient"])
    if nonfinite:
        facts.append(f"NaN/Inf at {nonfinite} points")
    facts.append("check: " + (", ".join(panel["check"]) or "gradients OK"))
    return "; ".join(facts)


# -- finding the target ------------------------------------------------------------------------

def _import_limit(args: argparse.Namespace) -> float:
    """The time limit of the import (and of a plot): --timeout where given (0: none), else
    the default item's."""
    from gradcheck._timeout import DEFAULT_TIMEOUT_S

    given = getattr(args, "timeout", None)
    return DEFAULT_TIMEOUT_S if given is None else given


def load_target(spec: str, timeout: float | None = None) -> tuple[Any, Any]:
    """``MODULE:NAME`` -> (the object, its Registered entry or None); the import stopped
    after ``timeout`` seconds (None or 0: no limit), as a check is.

    Raises:
        UsageError: malformed spec, module not importable, raising or hanging on import, no
            such name.
    """
    from gradcheck._timeout import TimeLimitExceeded, time_limit

    module_part, sep, name = spec.rpartition(":")
    if not sep or not module_part or not name:
        raise UsageError(f"expected a target as MODULE:NAME, got {spec!r}; e.g. "
                         "examples/acts.py:custom_elu or mypkg.acts:custom_elu")
    try:
        with time_limit(timeout, f"importing {module_part}"):
            module = _import(module_part, spec)
    except TimeLimitExceeded as exc:
        raise UsageError(f"{spec}: importing {module_part} ran past the time limit of "
                         f"{exc.seconds:g} s: does the module start work at import (a "
                         "training loop, a download, input())? Move it under "
                         "`if __name__ == \"__main__\":`, or raise --timeout") from None
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{spec}: module {module.__name__!r} ({module_part}) has no "
                             f"attribute {name!r}{_declared_hint(module)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec}: {name} is a {type(obj).__name__}, not a function, Layer "
                         "class or layer factory")
    return obj, _registered(module, name, obj)


def _import(module_part: str, spec: str) -> Any:
    path = Path(module_part)
    by_path = module_part.endswith(".py") or os.sep in module_part or "/" in module_part
    try:
        if by_path:
            return _import_path(path, spec)
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_part)
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and module_part.startswith(exc.name):
            raise UsageError(
                f"{spec}: cannot import module {module_part!r}: {exc}; MODULE is a dotted "
                "module importable from the current directory or the path of a .py file "
                f"(current directory: {os.getcwd()})") from None
        raise UsageError(f"{spec}: importing {module_part} raised {_exception_text(exc)}") \
            from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the module's own failure
        raise UsageError(f"{spec}: importing {module_part} raised {_exception_text(exc)}") \
            from None


def _import_path(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise UsageError(f"{spec}: no such file {str(path)!r} (from {os.getcwd()}); MODULE is "
                         "a dotted module or the path of a .py file")
    path = path.resolve()
    name = _module_name_for(path)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # its sibling modules import as they would in a script
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _module_name_for(path: Path) -> str:
    """The dotted name a file has relative to the current directory when that is a package
    path (examples/buggy/acts.py -> examples.buggy.acts), else its stem."""
    try:
        relative = path.relative_to(Path.cwd().resolve()).with_suffix("")
    except ValueError:
        return path.stem
    parts = relative.parts
    if all(part.isidentifier() for part in parts):
        return ".".join(parts)
    return path.stem


def _registered(module: Any, name: str, obj: Any) -> Any:
    from gradcheck._declare import registered_in

    entries = registered_in(module.__name__)
    return next((e for e in entries if e.name == name and e.target is obj),
                next((e for e in entries if e.target is obj), None))


def _declared_hint(module: Any) -> str:
    from gradcheck._declare import registered_in

    names = [e.name for e in registered_in(module.__name__)]
    if not names:
        return ""
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"; targets declared there: {shown}"


def _exception_text(exc: BaseException) -> str:
    """``Type: message (at file.py, line N: code)`` on one line, the line being the innermost
    one of the user's code: never gradcheck's own (a declaration's error is the decorator
    line that made it) nor the import machinery's."""
    from gradcheck._arrays import _said
    from gradcheck._report import truncated

    package = str(Path(__file__).resolve().parent)
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith((package, "<frozen"))
              and "importlib" not in frame.filename]
    text = " ".join(truncated(f"{type(exc).__name__}: {_said(exc)}", 1000).split())
    if frames:
        frame = frames[-1]
        text += f" (at {Path(frame.filename).name}, line {frame.lineno}: {frame.line})"
    return text
