"""``pytest --gradcheck`` on small generated projects (pytester), through the real stack."""

import json
import textwrap

import hypothesis.core
import pytest
import tensorflow as tf  # imported once here: in-process pytester runs reuse it

import gradcheck
import gradcheck._check  # noqa: F401  (kept across pytester's sys.modules snapshots)
import gradcheck._fuzz  # noqa: F401


# A correct activation (two dtypes) and one whose gradient forgets dy (every dtype).
ACTS = """
    import tensorflow as tf
    import gradcheck


    @gradcheck.activation(dtypes=("float32", "float64"))
    def softplus(x):
        return tf.nn.softplus(x)


    @gradcheck.activation(domain=(-5, 5))
    @tf.custom_gradient
    def forgets_dy(x):
        def grad(dy):
            return tf.sigmoid(x)  # should be dy * tf.sigmoid(x)
        return tf.nn.softplus(x), grad
"""

ACT_IDS = ["acts.py::softplus[float32]", "acts.py::softplus[float64]",
           "acts.py::forgets_dy[float16]", "acts.py::forgets_dy[bfloat16]",
           "acts.py::forgets_dy[float32]", "acts.py::forgets_dy[float64]"]

SMALL = ("--gradcheck", "--gradcheck-max-examples", "5", "--gradcheck-dtypes", "float32,float64")


@pytest.fixture
def acts(pytester):
    pytester.makepyfile(acts=textwrap.dedent(ACTS))
    return pytester


def collected(result):
    """The node ids that ``--collect-only -q`` printed."""
    return [line for line in result.stdout.lines if "::" in line]


# -- collection --------------------------------------------------------------------------------

def test_it_collects_one_item_per_declared_target_and_dtype(acts):
    result = acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert collected(result) == ACT_IDS


def test_without_the_option_it_collects_nothing_and_imports_no_tensorflow(acts):
    acts.makepyfile(test_probe="""
        import sys

        def test_nothing_heavy_was_imported():
            heavy = {"tensorflow", "keras", "hypothesis", "gradcheck"}
            assert [m for m in sys.modules if m.split(".")[0] in heavy] == []
    """)
    result = acts.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "acts.py" not in result.stdout.str()


def test_command_line_dtypes_beat_the_ini_file_and_meet_the_declared_ones(acts):
    acts.makeini("[pytest]\ngradcheck_dtypes = float16, float64\n")
    from_ini = acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert collected(from_ini) == ["acts.py::softplus[float64]", "acts.py::forgets_dy[float16]",
                                   "acts.py::forgets_dy[float64]"]
    from_command_line = acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q",
                                                 "--gradcheck-dtypes", "bfloat16")
    assert collected(from_command_line) == ["acts.py::forgets_dy[bfloat16]"]


def test_targets_in_test_modules_are_collected_once_beside_the_tests(pytester):
    pytester.makepyfile(test_acts="""
        import tensorflow as tf
        import gradcheck

        @gradcheck.activation(dtypes=("float64",))
        def softplus(x):
            return tf.nn.softplus(x)

        def test_plain():
            pass
    """)
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert sorted(collected(result)) == ["test_acts.py::softplus[float64]",
                                         "test_acts.py::test_plain"]


def test_a_decorator_applied_to_another_modules_function_is_collected_where_applied(pytester):
    pytester.makepyfile(
        lib="""
            import tensorflow as tf

            def softplus(x):
                return tf.nn.softplus(x)
        """,
        checks="""
            import gradcheck
            from lib import softplus

            gradcheck.activation(dtypes=("float64",))(softplus)
        """)
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert collected(result) == ["checks.py::softplus[float64]"]


def test_targets_a_factory_declares_at_one_line_each_get_an_item(pytester):
    # All share one line and one __qualname__: the last replaced the others unseen, and a
    # wrong gradient declared first was never checked ("2 passed" for 3 declarations).
    pytester.makepyfile(factory="""
        import tensorflow as tf
        import gradcheck

        def make(scale):
            @gradcheck.activation(dtypes=("float64",))
            @tf.custom_gradient
            def act(x):
                return tf.sin(x), lambda dy: scale * dy * tf.cos(x)
            return act

        wrong, right = make(3.0), make(1.0)
    """)
    result = pytester.runpytest_inprocess(*SMALL, "-q")
    assert collected(pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q")) == [
        "factory.py::make.<locals>.act[float64]", "factory.py::make.<locals>.act-2[float64]"]
    result.assert_outcomes(passed=1, failed=1)
    assert "make.<locals>.act[float64]" in result.stdout.str().split("FAILED")[-1]


def test_a_module_reimported_without_declarations_yields_no_items(acts):
    acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q")  # registers acts' targets
    acts.makepyfile(acts="# the declarations were removed\n")
    result = acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert collected(result) == []


def test_layer_classes_and_factories_are_collected(pytester):
    pytester.makepyfile(layers="""
        import keras
        import gradcheck

        @gradcheck.layer(init={"units": 3}, dtypes=("float32",))
        class Scale(keras.layers.Layer):
            def __init__(self, units, **kwargs):
                super().__init__(**kwargs)
                self.units = units

            def call(self, x):
                return x * 2.0

        @gradcheck.layer(dtypes=("float64",))
        def dense():
            return keras.layers.Dense(2)
    """)
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q")
    assert collected(result) == ["layers.py::Scale[float32]", "layers.py::dense[float64]"]


