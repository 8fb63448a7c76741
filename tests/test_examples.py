"""Integration: ``pytest --gradcheck examples/`` passes every correct example and fails every
buggy one with the finding it is known for.

The run happens once per session of this module, in a subprocess, exactly as a user types it
(plus ``--gradcheck-report`` and JUnit XML to read the outcome, and Hypothesis's built-in,
derandomized ``ci`` profile so that CI sees the same inputs on every run). The tests then read:

* the targets each example module declares, found by parsing its source (any function or
  class decorated with ``gradcheck.activation`` / ``gradcheck.layer``), so that a target the
  plugin failed to collect is noticed, not silently skipped;
* each buggy module's ``EXPECTED = {target: kind or (kind, alternative, ...)}``: every declared
  dtype of the target must fail, each with at least one of the listed kinds among the findings
  at its minimal failing input, and the first kind must be among them in at least one dtype;
* the JSON report for outcomes and findings, and the JUnit XML for the ordinary tests of
  ``examples/test_usage.py``, which run in the same session and must all pass.

The run uses ``-n 2`` when pytest-xdist is installed; ``GRADCHECK_EXAMPLES_ARGS`` replaces
that with other command-line arguments (e.g. ``""`` for one process, or
``--hypothesis-profile=default``).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BUGGY = EXAMPLES / "buggy"
RUN_TIMEOUT_S = 1800


# -- what the example modules declare (read from source, no import) ------------------------------

def _is_declaration(decorator: ast.expr) -> bool:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(node, ast.Attribute) and node.attr in ("activation", "layer")
            and isinstance(node.value, ast.Name) and node.value.id == "gradcheck")


def declared_targets(path: Path) -> list[str]:
    """Names of the top-level functions and classes decorated with a gradcheck declaration."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and any(_is_declaration(d) for d in node.decorator_list)]


def expected_kinds(path: Path) -> dict[str, tuple[str, ...]]:
    """A buggy module's EXPECTED literal, each value normalised to a tuple of kinds."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "EXPECTED"):
            value = ast.literal_eval(node.value)
            return {name: (kinds,) if isinstance(kinds, str) else tuple(kinds)
                    for name, kinds in value.items()}
    raise AssertionError(f"{path.relative_to(ROOT)} has no EXPECTED = {{target: kind}} literal")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


CORRECT_MODULES = sorted(p for p in EXAMPLES.glob("*.py"))
BUGGY_MODULES = sorted(BUGGY.glob("*.py"))
CORRECT_TARGETS = [(_relative(p), name) for p in CORRECT_MODULES for name in declared_targets(p)]
BUGGY_TARGETS = [(_relative(p), name) for p in BUGGY_MODULES for name in declared_targets(p)]


# -- the run ---------------------------------------------------------------------------------------

class Run:
    """The outcome of one ``pytest --gradcheck examples/`` subprocess."""

    def __init__(self, returncode: int, output: str, report: dict, junit: ET.Element):
        self.returncode = returncode
        self.output = output
        self.report = report
        self.junit = junit

    def results_for(self, path: str, name: str) -> list[dict]:
        """The JSON report's results of one target, one per dtype."""
        return [r for r in self.report["results"]
                if r["nodeid"].rpartition("[")[0] == f"{path}::{name}"]


def _default_args() -> str:
    """Two worker processes when pytest-xdist is there: the examples run is the suite's longest
    job, and under ``-n 2`` the other worker finishes the rest of the suite long before it."""
    try:
        import xdist  # noqa: F401
    except ImportError:
        return ""
    return "-n 2"


