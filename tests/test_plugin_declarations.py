"""What users declare and expect of ``pytest --gradcheck`` items: known failures (xfail=,
stacked pytest marks), pytest's cache options (--lf, --ff, --sw) and -k, policies once."""

import json
import textwrap

import pytest
import tensorflow as tf  # noqa: F401  imported once here: in-process pytester runs reuse it
from shared_targets import ComputeDtypeWeight

import gradcheck
import gradcheck._check  # noqa: F401  (kept across pytester's sys.modules snapshots)
import gradcheck._fuzz  # noqa: F401

ACTS = """
    import pytest
    import tensorflow as tf
    import gradcheck


    @gradcheck.activation(dtypes=("float32", "float64"))
    def softplus(x):
        return tf.nn.softplus(x)


    @gradcheck.activation(domain=(-5, 5), dtypes=("float32", "float64"))
    @tf.custom_gradient
    def forgets_dy(x):
        def grad(dy):
            return tf.sigmoid(x)  # should be dy * tf.sigmoid(x)
        return tf.nn.softplus(x), grad


    @gradcheck.activation(dtypes=("float32",))
    def tanh(x):
        return tf.tanh(x)
"""

KNOWN = """
    import pytest
    import tensorflow as tf
    import gradcheck


    @tf.custom_gradient
    def _forgets_dy(x):
        return tf.nn.softplus(x), lambda dy: tf.sigmoid(x)


    @pytest.mark.xfail(reason="issue 3: grad fn ignores dy")
    @gradcheck.activation(dtypes=("float32",))
    def marked_xfail(x):
        return _forgets_dy(x)


    @gradcheck.activation(dtypes=("float32",))
    @pytest.mark.skip(reason="not today")
    def marked_skip(x):
        return _forgets_dy(x)


    @gradcheck.activation(dtypes=("float32", "float64"), xfail={"float64": "overflows"})
    def declared_xfail_passes(x):
        return tf.nn.softplus(x)


    @gradcheck.activation(dtypes=("float32",), xfail="issue 3")
    def declared_xfail_fails(x):
        return _forgets_dy(x)
"""

FAILED = ["acts.py::forgets_dy[float32]", "acts.py::forgets_dy[float64]"]
ARGS = ("--gradcheck", "--gradcheck-max-examples", "5", "-p", "cacheprovider")


def test_xfail_and_skip_marks_and_xfail_declarations_are_honoured_and_reported(pytester):
    pytester.makepyfile(known=textwrap.dedent(KNOWN))
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "5", "-rsxX",
                                          "--gradcheck-report", str(report))
    result.assert_outcomes(skipped=1, xfailed=2, xpassed=1, passed=1)
    result.stdout.fnmatch_lines(["*XFAIL known.py::marked_xfail[[]float32[]] - issue 3: grad*",
                                 "*XPASS known.py::declared_xfail_passes[[]float64[]] - overflows*"])
    outcomes = {r["nodeid"].split("::")[1]: r["outcome"]
                for r in json.loads(report.read_text())["results"]}
    assert outcomes == {"marked_xfail[float32]": "xfailed", "marked_skip[float32]": "skipped",
                        "declared_xfail_passes[float32]": "passed",
                        "declared_xfail_passes[float64]": "xpassed",
                        "declared_xfail_fails[float32]": "xfailed"}
    assert "1 xpassed" in result.stdout.str() and "2 xfailed" in result.stdout.str()


def test_xfail_declarations_are_validated():
    with pytest.raises(ValueError, match="xfail: unknown dtype 'float8'"):
        gradcheck.activation(xfail={"float8": "no"})(tf.tanh)
    with pytest.raises(TypeError, match="xfail must be a reason"):
        gradcheck.activation(xfail=True)(tf.tanh)


def test_last_failed_reruns_exactly_the_failed_items_with_the_cache_on(pytester):
    pytester.makepyfile(acts=textwrap.dedent(ACTS))
    first = pytester.runpytest_inprocess(*ARGS, "-v")
    first.assert_outcomes(passed=3, failed=2)
    again = pytester.runpytest_inprocess(*ARGS, "--lf", "-v")
    again.assert_outcomes(failed=2)
    assert [line.split(" ")[0] for line in again.stdout.lines if " FAILED" in line
            and line.startswith("acts.py::")] == FAILED
    assert "known failures not in selected tests" not in again.stdout.str()
    assert "run-last-failure: rerun previous 2 failures" in again.stdout.str()


def test_failed_first_runs_the_failed_items_first(pytester):
    pytester.makepyfile(acts=textwrap.dedent(ACTS))
    pytester.runpytest_inprocess(*ARGS)
    result = pytester.runpytest_inprocess(*ARGS, "--ff", "-v")
    ran = [line.split(" ")[0] for line in result.stdout.lines
           if line.startswith("acts.py::") and (" PASSED" in line or " FAILED" in line)]
    assert ran[:2] == FAILED and len(ran) == 5


def test_stepwise_stops_at_the_first_failure_and_resumes_there(pytester):
    pytester.makepyfile(acts=textwrap.dedent(ACTS))
    first = pytester.runpytest_inprocess(*ARGS, "--sw", "-v")
    first.assert_outcomes(passed=2, failed=1)
    second = pytester.runpytest_inprocess(*ARGS, "--sw", "-v")
    ran = [line.split(" ")[0] for line in second.stdout.lines
           if line.startswith("acts.py::") and (" PASSED" in line or " FAILED" in line)]
    assert ran == [FAILED[0]], second.stdout.str()


def test_keyword_selection_matches_target_and_dtype(pytester):
    pytester.makepyfile(acts=textwrap.dedent(ACTS))
    result = pytester.runpytest_inprocess("--gradcheck", "--collect-only", "-q",
                                          "-k", "softplus and float64")
    assert [line for line in result.stdout.lines if "::" in line] == [
        "acts.py::softplus[float64]"]


def test_a_policy_finding_is_reported_in_one_dtype_item_only():
    declared = gradcheck.layer(policies=("mixed_float16",), input_shape=(None, 3),
                               modes=(), elementwise=True)(ComputeDtypeWeight)
    by_dtype = {dtype: gradcheck.fuzz(declared, dtype=dtype, max_examples=3, hypothesis_seed=0)
                for dtype in ("float16", "float32", "float64")}
    assert by_dtype["float32"].kinds == ["dtype_mismatch"]
    assert "under policy mixed_float16" in by_dtype["float32"].findings[0].message
    assert by_dtype["float16"].ok and by_dtype["float64"].ok