def test_conftest_setup_and_main_modules_are_not_imported(pytester):
    boom = "raise RuntimeError('imported')"
    pytester.makepyfile(conftest=boom, setup=boom, __main__=boom)
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q", "--noconftest")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(("source", "expected"), [
    ("import not_a_module_xyz", ["*ImportError while importing test module*acts.py*",
                                 "*No module named 'not_a_module_xyz'"]),
    ("raise RuntimeError('no GPU here')", ["*gradcheck: importing module acts.py (*acts.py) "
                                           "raised RuntimeError: no GPU here"]),
])
def test_a_module_that_fails_to_import_is_a_collection_error(pytester, source, expected):
    pytester.makepyfile(acts=source)
    result = pytester.runpytest_inprocess("--gradcheck")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting acts.py*", *expected])


def test_a_test_module_that_fails_to_import_is_reported_once(pytester):
    pytester.makepyfile(test_broken="import not_a_module_xyz")
    result = pytester.runpytest_inprocess("--gradcheck")
    result.assert_outcomes(errors=1)


# -- running -----------------------------------------------------------------------------------

def test_a_buggy_activation_fails_with_its_minimal_input_and_a_reproducer(acts):
    # Hypothesis's shrinking and blob; the sweep phase is tested in tests/test_sweep.py.
    result = acts.runpytest_inprocess(*SMALL, "--gradcheck-no-sweep")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*_ gradcheck acts:forgets_dy?float32? _*",
        "gradcheck: acts:forgets_dy [[]float32[]]: 1 finding(s): gradient_mismatch",
        "- gradient_mismatch: *does not scale with the upstream gradient*",
        '  input: {"x": [[]0.0[]], "dtype": "float32"}',
        "  reproduce: gradcheck.check(forgets_dy, np.array([[]0.0[]], dtype='float32')*",
        "  kinds seen while fuzzing: gradient_mismatch",
        "  Hypothesis reproduce blob: @reproduce_failure(*",
    ])
    result.stdout.fnmatch_lines([
        "gradcheck: 4 checks (2 targets x 2 dtypes): 2 passed, 2 failed; "
        "failed by kind: gradient_mismatch 2",
        "FAILED acts.py::forgets_dy[[]float32[]] - *",
        "FAILED acts.py::forgets_dy[[]float64[]] - *",
    ])


def test_the_json_report_has_the_documented_shape(acts):
    result = acts.runpytest_inprocess(*SMALL, "--gradcheck-report", "out/report.json")
    result.stdout.fnmatch_lines(["gradcheck: JSON report written to *out/report.json"])
    report = json.loads((acts.path / "out" / "report.json").read_text())
    assert report["gradcheck_version"] == gradcheck.__version__
    assert report["tensorflow_version"] == tf.__version__
    assert report["seed"] is None
    assert report["summary"] == {"passed": 2, "failed": 2, "error": 0, "skipped": 0}
    assert [(r["nodeid"], r["target"], r["dtype"], r["outcome"]) for r in report["results"]] == [
        ("acts.py::softplus[float32]", "acts:softplus", "float32", "passed"),
        ("acts.py::softplus[float64]", "acts:softplus", "float64", "passed"),
        ("acts.py::forgets_dy[float32]", "acts:forgets_dy", "float32", "failed"),
        ("acts.py::forgets_dy[float64]", "acts:forgets_dy", "float64", "failed"),
    ]
    passing, failing = report["results"][0], report["results"][2]
    assert (passing["examples"], passing["findings"]) == (5, [])
    assert isinstance(passing["duration_s"], float)
    (finding,) = failing["findings"]
    assert set(finding) == {"kind", "message", "inputs"}
    assert finding["kind"] == "gradient_mismatch"
    # One value, found by the sweep phase (the smallest |x| whose check alone shows it).
    assert set(finding["inputs"]) == {"x", "dtype"} and finding["inputs"]["dtype"] == "float32"
    assert len(finding["inputs"]["x"]) == 1 and abs(finding["inputs"]["x"][0]) < 1e-3
    assert failing["swept"] > 1000 and passing["swept"] > 1000


def test_the_decorators_max_examples_beats_the_command_line(pytester):
    pytester.makepyfile(acts="""
        import tensorflow as tf
        import gradcheck

        @gradcheck.activation(dtypes=("float64",), max_examples=2)
        def softplus(x):
            return tf.nn.softplus(x)
    """)
    pytester.runpytest_inprocess(*SMALL, "--gradcheck-report", "report.json")
    (result,) = json.loads((pytester.path / "report.json").read_text())["results"]
    assert result["examples"] == 2


def test_the_report_records_the_hypothesis_seed(acts, monkeypatch):
    monkeypatch.setattr(hypothesis.core, "global_force_seed", None)  # the run sets it
    acts.runpytest_inprocess(*SMALL, "-k", "softplus", "--hypothesis-seed", "123",
                             "--gradcheck-report", "report.json")
    assert json.loads((acts.path / "report.json").read_text())["seed"] == 123


