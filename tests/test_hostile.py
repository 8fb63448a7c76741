"""Targets that crash, exit, hang, fail at random or return nonsense (issue 14): the report says
what pytest decided, and every failure is a finding with its input, in a few lines."""

import json
import signal
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf  # imported once: in-process pytester runs reuse it

import gradcheck
import gradcheck._check  # kept across pytester's sys.modules snapshots
import gradcheck._fuzz
from gradcheck._cli import main
from gradcheck._timeout import TimeLimitExceeded, time_limit

FAST = ("--gradcheck", "--gradcheck-max-examples", "5", "--gradcheck-dtypes", "float32",
        "--gradcheck-report", "report.json", "-p", "no:randomly")

HEADER = """
    import os, sys, time
    import tensorflow as tf
    import gradcheck

    @gradcheck.activation(dtypes=("float32",))
    def first(x):
        return tf.sin(x)
"""
LAST = """
    @gradcheck.activation(dtypes=("float32",))
    def last(x):
        return tf.cos(x)
"""


def project(pytester, body):
    """acts.py: a correct target, the hostile one(s), another correct target, in that order."""
    pytester.makepyfile(acts=textwrap.dedent(HEADER) + textwrap.dedent(body)
                        + textwrap.dedent(LAST))
    return pytester


def outcomes(pytester):
    report = json.loads((pytester.path / "report.json").read_text())
    return {r["nodeid"].split("::")[1]: r for r in report["results"]}, report["summary"]


def failure_section(result, name):
    """The lines pytest printed for one failing item, header to next header."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if f"acts:{name}[" in line and "__" in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("___", "---",
                                                                                 "===="))),
               len(lines))
    return lines[start:end]


# -- processes that die or stop ----------------------------------------------------------------

OS_EXIT = """
    @gradcheck.activation(dtypes=("float32",))
    def killer(x):
        os._exit(7)
