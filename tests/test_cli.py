"""``python -m gradcheck``: main(argv) in-process, one subprocess run for the module entry."""

import subprocess
import sys
from fnmatch import fnmatch

import pytest
from cli_support import run, write_module

from gradcheck._cli import main

MODULE = """
    import tensorflow as tf
    import gradcheck


    @gradcheck.activation(dtypes=("float32", "float64"), domain=(-3, 3))
    def softplus(x):
        return tf.nn.softplus(x)


    @gradcheck.activation(dtypes=("float64",), domain=(-3, 3))
    @tf.custom_gradient
    def forgets_dy(x):
        def grad(dy):
            return tf.sigmoid(x)  # should be dy * tf.sigmoid(x)
        return tf.nn.softplus(x), grad


    def undeclared_square(x):
        return x * x

    NOT_CALLABLE = 3
"""

@pytest.fixture
def acts(tmp_path, monkeypatch):
    """A module of targets in the current directory, under a name no other test uses."""
    return write_module(tmp_path, monkeypatch, "cli_acts", MODULE)


# -- check -------------------------------------------------------------------------------------

def test_check_passes_a_correct_target_by_its_file_path_with_a_line_per_dtype(acts):
    status, out, err = run("check", f"{acts}.py:softplus", "--max-examples", "3",
                           "--hypothesis-seed", "1")
    assert status == 0
    assert f"gradcheck: {acts}.py:softplus: gradients OK in float32, float64" in out
    assert f"[1/2] {acts}.py:softplus [float32]: fuzzing..." in err
    assert f"[2/2] {acts}.py:softplus [float64]: passed (3 examples" in err


def test_check_fails_a_buggy_target_by_its_dotted_name_and_prints_the_report(acts):
    status, out, err = run("check", f"{acts}:forgets_dy", "--max-examples", "5",
                           "--hypothesis-seed", "1")
    assert status == 1
    assert "1 finding(s): gradient_mismatch" in out
    assert "reproduce: gradcheck.check(forgets_dy" in out
    assert "examples run:" in out and ", seed 1" in out
    assert f"gradcheck: {acts}:forgets_dy: 1 of 1 dtype(s) failed: float64" in out
    assert "FAILED: gradient_mismatch" in err


def test_check_keeps_only_the_declared_dtypes_asked_for(acts):
    status, _, err = run("check", f"{acts}:softplus", "--dtypes", "float16,float64",
                         "--dtypes", "float64", "--max-examples", "2")
    assert status == 0
    assert "[1/1]" in err and "[float64]" in err and "[float32]" not in err


def test_check_fuzzes_an_undeclared_function_with_the_default_declaration(acts):
    status, out, err = run("check", f"{acts}:undeclared_square", "--dtypes", "float64",
                           "--max-examples", "3")
    assert status == 0
    assert "is not declared with @gradcheck.activation" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "no_such_module_xyz:fn"],
     "cannot import module 'no_such_module_xyz'*a dotted module importable from the current "
     "directory or the path of a .py file"),
    (["check", "missing.py:fn"], "no such file 'missing.py'"),
    (["check", "{acts}:nope"], "has no attribute 'nope'; targets declared there: softplus, "
                               "forgets_dy"),
    (["check", "{acts}:NOT_CALLABLE"], "NOT_CALLABLE is a int, not a function"),
    (["check", "{acts}"], "expected a target as MODULE:NAME, got '{acts}'"),
    (["check", "{acts}:softplus", "--dtypes", "float8"],
     "invalid --dtypes 'float8': unknown dtype 'float8'; expected comma-separated names from "
     "float16, bfloat16, float32, float64"),
    (["check", "{acts}:forgets_dy", "--dtypes", "float32"],
     "{acts}:forgets_dy declares dtypes float64; --dtypes asked for float32: nothing left"),
])
def test_usage_errors_exit_2_naming_the_target_and_what_to_do(acts, argv, message):
    status, out, err = run(*(a.format(acts=acts) for a in argv))
    assert status == 2
    assert out == ""
    pattern = "gradcheck: error: *" + message.format(acts=acts) + "*"
    assert fnmatch(err, pattern), err


