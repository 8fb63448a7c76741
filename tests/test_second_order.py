"""order=2: the gradient of the gradient, on real buggy targets and correct ones."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from shared_targets import sine_activation, swish, swish_with_dy

import gradcheck  # noqa: E402

X = np.array([[-4.0, -1.5, -0.3, 0.0, 0.2], [0.5, 1.0, 2.5, 3.0, 6.0]])

# modes=() throughout: these tests are about order 2 (test_modes.py covers modes).


def check2(target, *inputs, **options):
    return gradcheck.check(target, *inputs, order=2, modes=(), **options)


# ---------------------------------------------------------------------------- buggy targets


@tf.custom_gradient
def numpy_swish(x):
    """First derivative right, computed in NumPy: the tape cannot differentiate it."""
    def grad(dy):
        s = 1 / (1 + np.exp(-x.numpy()))
        return dy * tf.constant(s + x.numpy() * s * (1 - s), dy.dtype)

    return x * tf.sigmoid(x), grad


@tf.custom_gradient
def stopped_swish(x):
    """tf.stop_gradient on the whole derivative."""
    def grad(dy):
        s = tf.sigmoid(x)
        return dy * tf.stop_gradient(s + x * s * (1 - s))

    return x * tf.sigmoid(x), grad


@tf.custom_gradient
def partly_stopped_swish(x):
    """stop_gradient on sigmoid only "for stability": the x factor still differentiates."""
    def grad(dy):
        s = tf.stop_gradient(tf.sigmoid(x))
        return dy * (s + x * s * (1 - s))

    return x * tf.sigmoid(x), grad


@tf.custom_gradient
def python_float_sin(x):
    """A scalar target whose derivative goes through a Python float."""
    def grad(dy):
        return dy * math.cos(float(x))

    return tf.sin(x), grad


@tf.custom_gradient
def cut_exp(x):
    """exp below 50, 0 above; the grad fn's tf.where back-propagates exp(100) = inf * 0."""
    def grad(dy):
        return dy * tf.where(x < 50, tf.exp(x), tf.zeros_like(x))

    return tf.where(x < 50, tf.exp(x), tf.zeros_like(x)), grad


def moments_layer_norm(x):
    """tf.nn.moments stops the gradient through the mean inside the variance: harmless to
    first order (d var / d mean = 0 at the mean), wrong to second order. Keras'
    LayerNormalization uses it on the TensorFlow backend."""
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-3)


@pytest.mark.parametrize("fn", [numpy_swish, stopped_swish], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_differentiable_grad_fn_is_a_second_order_disconnected_gradient(fn, dtype):
    x = tf.constant(X, dtype)
    assert gradcheck.check(fn, x, modes=()).ok  # invisible to a first-order check
    report = check2(fn, x)
    assert report.kinds == ["disconnected_gradient"], str(report)
    finding = report.findings[0]
    assert "second order" in finding.message and "is None" in finding.message
    assert finding.details["order"] == 2 and finding.details["param"] == "input x"


def test_python_float_in_the_grad_fn_is_a_second_order_disconnected_gradient():
    report = check2(python_float_sin, tf.constant(0.7, tf.float64))
    assert report.kinds == ["disconnected_gradient"]
    assert "second order" in report.findings[0].message


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_partly_stopped_gradient_is_a_second_order_mismatch(dtype):
    x = tf.constant(X, dtype)
    assert gradcheck.check(partly_stopped_swish, x, modes=()).ok
    report = check2(partly_stopped_swish, x)
    assert report.kinds == ["second_order_mismatch"], str(report)
    details = report.findings[0].details
    # Per element: d/dx of (s + x s (1 - s)) with s frozen is s (1 - s), half of the truth at 0.
    assert details["mismatched"] >= 8 and abs(details["analytic"] - details["numerical"]) > \
        details["bound"]
    assert "second derivative for input x" in report.findings[0].message


def test_tf_nn_moments_layer_norm_has_a_wrong_second_derivative():
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 5)) * 2, tf.float64)
    report = check2(moments_layer_norm, x, elementwise=False)
    assert report.kinds == ["second_order_mismatch"], str(report)
    assert "tf.nn.moments" in report.findings[0].message

    def manual_layer_norm(x):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-3)

    assert check2(manual_layer_norm, x, elementwise=False).ok


def test_nan_trap_inside_the_gradient_is_a_second_order_nonfinite_gradient():
    x = tf.constant([-1.0, 0.5, 100.0], tf.float32)
    assert gradcheck.check(cut_exp, x, modes=()).ok
    report = check2(cut_exp, x)
    assert report.kinds == ["nonfinite_gradient"]
    assert "second order" in report.findings[0].message
    assert report.findings[0].details["index"] == [2]


