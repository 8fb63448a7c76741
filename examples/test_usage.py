"""gradcheck inside ordinary pytest tests: the fixtures, the strategies, the plain API.

``pytest --gradcheck`` fuzzes declared targets without any test code; this module shows the
other way in, for checks that belong in a test suite next to other tests:

* ``gradcheck.check`` / ``gradcheck.assert_gradients`` at inputs you choose;
* ``gradcheck.strategies`` inside your own ``@given`` tests;
* the ``gradcheck_check`` fixture (fuzz or check with the session's ``--gradcheck-*``
  settings) and the ``gradcheck_settings`` fixture (those settings, resolved), both tunable
  per test with ``@pytest.mark.gradcheck(max_examples=..., dtypes=...)``.

These tests run with or without ``--gradcheck``. A target decorated in a test module, like
``hard_swish`` below, is also collected by ``pytest --gradcheck`` like any other.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings

import gradcheck
from gradcheck.strategies import float_dtypes, shapes, tensors


def swish(x):
    return x * tf.math.sigmoid(x)


def elu_where_exp(x):
    # The tf.where NaN trap (see examples/buggy/buggy_custom_gradients.py).
    return tf.where(x > 0, x, tf.exp(x) - 1)


@gradcheck.activation(kinks=(-3.0, 3.0))
def hard_swish(x):
    """x * relu6(x + 3) / 6: declared here, collected by ``pytest --gradcheck`` too.

    The division comes first: relu6(x + 3) / 6 is at most 1, so the product never exceeds |x|
    (``x * relu6(x + 3)`` is 6x, which overflows float16 from x = 10 920).
    """
    return x * (tf.nn.relu6(x + 3.0) / 6.0)


# -- the plain API at chosen inputs ----------------------------------------------------------

def test_check_returns_a_report_that_is_ok_for_swish():
    report = gradcheck.check(swish, np.linspace(-5.0, 5.0, 11))
    assert report.ok, str(report)


def test_check_names_the_nan_trap_and_where_it_is():
    report = gradcheck.check(elu_where_exp, np.array([1.0, 100.0], dtype=np.float32))
    assert report.kinds == ["nonfinite_gradient"]
    assert "100" in str(report)


def test_assert_gradients_raises_an_assertion_error_with_the_report():
    with pytest.raises(gradcheck.GradcheckError) as caught:
        gradcheck.assert_gradients(elu_where_exp, np.array([[100.0]], dtype=np.float32))
    assert "nonfinite_gradient" in caught.value.report.kinds


# -- the strategies in your own Hypothesis test ------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(x=tensors(shape=shapes(max_dims=2), dtype=float_dtypes(), domain=(-20.0, 20.0)))
def test_swish_gradients_hold_for_drawn_tensors(x):
    gradcheck.assert_gradients(swish, x)


# -- the fixtures ------------------------------------------------------------------------------

def test_gradcheck_check_fuzzes_a_function_with_the_session_settings(gradcheck_check):
    gradcheck_check(swish, domain=(-20.0, 20.0), max_examples=10)


def test_gradcheck_check_checks_given_inputs(gradcheck_check):
    gradcheck_check(swish, np.array([-1.0, 0.0, 2.0], dtype=np.float32))


def test_gradcheck_check_fails_a_buggy_function(gradcheck_check):
    with pytest.raises(gradcheck.GradcheckError) as caught:
        gradcheck_check(elu_where_exp, domain=(-200.0, 200.0), dtypes=("float32",),
                        max_examples=50)
    assert "nonfinite_gradient" in caught.value.report.kinds


@pytest.mark.gradcheck(max_examples=5, dtypes=("float32", "float64"))
def test_the_marker_overrides_the_session_settings_for_one_test(gradcheck_settings,
                                                                 gradcheck_check):
    assert gradcheck_settings.max_examples == 5
    assert gradcheck_settings.dtypes == ("float32", "float64")
    gradcheck_check(hard_swish)  # fuzzed in float32 and float64 only, 5 examples each