def test_a_target_gradcheck_cannot_check_fails_with_one_message_and_no_traceback(pytester):
    pytester.makepyfile(acts="""
        import keras
        import gradcheck

        @gradcheck.layer(dtypes=("float64",))
        def not_a_layer():
            return lambda x: x
    """)
    result = pytester.runpytest_inprocess(*SMALL, "--gradcheck-report", "report.json")
    result.assert_outcomes(failed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    # pytest's verdict (FAILED in the call), with what went wrong and no finding
    assert report["summary"] == {"passed": 0, "failed": 1, "error": 0, "skipped": 0}
    assert report["results"][0]["findings"] == []
    assert report["results"][0]["error"].startswith("TypeError: gradcheck.fuzz: cannot check")
    # the message alone, no traceback through gradcheck, Hypothesis or pluggy
    result.stdout.fnmatch_lines(["gradcheck.fuzz: cannot check acts:not_a_layer [[]float64[]]: "
                                 "*the layer factory returned function*"])
    assert "Traceback" not in result.stdout.str() and "_fuzz.py" not in result.stdout.str()


def test_it_runs_under_xdist_and_the_controller_writes_the_report(acts):
    result = acts.runpytest_subprocess(*SMALL, "-n", "2", "--gradcheck-report", "report.json")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["gradcheck: 4 checks (2 targets x 2 dtypes): 2 passed, "
                                 "2 failed; failed by kind: gradient_mismatch 2"])
    report = json.loads((acts.path / "report.json").read_text())
    assert [r["nodeid"] for r in report["results"]] == [
        "acts.py::softplus[float32]", "acts.py::softplus[float64]",
        "acts.py::forgets_dy[float32]", "acts.py::forgets_dy[float64]"]
    assert report["summary"] == {"passed": 2, "failed": 2, "error": 0, "skipped": 0}
    assert report["results"][3]["findings"][0]["kind"] == "gradient_mismatch"


# -- options, marker, fixtures -----------------------------------------------------------------

@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--gradcheck-max-examples", "0"], "",
     "*invalid value '0' for command line option --gradcheck-max-examples: expected a positive "
     "integer*"),
    ([], "gradcheck_dtypes = float32,float8",
     "*invalid value 'float32,float8' for ini option gradcheck_dtypes in tox.ini: unknown "
     "dtype 'float8'; expected comma-separated names from float16, bfloat16, float32, float64"),
])
def test_bad_settings_are_usage_errors_that_say_where_they_came_from(pytester, args, ini,
                                                                     message):
    pytester.makefile(".ini", tox=f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess("--gradcheck", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_the_marker_the_options_and_their_precedence_are_documented(pytester):
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradcheck(*, max_examples=None, dtypes=None): *"])
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*--gradcheck-max-examples=N*", "*max_examples= takes precedence*",
                                 "*gradcheck_report (string):*"])


def test_gradcheck_items_carry_the_gradcheck_marker(acts):
    result = acts.runpytest_inprocess("--gradcheck", "--collect-only", "-q", "-m",
                                      "not gradcheck")
    assert collected(result) == []
    result.stdout.fnmatch_lines(["*6 deselected*"])


def test_gradcheck_settings_resolve_marker_command_line_and_ini(pytester):
    pytester.makeini("[pytest]\ngradcheck_max_examples = 3\ngradcheck_dtypes = float64\n")
    pytester.makepyfile(test_settings="""
        import pytest

        def test_session(gradcheck_settings):
            assert gradcheck_settings.max_examples == 7  # the command line beats the ini file
            assert gradcheck_settings.dtypes == ("float64",)
            assert gradcheck_settings.report is None

        @pytest.mark.gradcheck(max_examples=2, dtypes=("float32",))
        def test_marked(gradcheck_settings):
            assert gradcheck_settings.max_examples == 2
            assert gradcheck_settings.dtypes == ("float32",)
    """)
    result = pytester.runpytest_inprocess("--gradcheck-max-examples", "7")
    result.assert_outcomes(passed=2)


def test_gradcheck_check_raises_gradcheck_error_on_findings(pytester):
    pytester.makepyfile(test_fixture_usage="""
        import numpy as np
        import pytest
        import tensorflow as tf
        from gradcheck import GradcheckError

        def softplus(x):
            return tf.nn.softplus(x)

        @tf.custom_gradient
        def forgets_dy(x):
            return tf.nn.softplus(x), lambda dy: tf.sigmoid(x)

        pytestmark = pytest.mark.gradcheck(max_examples=3, dtypes=("float64",))

        def test_correct(gradcheck_check):
            gradcheck_check(softplus, domain=(-3, 3))

        def test_buggy(gradcheck_check):
            with pytest.raises(GradcheckError, match="forgets_dy .float64.*gradient_mismatch"):
                gradcheck_check(forgets_dy)

        def test_buggy_at_an_input(gradcheck_check):
            with pytest.raises(GradcheckError, match="gradient_mismatch"):
                gradcheck_check(forgets_dy, np.array([1.0, 2.0]))
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=3)