def test_mismatch_in_a_weight_second_derivative_is_found():
    class StoppedScale(keras.layers.Layer):
        """y = tanh(k x) with dy/dk computed through a stopped tanh."""

        def build(self, input_shape):
            self.k = self.add_weight(shape=(), initializer="ones", name="k")

        def call(self, x):
            @tf.custom_gradient
            def scaled(x, k):
                y = tf.tanh(k * x)

                def grad(dy):
                    d = 1 - tf.stop_gradient(y) ** 2
                    return dy * k * d, tf.reduce_sum(dy * x * d)

                return y, grad

            return scaled(x, tf.convert_to_tensor(self.k))

    layer = StoppedScale(dtype="float64")
    x = tf.constant(X, tf.float64)
    assert gradcheck.check(layer, x, modes=()).ok
    report = check2(layer, x)
    assert report.kinds == ["second_order_mismatch"], str(report)
    assert "weight" in report.findings[0].message


# ---------------------------------------------------------------------------- correct targets


@tf.custom_gradient
def differentiable_swish(x):
    s = tf.sigmoid(x)  # closed over from the forward pass: outer tapes record it too

    def grad(dy):
        return dy * (s + x * s * (1 - s))

    return x * s, grad


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("fn", [swish, differentiable_swish, tf.nn.softplus, tf.nn.gelu,
                                tf.tanh, tf.nn.elu, tf.nn.relu, tf.nn.leaky_relu, tf.abs],
                         ids=lambda f: f.__name__)
def test_correct_targets_pass_at_second_order(fn, dtype):
    report = check2(fn, tf.constant(X, dtype))  # kinks of f' at 0 included
    assert report.ok, str(report)


def test_parameters_and_cross_terms_pass():
    x = tf.constant(X, tf.float32)
    a, b = tf.constant(1.3, tf.float32), tf.constant(0.2, tf.float32)
    assert check2(sine_activation, x, a, b).ok
    assert check2(lambda x: tf.nn.softmax(3 * x), x, elementwise=False).ok


def test_a_dense_layer_passes_with_its_weights():
    layer = keras.layers.Dense(3, activation="tanh")
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 5)), tf.float32)
    layer(x)
    assert check2(layer, x, elementwise=False).ok


def test_order_is_validated_and_order_1_is_the_default():
    x = tf.constant(X, tf.float32)
    with pytest.raises(ValueError, match="order must be 1"):
        gradcheck.check(swish, x, order=3)
    assert gradcheck.check(numpy_swish, x, modes=()).ok  # order 1 unless asked


def test_the_finding_serializes_to_json():
    import json

    report = check2(numpy_swish, tf.constant(X, tf.float32))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["findings"][0]["kind"] == "disconnected_gradient"
    assert data["findings"][0]["details"]["order"] == 2


def test_declared_order_2_is_fuzzed():
    @gradcheck.activation(order=2, dtypes=("float32",), domain=(-5, 5), modes=())
    def declared_numpy_swish(x):
        return numpy_swish(x)

    report = gradcheck.fuzz(declared_numpy_swish, max_examples=5, hypothesis_seed=0)
    assert report.kinds == ["disconnected_gradient"], str(report)
    assert "order=2" in report.reproducer


def test_declaration_validates_order():
    with pytest.raises(ValueError, match="order must be 1"):
        gradcheck.activation(order=0)(swish)


@pytest.mark.parametrize("seed", range(4))
def test_second_order_next_to_a_declared_domain_end_is_not_compared_there(seed):
    # The first order's step there is the distance to the end, an ulp at 5 - 2e-15: the
    # second differences read 5.4e14 against 0 (second_order_mismatch of sin).
    report = gradcheck.check(tf.sin, np.array([4.999999999999998, 1.0]), order=2,
                             domain=(-5.0, 5.0), modes=(), seed=seed)
    assert report.ok, str(report)


def test_guard_a_second_order_bug_beside_a_domain_end_is_still_found():
    @tf.custom_gradient
    def sine_second_derivative_off(x):  # the gradient's value is cos(x); its slope is off
        return tf.sin(x), lambda dy: dy * (tf.cos(x) + 0.5 * (x - tf.stop_gradient(x)))

    report = gradcheck.check(sine_second_derivative_off,
                             np.array([4.999999999999998, 1.0, -2.0]), order=2,
                             domain=(-5.0, 5.0), modes=())
    assert report.kinds == ["second_order_mismatch"], str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_grad_fn_that_stops_dy_is_a_second_order_finding(dtype):
    """A fresh corpus's miss: the second-order check differentiated the gradient along x
    with dy held constant, so a grad fn with tf.stop_gradient(dy) passed, while the second
    derivative of sin(f(x)) it gives is 0.349 where it is 0.044."""
    stopped = check2(swish_with_dy(tf.stop_gradient), X.astype(dtype))
    assert stopped.kinds == ["disconnected_gradient"], str(stopped)
    assert "upstream gradient dy is None" in stopped.findings[0].message
    assert check2(swish_with_dy(lambda dy: dy), X.astype(dtype)).ok


@pytest.mark.parametrize("target", [lambda x: tf.nn.softmax(30.0 * x),
                                    lambda x: tf.math.expm1(1e-6 * x) / 1e-6])
def test_built_in_ops_whose_double_backward_rounds_differently_pass_the_dy_path(target):
    """Review: <v, dS/dv> against S, judged within the rounding of S's own terms, flagged
    softmax(30 x) at 7e-12 relative: the double backward pass rounds terms no sum shows.
    Only a path from dy cut whole (dS/dv None) is judged."""
    assert check2(target, X).ok