def test_a_module_that_raises_on_import_is_a_usage_error_with_its_exception(tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_cli_module.py").write_text("raise RuntimeError('boom')\n")
    status, _, err = run("check", "broken_cli_module.py:fn")
    assert status == 2
    assert "importing broken_cli_module.py raised RuntimeError: boom" in err


@pytest.mark.parametrize("argv", [["check", "x:y", "--max-examples", "0"],
                                  ["plot", "x:y"],  # -o is required
                                  []])
def test_bad_options_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: python -m gradcheck" in capsys.readouterr().err


# -- plot --------------------------------------------------------------------------------------

def test_plot_writes_the_png_and_says_what_it_shows(acts, tmp_path):
    pytest.importorskip("matplotlib")
    status, out, _ = run("plot", f"{acts}:forgets_dy", "-o", "figs/forgets_dy.png",
                         "--points", "21", "--dpi", "40")
    assert status == 0
    assert (tmp_path / "figs" / "forgets_dy.png").stat().st_size > 1000
    assert "float64: f' matches; check: gradient_mismatch" in out
    assert "gradcheck: wrote figs/forgets_dy.png" in out


# -- help --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "options"), [
    (["--help"], ["check", "plot", "exit status: 0 nothing found"]),
    (["check", "--help"], ["MODULE:NAME", "--dtypes DTYPES", "--max-examples N",
                           "--hypothesis-seed S",
                           "Exit status 0: nothing found, 1: findings, 2: usage error"]),
    (["plot", "--help"], ["MODULE:NAME", "-o PATH, --output PATH", "--dtypes DTYPES",
                          "--points N", "--seed S", "--dpi DPI", "gradcheck[plot]"]),
])
def test_help_documents_every_option(argv, options, capsys):
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in options:
        assert option in text


def test_python_dash_m_gradcheck_runs_the_command_line():
    result = subprocess.run([sys.executable, "-m", "gradcheck", "check", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "usage: python -m gradcheck check" in result.stdout


def test_a_thread_the_target_leaves_running_ends_the_command_with_its_name_not_a_hang(tmp_path):
    # Python waits for non-daemon threads at exit: the command printed "passed" and hung.
    (tmp_path / "polling_acts.py").write_text(
        "import threading, time\nimport tensorflow as tf\n\n"
        "def poll():\n    while True:\n        time.sleep(0.05)\n\n"
        "def polls(x):\n"
        "    if not any(t.name == 'poller' for t in threading.enumerate()):\n"
        "        threading.Thread(target=poll, name='poller').start()\n"
        "    return tf.sin(x)\n")
    result = subprocess.run([sys.executable, "-m", "gradcheck", "check", "polling_acts:polls",
                             "--dtypes", "float32", "--max-examples", "3"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert "polls [float32]: passed" in result.stderr
    assert result.returncode == 1
    assert "thread 'poller' started by the target of 'python -m gradcheck check " \
           "polling_acts:polls" in result.stderr


def test_a_module_that_hangs_at_import_is_a_usage_error_after_the_time_limit(tmp_path,
                                                                              monkeypatch):
    # --timeout covered the fuzzing only: a module that loops at import hung the command.
    name = write_module(tmp_path, monkeypatch, "hangs_at_import",
                        "import time\nwhile True:\n    time.sleep(0.01)\n")
    status, _, err = run("check", f"{name}:f", "--timeout", "0.5")
    assert status == 2
    assert f"importing {name} ran past the time limit of 0.5 s" in err


def test_a_module_that_calls_os_exit_0_at_import_does_not_end_the_command_green(tmp_path):
    (tmp_path / "exits_at_import.py").write_text("import os\nos._exit(0)\n")
    result = subprocess.run([sys.executable, "-m", "gradcheck", "check", "exits_at_import:f"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # was 0: CI read a run that checked nothing as green


def test_plot_of_a_target_that_exits_is_one_line_and_status_2(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    name = write_module(tmp_path, monkeypatch, "plot_exits", "import sys\n\n"
                        "def f(x):\n    sys.exit(3)\n")
    status, _, err = run("plot", f"{name}:f", "-o", str(tmp_path / "f.png"))
    assert status == 2
    assert "cannot plot" in err and "SystemExit: 3" in err and "Traceback" not in err
