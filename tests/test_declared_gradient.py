"""gradient=: intended surrogate gradients are compared with the declaration, not with finite
differences, and everything else is still checked."""

import numpy as np
import pytest
import tensorflow as tf

import gradcheck
import gradcheck._check
import gradcheck._declared_gradient as declared_gradient

X = np.array([[-2.5, -0.7, 0.3], [0.9, 1.6, -1.2]], np.float32)


@tf.custom_gradient
def reverse(x):
    return tf.identity(x), lambda dy: -dy


@tf.custom_gradient
def round_ste(x):
    return tf.round(x), lambda dy: dy


@tf.custom_gradient
def ignores_dy(x):
    """A spiking-network surrogate seen in the wild: 0.24 whatever dy says."""
    return tf.cast(x > 0, x.dtype), lambda dy: 0.24 * tf.ones_like(x)


@tf.custom_gradient
def fast_sigmoid_spike(x):
    """Heaviside forward, fast-sigmoid surrogate backward (SuperSpike), in the input's dtype."""
    def grad(dy):
        return dy / tf.square(1 + 10 * tf.abs(x))
    return tf.cast(x > 0, x.dtype), grad


def fast_sigmoid_gradient(x, dy):
    return dy / tf.square(1 + 10 * tf.abs(x))


def test_a_gradient_reversal_fails_against_finite_differences_and_passes_as_declared():
    assert gradcheck.check(reverse, X).kinds == ["gradient_mismatch"]
    assert gradcheck.check(reverse, X, gradient=lambda x, dy: -dy).ok


def test_a_straight_through_estimator_passes_as_declared_in_every_dtype():
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        report = gradcheck.fuzz(round_ste, dtype=dtype, max_examples=15,
                                gradient=lambda x, dy: dy)
        assert report.ok, str(report)


def test_a_smooth_surrogate_computed_in_a_low_dtype_is_no_false_alarm():
    for dtype in ("float16", "bfloat16", "float32"):
        report = gradcheck.fuzz(fast_sigmoid_spike, dtype=dtype, max_examples=30,
                                gradient=fast_sigmoid_gradient, domain=(-3, 3))
        assert report.ok, str(report)


def test_a_surrogate_other_than_declared_is_a_mismatch_naming_the_declaration():
    report = gradcheck.check(reverse, X, gradient=lambda x, dy: dy)
    assert report.kinds == ["gradient_mismatch"]
    message = report.findings[0].message
    assert "analytic (your grad fn)" in message and "declared gradient=" in message


def test_a_surrogate_that_ignores_dy_fails_even_when_the_declaration_ignores_it_too():
    assert "gradient_mismatch" in gradcheck.check(
        ignores_dy, X, gradient=lambda x, dy: 0.24 * dy).kinds
    report = gradcheck.check(ignores_dy, X, gradient=lambda x, dy: 0.24 * tf.ones_like(x))
    assert "gradient_mismatch" in report.kinds
    assert any("does not scale with the upstream gradient" in f.message
               for f in report.findings)


def test_a_none_gradient_where_one_is_declared_is_disconnected():
    def cut(x):
        return tf.stop_gradient(tf.round(x))

    report = gradcheck.check(cut, X, gradient=lambda x, dy: dy)
    assert report.kinds == ["disconnected_gradient"], str(report)
    assert gradcheck.check(cut, X, gradient=lambda x, dy: tf.zeros_like(x)).ok


def test_structure_is_still_checked_forward_coupling_and_shapes():
    @tf.custom_gradient
    def centred(x):
        return x - tf.reduce_mean(x, axis=0), lambda dy: dy

    report = gradcheck.check(centred, X, elementwise=False, batch_independent=True,
                             gradient=lambda x, dy: dy)
    assert report.kinds == ["batch_coupling"], str(report)

    @tf.custom_gradient
    def wrong_shape(x):
        return tf.identity(x), lambda dy: dy[:1]

    assert "shape_mismatch" in gradcheck.check(wrong_shape, X,
                                               gradient=lambda x, dy: dy).kinds


def test_modes_are_still_checked():
    @tf.custom_gradient
    def numpy_grad(x):
        return tf.identity(x), lambda dy: tf.constant(-dy.numpy())

    report = gradcheck.check(numpy_grad, X, gradient=lambda x, dy: -dy)
    assert report.kinds == ["mode_mismatch"], str(report)


def test_extra_arguments_are_declared_by_a_tuple_or_left_to_finite_differences():
    @tf.custom_gradient
    def scaled_reverse(x, a):
        return x * a, lambda dy: (-dy * a, tf.reduce_sum(dy * x))

    a = np.float32(1.5)
    assert gradcheck.check(scaled_reverse, X, a, gradient=lambda x, dy, a: -dy * a).ok
    assert gradcheck.check(scaled_reverse, X, a,
                           gradient=lambda x, dy, a: (-dy * a, tf.reduce_sum(dy * x))).ok
    report = gradcheck.check(scaled_reverse, X, a, gradient=lambda x, dy, a: (-dy * a, 0.0))
    assert report.kinds == ["gradient_mismatch"] and "input a" in report.findings[0].message


def test_a_declaration_that_raises_or_has_the_wrong_shape_is_a_usage_error():
    with pytest.raises(TypeError, match="the declared gradient= raised ZeroDivisionError"):
        gradcheck.check(reverse, X, gradient=lambda x, dy: 1 / 0)
    with pytest.raises(TypeError, match=r"returned shape \[3\] for input x, expected \[2, 3\]"):
        gradcheck.check(reverse, X, gradient=lambda x, dy: tf.ones(3))


def test_the_declaration_is_validated_when_decorating():
    with pytest.raises(TypeError, match="gradient must be a function"):
        gradcheck.activation(gradient=3)(round_ste)
    with pytest.raises(ValueError, match="order=1"):
        gradcheck.activation(gradient=lambda x, dy: dy, order=2)(round_ste)


def test_custom_gradients_are_named_as_the_users_grad_fn_and_the_rest_as_autodiff():
    assert declared_gradient.analytic_source(reverse) == "your grad fn"
    assert declared_gradient.analytic_source(tf.function(reverse)) == "your grad fn"
    assert declared_gradient.analytic_source(tf.nn.relu) == "autodiff"

    def plain_wrong(x):
        return tf.where(x > 0, x, tf.stop_gradient(x) * 0.5 + 0.5 * x)

    report = gradcheck.check(plain_wrong, X, modes=())
    assert "analytic (autodiff)" in report.findings[0].message


def test_the_declared_tolerance_follows_the_cores_rule():
    from gradcheck import _routes  # the core's comparison routes

    assert declared_gradient.ANALYTIC_ULPS == _routes.ANALYTIC_ULPS


def test_a_lambda_declaration_is_written_back_as_its_source():
    gradient = lambda x, dy: -dy * 2  # noqa: E731
    assert declared_gradient.expression_of(gradient) == "(lambda x, dy: -dy * 2)"
    assert declared_gradient.expression_of(fast_sigmoid_gradient) == "fast_sigmoid_gradient"