def _run_once(out: Path) -> None:
    """Run ``pytest --gradcheck examples/`` and leave report.json, junit.xml, run.json in out."""
    command = [sys.executable, "-m", "pytest", "--gradcheck", "examples/",
               "--gradcheck-report", str(out / "report.json"), f"--junitxml={out / 'junit.xml'}",
               "--hypothesis-profile=ci", "-p", "no:cacheprovider", "-q",
               *shlex.split(os.environ.get("GRADCHECK_EXAMPLES_ARGS", _default_args()))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTEST_XDIST_WORKER", None)
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
        outcome = {"returncode": done.returncode, "output": done.stdout + done.stderr}
    except subprocess.TimeoutExpired as exc:
        partial = "".join(v.decode(errors="replace") if isinstance(v, bytes) else v or ""
                          for v in (exc.stdout, exc.stderr))
        outcome = {"returncode": None,
                   "output": f"timed out after {RUN_TIMEOUT_S} s:\n{partial}"}
    outcome["command"] = shlex.join(command)
    (out / "run.json").write_text(json.dumps(outcome))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """The one run of this session. Under pytest-xdist the first worker to get here runs it and
    the others wait for its files (a directory created atomically is the lock), so the
    examples are fuzzed once however the tests of this module are distributed."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "gradcheck-examples-run"
    try:
        out.mkdir()
    except FileExistsError:
        deadline = time.monotonic() + RUN_TIMEOUT_S + 60
        while not (out / "run.json").exists():
            if time.monotonic() > deadline:
                pytest.fail(f"another worker's run of the examples never finished ({out})")
            time.sleep(2)
    else:
        try:
            _run_once(out)
        finally:
            if not (out / "run.json").exists():  # never leave the other workers waiting
                (out / "run.json").write_text(json.dumps(
                    {"returncode": None, "output": "the run raised", "command": "?"}))
    outcome = json.loads((out / "run.json").read_text())
    report_path, junit_path = out / "report.json", out / "junit.xml"
    if not report_path.exists() or not junit_path.exists():
        pytest.fail(f"`{outcome['command']}` wrote no report (exit {outcome['returncode']}):"
                    f"\n{outcome['output'][-6000:]}")
    return Run(outcome["returncode"], outcome["output"], json.loads(report_path.read_text()),
               ET.parse(junit_path).getroot())


def _describe(result: dict) -> str:
    lines = [f"{result['nodeid']}: {result['outcome']}"]
    for finding in result.get("findings", []):
        lines.append(f"  - {finding['kind']}: {finding['message']}")
    if result.get("reproducer"):
        lines.append(f"  reproduce: {result['reproducer']}")
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    return "\n".join(lines)


# -- the session as a whole ------------------------------------------------------------------------

def test_the_run_fails_only_because_of_failing_checks(run):
    summary = run.report["summary"]
    assert run.returncode == 1, run.output[-4000:]  # 1: tests failed; not 2, 3 or 4
    assert summary["error"] == 0, run.output[-4000:]
    assert summary["failed"] > 0 and summary["passed"] > 0


def test_the_report_has_the_documented_shape(run):
    assert {"gradcheck_version", "tensorflow_version", "seed", "results",
            "summary"} <= set(run.report)
    for result in run.report["results"]:
        assert {"nodeid", "target", "dtype", "outcome", "examples", "duration_s",
                "findings"} <= set(result)


def test_every_declared_target_was_collected_in_each_of_its_dtypes(run):
    missing = [f"{path}::{name}" for path, name in CORRECT_TARGETS + BUGGY_TARGETS
               if not run.results_for(path, name)]
    assert not missing, f"declared but not in the report: {missing}"


def test_every_buggy_target_has_an_expected_kind_and_every_expectation_a_target():
    from gradcheck import KINDS

    for path in BUGGY_MODULES:
        expected = expected_kinds(path)
        declared = declared_targets(path)
        assert sorted(expected) == sorted(declared), _relative(path)
        for name, kinds in expected.items():
            assert kinds and set(kinds) <= set(KINDS), f"{_relative(path)}::{name}: {kinds}"


def test_the_ordinary_tests_of_the_examples_pass(run):
    cases = [case for case in run.junit.iter("testcase")
             if case.get("classname", "").startswith("examples.test_usage")]
    assert cases, "examples/test_usage.py did not run"
    failed = [f"{case.get('name')}: {ET.tostring(case, encoding='unicode')[:2000]}"
              for case in cases if case.find("failure") is not None
              or case.find("error") is not None or case.find("skipped") is not None]
    assert not failed, "\n".join(failed)


# -- each target -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, name", CORRECT_TARGETS,
                         ids=[f"{p}::{n}" for p, n in CORRECT_TARGETS])
def test_correct_example_passes(run, path, name):
    results = run.results_for(path, name)
    assert results, f"{path}::{name} was not collected"
    bad = [r for r in results if r["outcome"] != "passed"]
    assert not bad, ("false positive on a correct example (a gradcheck bug to fix, not a "
                     "declaration to loosen):\n" + "\n".join(_describe(r) for r in bad))


@pytest.mark.parametrize("path, name", BUGGY_TARGETS,
                         ids=[f"{p}::{n}" for p, n in BUGGY_TARGETS])
def test_buggy_example_fails_with_its_expected_kind(run, path, name):
    kinds = expected_kinds(ROOT / path)[name]
    results = run.results_for(path, name)
    assert results, f"{path}::{name} was not collected"
    wrong = []
    for result in results:
        found = {f["kind"] for f in result["findings"]}
        if result["outcome"] != "failed" or not found & set(kinds):
            wrong.append(_describe(result))
    assert not wrong, (f"expected every dtype to fail with one of {kinds}:\n"
                       + "\n".join(wrong))
    primary = [r for r in results if kinds[0] in {f["kind"] for f in r["findings"]}]
    assert primary, f"{kinds[0]} (the bug's own kind) was not reported in any dtype"


_LOADED: dict[str, dict] = {}


def _namespace_of(path: str) -> dict:
    """The example module's globals, as a user's reproducer sees them, plus the usual imports."""
    if path not in _LOADED:
        import importlib.util

        import keras
        import numpy as np
        import tensorflow as tf

        import gradcheck

        name = "reproduced_" + path.replace("/", "_").removesuffix(".py")
        spec = importlib.util.spec_from_file_location(name, ROOT / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED[path] = {"gradcheck": gradcheck, "np": np, "tf": tf, "keras": keras,
                         **vars(module)}
    return _LOADED[path]


@pytest.mark.parametrize("path, name", BUGGY_TARGETS,
                         ids=[f"{p}::{n}" for p, n in BUGGY_TARGETS])
def test_every_printed_reproducer_runs_as_printed(run, path, name):
    import keras

    results = [r for r in run.results_for(path, name) if r.get("reproducer")]
    assert results, f"{path}::{name} printed no reproducer"
    for result in results:
        namespace = dict(_namespace_of(path))
        policy = keras.config.dtype_policy()  # a factory's reproducer sets Keras' policy
        statement = result["reproducer"]
        *setup, call = statement.split("; ")
        try:
            exec("\n".join([*setup, f"report = {call}"]), namespace)
        finally:
            keras.config.set_dtype_policy(policy)
        report = namespace["report"]
        assert not report.ok, f"{result['nodeid']}: `{statement}` found nothing"
        assert report.dtype == result["dtype"], statement


# -- the configuration examples ----------------------------------------------------------------

SNIPPET = EXAMPLES / "pyproject_snippet.toml"
WORKFLOW = EXAMPLES / "github_workflow.yml"


def test_the_pyproject_snippet_configures_a_project(pytester):
    pytester.makepyprojecttoml(SNIPPET.read_text())
    pytester.mkdir("src")
    pytester.mkdir("tests")
    pytester.path.joinpath("src", "acts.py").write_text(
        "import tensorflow as tf\n"
        "import gradcheck\n\n"
        "@gradcheck.activation(domain=(-20, 20))\n"
        "def swish(x):\n"
        "    return x * tf.math.sigmoid(x)\n")
    # No path given: testpaths of the snippet; examples from the command line beat its 200.
    result = pytester.runpytest_subprocess("--gradcheck", "--gradcheck-max-examples", "5",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    report = json.loads((pytester.path / "build" / "gradcheck-report.json").read_text())
    assert sorted(r["dtype"] for r in report["results"]) == sorted(
        ["float16", "bfloat16", "float32", "float64"])
    assert {r["examples"] for r in report["results"]} == {5}


def _summary_script() -> str:
    """The Python program of the workflow's "Summarize the report" step."""
    lines = WORKFLOW.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "<<'PY'" in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "PY")
    body = lines[start:end]
    indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
    return "\n".join(line[indent:] for line in body) + "\n"


def test_the_workflow_gates_on_pytest_gradcheck_and_uploads_the_report():
    text = WORKFLOW.read_text()
    assert "pytest --gradcheck" in text
    assert '--gradcheck-report "$GRADCHECK_REPORT"' in text
    assert "actions/upload-artifact" in text and "${{ env.GRADCHECK_REPORT }}" in text
    assert "\t" not in text  # YAML forbids tabs in indentation


def test_the_workflow_summary_step_reads_a_real_report(run, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(run.report))
    done = subprocess.run([sys.executable, "-c", _summary_script()], capture_output=True,
                          text=True, env={**os.environ, "GRADCHECK_REPORT": str(report)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("### gradcheck: ")
    assert "buggy_custom_gradients.py::elu_where_exp[float32]`: nonfinite_gradient" in done.stdout