"""


def test_a_target_that_kills_its_xdist_worker_is_crashed_not_passed(pytester):
    project(pytester, OS_EXIT)
    result = pytester.runpytest_subprocess(*FAST, "-n", "2")
    result.assert_outcomes(passed=2, failed=1)
    results, summary = outcomes(pytester)
    assert results["killer[float32]"]["outcome"] == "crashed"
    assert "crashed while running" in results["killer[float32]"]["reason"]
    assert results["first[float32]"]["outcome"] == results["last[float32]"]["outcome"] == "passed"
    assert summary == {"passed": 2, "failed": 0, "error": 0, "skipped": 0, "crashed": 1}
    result.stdout.fnmatch_lines([("gradcheck: 3 checks (3 targets x 1 dtype): 2 passed, "
                                  "1 crashed"), "gradcheck: crashed: acts.py::killer*"])


def test_without_xdist_a_killed_process_still_leaves_a_true_report(pytester):
    project(pytester, OS_EXIT)
    result = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist",
                                           "--gradcheck-html", "report.html")
    assert result.ret == 7
    results, _ = outcomes(pytester)
    assert [r["outcome"] for r in results.values()] == ["passed", "crashed", "not run"]
    assert "os._exit" in results["killer[float32]"]["reason"]
    page = (pytester.path / "report.html").read_text()
    assert 'class="crashed"' in page and 'class="not-run"' in page


def test_a_target_exiting_with_status_0_does_not_make_the_run_a_success(pytester):
    project(pytester, OS_EXIT.replace("os._exit(7)", "os._exit(0)"))
    result = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist")
    assert result.ret == 1  # was 0: CI read the cut-short run as green
    results, _ = outcomes(pytester)
    assert [r["outcome"] for r in results.values()] == ["passed", "crashed", "not run"]


def test_ctrl_c_marks_the_running_item_interrupted_and_the_rest_not_run(pytester):
    project(pytester, """
        @gradcheck.activation(dtypes=("float32",))
        def interrupted(x):
            raise KeyboardInterrupt
    """)
    run = pytester.inline_run(*FAST, no_reraise_ctrlc=True)  # the raise stands for Ctrl-C
    assert run.ret == pytest.ExitCode.INTERRUPTED
    results, summary = outcomes(pytester)
    assert [r["outcome"] for r in results.values()] == ["passed", "interrupted", "not run"]
    assert "KeyboardInterrupt" in results["interrupted[float32]"]["reason"]
    assert summary["interrupted"] == 1 and summary["not run"] == 1


def test_a_hang_is_cut_by_the_time_limit_and_the_run_goes_on(pytester):
    project(pytester, """
        @gradcheck.activation(dtypes=("float32",), timeout=1)
        def hangs(x):
            time.sleep(60)
            return x
    """)
    started = time.monotonic()
    # the declaration's timeout= beats the command line's, which the other targets get
    result = pytester.runpytest_inprocess(*FAST, "--gradcheck-timeout", "120")
    assert time.monotonic() - started < 50
    result.assert_outcomes(passed=2, failed=1)
    results, summary = outcomes(pytester)
    hung = results["hangs[float32]"]
    assert hung["outcome"] == "timed out" and summary["timed out"] == 1
    assert hung["findings"][0]["kind"] == "timeout"
    assert hung["findings"][0]["inputs"]["x"] == [0.0]
    assert "time limit of 1 s" in hung["findings"][0]["message"]
    assert any(line.startswith("  reproduce: gradcheck.check(hangs, np.array([0.0]")
               for line in failure_section(result, "hangs"))


def test_the_limit_fires_again_where_its_first_exception_was_discarded():
    # Python discards an exception raised in a garbage-collector callback (Hypothesis has
    # one): a target allocating in a loop ran on past its limit for ever.
    started, discarded = time.monotonic(), []
    with pytest.raises(TimeLimitExceeded):
        with time_limit(0.2):
            while time.monotonic() - started < 5.0:
                try:
                    time.sleep(0.01)
                except TimeLimitExceeded:
                    if discarded:
                        raise
                    discarded.append(time.monotonic() - started)
    assert discarded and time.monotonic() - started < 3.0


def test_a_limit_that_fires_inside_hypothesis_is_a_timeout_not_another_finding():
    # Cut in Hypothesis's own bookkeeping (its replay, its runner), the run said "fails
    # intermittently", a shape_mismatch of sin, or raised an AssertionError of Hypothesis.
    for limit in (1e-9, 0.3):
        report = gradcheck.fuzz(lambda x: tf.sin(x), dtype="float32", max_examples=100000,
                                timeout=limit, sweep=False, modes=())
        assert report.kinds == ["timeout"], report


def test_a_limit_that_fires_at_once_is_disarmed_when_its_block_is_left():
    # A limit of 1e-9 s fired before the block's try: the repeating timer was never disarmed
    # and raised a second later in xdist's reporting (an INTERNALERROR of the suite).
    with pytest.raises(TimeLimitExceeded):
        with time_limit(1e-9):
            time.sleep(0.05)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(1.2)  # a repeat would raise here


def test_the_time_limit_options_are_validated_and_shown(pytester):
    project(pytester, "")
    result = pytester.runpytest_inprocess("--gradcheck", "--gradcheck-timeout", "soon")
    result.stderr.fnmatch_lines([("*invalid value 'soon' for command line option "
                                  "--gradcheck-timeout: expected a number of seconds >= 0*")])
    pytester.makeini("[pytest]\ngradcheck_timeout = 7\n")
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only")
    result.stdout.fnmatch_lines(["gradcheck: *timeout=7s*"])


def test_an_outer_timer_such_as_pytest_timeouts_is_kept_and_wins_when_shorter():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        with time_limit(100.0) as limit:
            assert limit < 30.0  # ours fires first, so that the report names the input
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < left <= 30.0  # theirs goes on with what it had left
        with pytest.raises(TimeLimitExceeded), time_limit(0.2):
            time.sleep(5)
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- targets that fail the check itself: findings with the input, in a few lines ---------------

def test_sys_exit_in_a_target_is_a_finding_not_the_end_of_the_run(pytester):
    project(pytester, """
        @gradcheck.activation(dtypes=("float32",))
        def exits(x):
            sys.exit(3)
    """)
    result = pytester.runpytest_inprocess(*FAST)
    result.assert_outcomes(passed=2, failed=1)
    results, _ = outcomes(pytester)
    finding = results["exits[float32]"]["findings"][0]
    assert finding["kind"] == "error" and "sys.exit(3)" in finding["message"]
    assert finding["inputs"]["x"] == [0.0]
    assert len(failure_section(result, "exits")) <= 12


@pytest.mark.parametrize("returned", ["[x, x]", "None", "{'y': x}"])
def test_a_non_tensor_result_is_a_finding_in_a_few_lines(pytester, returned):
    project(pytester, f"""
        @gradcheck.activation(dtypes=("float32",))
        def odd(x):
            return {returned}
    """)
    result = pytester.runpytest_inprocess(*FAST, "-k", "odd")
    result.assert_outcomes(failed=1)
    section = failure_section(result, "odd")
    assert len(section) <= 30, "\n".join(section)
    text = result.stdout.str()
    assert "must return one tensor" in text and "Traceback" not in text
    assert "@seed" not in text and "pluggy/" not in text and "_fuzz.py" not in text
    results, _ = outcomes(pytester)
    assert results["odd[float32]"]["reproducer"].startswith("gradcheck.check(odd, ")


@pytest.mark.parametrize("failing", ["return None", "sys.exit(1)", "return [tf.sin(x)]"])
def test_a_target_failing_only_where_the_sweep_reaches_is_not_passed(pytester, failing):
    # Hypothesis draws from (-10, 10); the sweep calls the target on every float32 value at
    # once, and its failure there was a note, the item passed.
    project(pytester, f"""
        @gradcheck.activation(dtypes=("float32",), modes=())
        def far(x):
            if bool(tf.reduce_max(tf.abs(x)) > 100.0):
                {failing}
            return tf.sin(x)
    """)
    result = pytester.runpytest_inprocess(*FAST, "-k", "far")
    result.assert_outcomes(failed=1)
    results, _ = outcomes(pytester)
    finding = results["far[float32]"]["findings"][0]
    assert finding["kind"] == "error" and "(the sweep)" in finding["message"]
    assert "Traceback" not in result.stdout.str()


def test_an_output_nan_at_every_input_drawn_is_a_finding_not_passed():
    report = gradcheck.fuzz(lambda x: tf.math.log(-tf.abs(x) - 1.0), dtype="float32",
                            max_examples=10, sweep=False)
    assert report.kinds == ["nonfinite_output"]
    assert "no gradient was compared" in report.findings[0].message
    one = gradcheck.check(lambda x: x * float("nan"), tf.constant([0.5, 2.0]))
    assert one.ok and "gradients OK" not in str(one)  # nothing compared: not said to be OK
    assert "no gradient compared" in str(one)


def test_global_settings_a_target_changes_do_not_reach_later_items(pytester):
    # A mixed policy, floatx, eager tf.functions, NumPy raising, a patched tf.function: the
    # later, correct layer computed in float16 (a dtype_mismatch) before.
    project(pytester, """
        import keras, numpy as np

        @gradcheck.activation(dtypes=("float32",))
        def pollutes(x):
            keras.mixed_precision.set_global_policy("mixed_float16")
            keras.backend.set_floatx("float16")
            tf.config.run_functions_eagerly(True)
            np.seterr(over="raise")
            return tf.sin(x)

        @gradcheck.layer(dtypes=("float32",), input_shape=(None, 4))
        class Composite(keras.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.inner = keras.layers.Dense(3)  # built with the global policy

            def call(self, x):
                return tf.tanh(self.inner(x))
    """)
    result = pytester.runpytest_inprocess(*FAST)
    result.assert_outcomes(passed=4)
    import keras
    import numpy as np

    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.backend.floatx() == "float32" and not tf.config.functions_run_eagerly()
    assert np.geterr()["over"] != "raise"


def test_a_base_exception_from_a_target_is_a_finding_in_a_few_lines(pytester):
    project(pytester, """
        class Custom(BaseException):
            pass

        @gradcheck.activation(dtypes=("float32",))
        def raises_base(x):
            raise Custom("not an Exception")

        @gradcheck.activation(dtypes=("float32",))
        def raises_generator_exit(x):
            raise GeneratorExit
    """)
    result = pytester.runpytest_inprocess(*FAST)
    result.assert_outcomes(passed=2, failed=2)
    results, _ = outcomes(pytester)
    for name, kind in (("raises_base", "Custom"), ("raises_generator_exit", "GeneratorExit")):
        finding = results[f"{name}[float32]"]["findings"][0]
        assert finding["kind"] == "error" and f"raised {kind}" in finding["message"]
        assert len(failure_section(result, name)) <= 12
    assert "Traceback" not in result.stdout.str() and "_sweep.py" not in result.stdout.str()


@pytest.mark.parametrize("where", ["call", "backward"])
def test_an_exception_whose_str_raises_is_a_finding_not_a_traceback(pytester, where):
    project(pytester, f"""
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("__str__ itself fails")

        def backward(dy):
            raise Unprintable()

        @gradcheck.activation(dtypes=("float32",))
        def unprintable(x):
            if {where == "call"}:
                raise Unprintable()
            return tf.custom_gradient(lambda t: (2 * t, backward))(x)
    """)
    result = pytester.runpytest_inprocess(*FAST)
    result.assert_outcomes(passed=2, failed=1)
    results, _ = outcomes(pytester)
    finding = results["unprintable[float32]"]["findings"][0]
    assert finding["kind"] == "error"
    assert "raised Unprintable" in finding["message"] and "str() raised" in finding["message"]
    assert "Traceback" not in result.stdout.str()
    assert len(failure_section(result, "unprintable")) <= 12


def test_a_module_that_calls_os_exit_0_at_import_does_not_end_the_run_green(pytester):
    project(pytester, """
        os._exit(0)
    """)
    result = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist")
    assert result.ret == 1  # was 0, nothing reported: CI read a run that checked nothing as green


def test_a_module_that_hangs_at_import_is_a_collection_error_after_the_time_limit(pytester):
    # The time limit covered items only: a module looping at import hung the run.
    project(pytester, """
        while True:
            time.sleep(0.01)
    """)
    result = pytester.runpytest_inprocess(*FAST, "--gradcheck-timeout", "0.5")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*importing module acts.py (*) ran past the time limit of "
                                 "0.5 s (--gradcheck-timeout)*"])


def test_a_module_that_exits_at_import_is_a_collection_error_not_an_internal_error(pytester):
    project(pytester, """
        sys.exit(0)
    """)
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret != 0 and "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*importing module acts.py*raised SystemExit: 0*"])


def test_a_layer_whose_constructor_raises_is_one_line_not_a_traceback(pytester):
    project(pytester, """
        import keras

        @gradcheck.layer(dtypes=("float32",), input_shape=(None, 3))
        class Broken(keras.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                raise RuntimeError("init broke")
    """)
    result = pytester.runpytest_inprocess(*FAST, "-k", "Broken")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot check acts:Broken*: building it raised "
                                 "RuntimeError: init broke*"])
    assert "Traceback" not in result.stdout.str() and "_declare.py" not in result.stdout.str()


def test_a_target_that_makes_numpy_raise_is_one_finding_not_a_traceback(pytester):
    project(pytester, """
        import numpy as np

        @gradcheck.activation(dtypes=("float32",))
        def raising_numpy(x):
            np.seterr(all="raise")
            return tf.sin(x)
    """)
    # Enough examples for a drawn value to underflow in gradcheck's own casts.
    result = pytester.runpytest_inprocess(*FAST, "--gradcheck-max-examples", "60",
                                          "--hypothesis-seed", "0")  # a seed that draws one
    result.assert_outcomes(passed=2, failed=1)
    results, _ = outcomes(pytester)
    finding = results["raising_numpy[float32]"]["findings"][0]
    assert finding["kind"] == "error" and "np.seterr" in finding["message"]
    assert "Traceback" not in result.stdout.str()


def test_a_target_failing_at_random_is_reported_with_its_input(pytester):
    # Hypothesis seeds `random` per example, so every example meets the same draws and the rate
    # decides which of a check's calls fail: at 0.5 an example's sixth call, a finite-difference
    # evaluation, fails (at 0.3 only the fourth did: the stacked call, which gradcheck retries
    # as separate calls when it raises; the next draw below 0.3 comes after the check's last).
    project(pytester, """
        import random

        @gradcheck.activation(dtypes=("float32",))
        def flaky(x):
            if random.random() < 0.5:
                raise RuntimeError("bad luck")
            return tf.sin(x)
    """)
    result = pytester.runpytest_inprocess(*FAST, "-k", "flaky", "--gradcheck-max-examples", "20")
    result.assert_outcomes(failed=1)
    results, _ = outcomes(pytester)
    (finding, *_) = results["flaky[float32]"]["findings"]
    assert "bad luck" in finding["message"] and "x" in finding["inputs"]
    text = result.stdout.str()
    assert "Flaky" not in text and "@seed" not in text and "Traceback" not in text


def test_a_huge_error_message_is_truncated_with_a_note(pytester):
    project(pytester, """
        @gradcheck.activation(dtypes=("float32",))
        def shouts(x):
            raise ValueError("y" * 5_000_000)
    """)
    result = pytester.runpytest_inprocess(*FAST, "-k", "shouts")
    result.assert_outcomes(failed=1)
    assert (pytester.path / "report.json").stat().st_size < 50_000
    assert len(result.stdout.str()) < 50_000
    results, _ = outcomes(pytester)
    assert "[truncated: " in results["shouts[float32]"]["findings"][0]["message"]


# -- finite differences stay inside the declared domain ----------------------------------------

def test_a_target_guarded_on_its_domain_passes_at_the_domain_ends(pytester):
    project(pytester, """
        @gradcheck.activation(dtypes=("float32", "float64"), domain=(0, 5))
        def guarded(x):
            tf.debugging.assert_greater_equal(x, tf.zeros_like(x), message="x < 0")
            tf.debugging.assert_less_equal(x, tf.fill(tf.shape(x), tf.constant(5, x.dtype)),
                                           message="x > 5")
            return x * tf.sqrt(x + 1)
    """)
    result = pytester.runpytest_inprocess(*FAST, "--gradcheck-dtypes", "float32,float64",
                                          "-k", "guarded", "--gradcheck-max-examples", "30")
    result.assert_outcomes(passed=2)


def test_check_at_a_domain_end_steps_one_sided_and_still_catches_a_wrong_gradient():
    @tf.custom_gradient
    def wrong(x):
        tf.debugging.assert_greater_equal(x, tf.zeros_like(x))

        def grad(dy):
            return dy * 3 * x  # should be 2 * x
        return x * x, grad

    x = tf.constant([0.0, 1.0, 5.0], tf.float64)
    report = gradcheck.check(wrong, x, domain=(0.0, 5.0), modes=())
    assert report.kinds == ["gradient_mismatch"]
    assert gradcheck.check(lambda x: wrong(x) * 0 + x * x, x, domain=(0.0, 5.0), modes=()).ok


def test_a_row_at_the_domain_end_leaves_the_other_rows_central_for_their_kinks():
    def l1_rows(x):  # a kink at every zero; autodiff takes the subgradient 0 there
        return tf.reduce_sum(tf.abs(x), axis=-1, keepdims=True)

    x = tf.constant([[-10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], tf.float64)
    assert gradcheck.check(l1_rows, x, elementwise=False, domain=(-10.0, 10.0), modes=()).ok


def test_an_error_at_a_finite_difference_step_is_a_finding_with_the_input():
    def guarded(x):
        tf.debugging.assert_greater_equal(x, tf.zeros_like(x), message="x < 0")
        return x * x

    report = gradcheck.check(guarded, tf.constant([0.0, 1.0], tf.float64), modes=())
    (finding,) = report.findings
    assert finding.kind == "error" and "finite differences" in finding.message
    assert finding.inputs["x"] == [0.0, 1.0]


# -- the command line: one line, exit 1 or 2 ---------------------------------------------------

def test_cli_a_declaration_error_is_one_line_naming_the_users_line(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_declaration.py").write_text(
        "import gradcheck\n\n@gradcheck.activation(domain=(5, 1))\ndef f(x):\n    return x\n")
    assert main(["check", "bad_declaration.py:f"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "_declare.py" not in err
    assert "domain must have low < high" in err
    assert "(at bad_declaration.py, line 3: @gradcheck.activation(domain=(5, 1)))" in err


def test_cli_a_target_that_exits_is_a_finding_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exiting_cli_target.py").write_text(
        "import sys\nimport gradcheck\n\n@gradcheck.activation(dtypes=('float32',))\n"
        "def exits(x):\n    sys.exit(3)\n")
    assert main(["check", "exiting_cli_target.py:exits", "--max-examples", "3"]) == 1
    assert "called sys.exit(3)" in capsys.readouterr().out


# -- the result log on its own (what the xdist controller sees) --------------------------------

def test_the_log_keeps_pytests_verdicts_and_tells_crashes_from_interruptions():
    from gradcheck._results import ResultLog, crash_reason

    ids = ["a.py::f[float32]", "a.py::g[float32]", "a.py::h[float64]", "a.py::k[float64]",
           "tests/test_t.py::test_x[float32]"]
    log = ResultLog()
    log.remember_order(ids)  # under xdist, items are told by their ids
    info = {"target": "a:f", "dtype": "float32"}
    log.started(ids[0])
    log.take(ids[0], "setup", "passed", info)
    log.take(ids[0], "call", "skipped", info, xfail="float16 overflow, known")
    for nodeid, worker_error in ((ids[1], "Not properly terminated"),
                                 (ids[2], "keyboard-interrupt")):
        log.started(nodeid)
        log.take(nodeid, "???", "failed", None, reason=crash_reason(
            f"worker 'gw0' crashed while running {nodeid!r}", worker_error))
    log.started(ids[4])
    log.forget(ids[4])  # an ordinary test: its reports carry no gradcheck property
    outcomes = {r["nodeid"]: r["outcome"] for r in log.final_results()}
    assert outcomes == {ids[0]: "xfailed", ids[1]: "crashed", ids[2]: "interrupted",
                        ids[3]: "not run"}
    assert log.document(None)["summary"] == {"passed": 0, "failed": 0, "error": 0,
                                             "skipped": 0, "xfailed": 1, "crashed": 1,
                                             "interrupted": 1, "not run": 1}
    assert log.final_results()[0]["xfail_reason"] == "float16 overflow, known"


def test_the_html_page_shows_why_an_item_is_xfailed_and_how_many_values_it_swept():
    from gradcheck._html import render

    result = {"nodeid": "a.py::f[float16]", "target": "a:f", "dtype": "float16",
              "outcome": "xfailed", "xfail_reason": "float16 overflow, known", "swept": 63487,
              "examples": 0, "duration_s": 0.5, "findings": []}
    page = render({"results": [result], "summary": {"xfailed": 1}})
    assert "float16 overflow, known" in page and "63487 values swept" in page
    assert 'class="xfailed"' in page


def test_the_html_page_and_the_failure_text_say_how_many_examples_repeated_an_input():
    """An example whose input had passed is not checked again (_fuzz.py): every report that
    counts examples says how many of them were such repeats."""
    from types import SimpleNamespace

    from gradcheck._html import render
    from gradcheck._results import failure_text

    result = {"nodeid": "a.py::f[float32]", "target": "a:f", "dtype": "float32",
              "outcome": "passed", "examples": 100, "repeated": 9, "duration_s": 0.5,
              "findings": []}
    page = render({"results": [result], "summary": {"passed": 1}})
    assert "100 examples (9 repeated an input that had passed: not checked again)" in page
    text = failure_text(SimpleNamespace(meta={"examples": 100, "repeated": 9}))
    assert "examples run: 100 (9 repeated an input that had passed: not checked again)" in text


def _exits_in_forward(x):
    sys.exit(0)


@tf.custom_gradient
def _exits_in_backward(x):
    def grad(dy):
        sys.exit(3)
    return tf.tanh(x), grad


class _NotAnException(BaseException):
    pass


def _raises_base_exception(x):
    raise _NotAnException("odd")


@pytest.mark.parametrize("target, said", [(_exits_in_forward, "called sys.exit(0)"),
                                          (_exits_in_backward, "called sys.exit(3)"),
                                          (_raises_base_exception, "raised _NotAnException")])
def test_check_of_a_target_that_exits_is_an_error_finding_not_the_end_of_the_caller(target,
                                                                                     said):
    report = gradcheck.check(target, np.array([1.0, 2.0], np.float32), modes=())
    assert report.kinds == ["error"] and said in report.findings[0].message
    assert report.findings[0].inputs["x"] == [1.0, 2.0]
    assert report.reproducer.endswith(", modes=())")  # the options it was checked with


def test_a_target_that_ignores_the_limits_signal_ends_the_process_not_the_ci_job():
    # SIGALRM ignored and a sleep of an hour: the limit never fired and the run hung.
    import subprocess

    script = textwrap.dedent("""
        import signal, time
        from gradcheck._timeout import time_limit
        with time_limit(0.5, "deaf"):
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(3600)
        print("never")
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "never" not in done.stdout
    assert "deaf ran 10.5 s, past its time limit of 0.5 s, which did not stop it" in done.stderr
    assert time.monotonic() - started < 120


def test_a_thread_a_target_leaves_running_ends_the_session_with_its_name_not_a_hang(pytester):
    # Python waits for non-daemon threads at exit: pytest printed "passed", wrote its report
    # and never ended, and the CI job hung until its own limit.
    project(pytester, """
        import threading

        def poll():
            while True:
                time.sleep(0.05)

        @gradcheck.activation(dtypes=("float32",))
        def polls(x):
            if not any(t.name == "poller" for t in threading.enumerate()):
                threading.Thread(target=poll, name="poller").start()
            return tf.sin(x)
    """)
    result = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist", timeout=120)
    assert result.ret == 1  # every item passed, but the run would have hung
    results, _ = outcomes(pytester)
    assert [r["outcome"] for r in results.values()] == ["passed", "passed", "passed"]
    assert ("thread 'poller' started by acts.py::polls[float32] still runs after the "
            "session") in result.stderr.str()


def test_drawing_a_failing_items_figure_is_under_its_time_limit_and_guards(pytester):
    # --gradcheck-html calls a failing target again to draw it: outside the time limit (a
    # target that hangs there hung the run) and the guards (sys.exit left a traceback).
    project(pytester, """
        @gradcheck.activation(dtypes=("float32",), timeout=2)
        @tf.custom_gradient
        def hangs_when_drawn(x):
            if x.shape.rank == 1 and 200 <= x.shape[0] <= 210:  # the figure's abscissa only
                time.sleep(3600)
            return tf.sin(x), lambda dy: 2 * dy * tf.cos(x)

        @gradcheck.activation(dtypes=("float32",))
        @tf.custom_gradient
        def exits_when_drawn(x):
            if x.shape.rank == 1 and 200 <= x.shape[0] <= 210:
                import keras
                keras.mixed_precision.set_global_policy("mixed_float16")  # and then exits
                sys.exit(0)
            return tf.sin(x), lambda dy: 2 * dy * tf.cos(x)
    """)
    result = pytester.runpytest_inprocess(*FAST, "--gradcheck-html", "report.html")
    assert result.ret == 1
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # put back after drawing
    results, _ = outcomes(pytester)
    assert [results[n]["outcome"] for n in ("hangs_when_drawn[float32]",
                                            "exits_when_drawn[float32]")] == ["failed"] * 2
    text = result.stdout.str()
    assert "Traceback" not in text and "pluggy/_" not in text  # no frames of pytest or ours
    result.stdout.fnmatch_lines([
        "*no figure for acts.py::hangs_when_drawn[[]float32[]]: not drawn: drawing ran past the "
        "time limit of 2 s*",
        "*no figure for acts.py::exits_when_drawn[[]float32[]]: SystemExit*"])


def test_pytests_own_outcomes_raised_in_a_target_go_on_up_through_check():
    # pytest-timeout's signal method calls pytest.fail: it was turned into a finding.
    def fails_the_test(x):
        pytest.fail("stopped from outside")

    with pytest.raises(pytest.fail.Exception, match="stopped from outside"):
        gradcheck.check(fails_the_test, np.array([1.0], np.float32), modes=())


def test_a_session_the_watchdog_ends_leaves_a_report_that_says_why(pytester):
    project(pytester, """
        import signal

        @gradcheck.activation(dtypes=("float32",), timeout=0.5)
        def deaf(x):
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(3600)
            return tf.sin(x)
    """)
    result = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist")
    assert result.ret == 1
    results, _ = outcomes(pytester)
    assert [r["outcome"] for r in results.values()] == ["passed", "crashed", "not run"]
    reason = results["deaf[float32]"]["reason"]  # the sweep's half of the limit stopped it
    assert reason.startswith("deaf (its sweep, which may take half of the item's 0.5 s) ran ")
    assert "past its time limit of 0.25 s, which did not stop it" in reason
    # and on the terminal, not only in pytest's capture of fd 2, which the process took along
    assert "which did not stop it (SIGALRM ignored" in result.stderr.str()


def test_check_of_an_empty_input_or_one_outside_the_domain_says_so_not_gradients_ok():
    # Nothing was compared, and the report said "gradients OK".
    with pytest.raises(ValueError, match="every floating input of tanh is empty"):
        gradcheck.check(tf.tanh, np.zeros((0,), np.float32))
    # an empty first input beside one with entries is checked (review)
    assert gradcheck.check(lambda prefix, x: tf.sin(x) + tf.reduce_sum(prefix),
                           np.zeros((0, 3), np.float32), np.array([0.5], np.float32)).ok
    # an end the dtype rounds (float32's 0.3 is above 0.3) is inside (review)
    gradcheck.check(lambda x: tf.sin(0.3 - x), np.array([0.0, 0.1, 0.3], np.float32),
                    domain=(0, 0.3))  # no ValueError
    with pytest.raises(ValueError, match=r"1 entries outside domain=\(5, 10\), e.g. 0.5"):
        gradcheck.check(tf.tanh, np.array([0.5, 6.0], np.float32), domain=(5, 10))
    assert gradcheck.check(tf.tanh, np.array([5.0, 10.0], np.float32), domain=(5, 10)).ok


def test_assert_gradients_fails_where_no_gradient_was_compared():
    # An output NaN everywhere (its reference's too) compares nothing: check() says "not
    # checked" with ok True, and assert_gradients passed.
    def nowhere_defined(t):
        return tf.math.log(-tf.abs(t) - 1.0)

    with pytest.raises(gradcheck.GradcheckError, match="not checked"):
        gradcheck.assert_gradients(nowhere_defined, np.array([0.5, 1.0], np.float32))
    gradcheck.assert_gradients(tf.tanh, np.array([0.5, 1.0], np.float32))


@pytest.mark.parametrize("seed", ["a", -1, 1.5, None])
def test_check_rejects_a_bad_seed_by_name(seed):
    with pytest.raises(TypeError, match=r"gradcheck: seed must be a non-negative int, got "
                                        r".* \(checking tanh\); pass e.g. seed=0"):
        gradcheck.check(tf.tanh, np.array([0.5], np.float32), seed=seed)


def test_check_of_a_target_returning_no_tensor_raises_from_check_not_from_deep_inside():
    with pytest.raises(TypeError, match="must return one tensor, got NoneType") as raised:
        gradcheck.check(lambda t: None, np.array([0.5], np.float32))
    frames = [entry for entry in raised.traceback if "/gradcheck/" in str(entry.path)]
    assert len(frames) == 1, frames  # check() itself, not the run's steps
