"""A float64 twin that computes in float32 inside (a cast) has float32's precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck


def softplus_in_float32(x):
    return tf.cast(tf.math.softplus(tf.cast(x, tf.float32)), x.dtype)


class RMSNormInFloat32(keras.layers.Layer):
    """The mixed-precision pattern: the statistics in float32 whatever the layer's dtype."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gamma")

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        norm = x32 * tf.math.rsqrt(tf.reduce_mean(x32 * x32, axis=-1, keepdims=True) + 1e-6)
        return tf.cast(norm, x.dtype) * tf.cast(self.gamma, x.dtype)


@tf.custom_gradient
def softplus_in_float32_wrong(x):
    return softplus_in_float32(x), lambda dy: dy * tf.sigmoid(x) * 1.1


def test_a_cast_to_float32_inside_is_no_wrong_formula_in_float32():
    # Its float64 twin's differences at float64's step were float32's noise: 0.583 against
    # the derivative 0.580 +- 1.6e-6, "a wrong formula".
    report = gradcheck.check(softplus_in_float32, tf.constant([1.0975195169448853], tf.float32),
                             modes=())
    assert report.ok, str(report)
    x = np.array([[2.0, 0.0, 0.0, 0.0], [0.3, -1.2, 0.5, 2.0]], np.float32)
    for seed in (1, 2):
        assert gradcheck.check(RMSNormInFloat32(dtype="float32"), x, seed=seed, modes=()).ok


def test_a_scale_invariant_output_computed_in_float32_is_told_by_an_uneven_move():
    # x * (1 + 2^-20) moves an RMS norm's output by nothing in float64 either: the test could
    # not tell, the twin stayed a float64 reference, and a correct float32 layer read "a
    # wrong formula" at rows of 0.5 and 0 (its Jacobian is within 2e-7 of the exact one).
    x = np.array([[0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0]], np.float32)
    for seed in (860241293, 3):
        layer = RMSNormInFloat32(dtype="float32")
        report = gradcheck.check(layer, x, elementwise=False, batch_independent=True,
                                 seed=seed, modes=())
        assert report.ok, str(report)


def test_an_all_zero_input_is_asked_at_a_stand_in_and_tells_the_precision():
    """At an all-zero input the test answered nothing, and a float64 target computing in
    float32 inside was judged at float64's precision: a cosine layer's correct gradient at a
    zero row read 2 float32 ulps off (a fresh corpus's false alarm, in fuzzing's first
    example); softplus computed in float32 at 0 alike."""
    def softplus_f32(x):
        return tf.cast(tf.math.softplus(tf.cast(x, tf.float32)), x.dtype)

    failed = []
    for seed in range(6):
        report = gradcheck.check(softplus_f32, tf.zeros([4], tf.float64), seed=seed)
        if not report.ok:
            failed.append(str(report))
        layer = RMSNormInFloat32(dtype="float64")
        report = gradcheck.check(layer, np.zeros((2, 4)), elementwise=False,
                                 batch_independent=True, seed=seed)
        if not report.ok:
            failed.append(str(report))
    assert not failed, "\n".join(failed)


def test_an_all_zero_first_input_does_not_leave_a_wrong_precision_to_the_next_check():
    # A fuzz run's first input is all zeros: no relative move moves it, and its "resolves
    # finer than float32" was remembered for the function, for every later check (it is now
    # asked at a stand-in, whose answer is the function's).
    def fresh(x):
        return tf.cast(tf.math.softplus(tf.cast(x, tf.float32)), x.dtype)

    gradcheck.check(fresh, tf.zeros([3], tf.float32), modes=())  # what it says at 0: not this test
    report = gradcheck.check(fresh, tf.constant([1.0975195169448853], tf.float32), modes=())
    assert report.ok, str(report)


def test_a_float64_target_that_casts_to_float32_inside_is_judged_at_float32s_precision():
    # Its own differences are float32's noise: a softplus at 1e-8 read "0.500000014 vs
    # 0.501999793 +- 2.8e-10", an RMS norm at rows of 2 "does not scale with dy".
    report = gradcheck.check(softplus_in_float32, tf.constant([1e-8, 3e-8], tf.float64),
                             modes=())
    assert report.ok, str(report)
    report = gradcheck.check(RMSNormInFloat32(dtype="float64"), np.full((3, 4), 2.0),
                             elementwise=False, batch_independent=True, seed=1727368608)
    assert report.ok, str(report)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_guard_a_wrong_gradient_of_code_that_casts_inside_is_still_found(dtype):
    x = tf.constant([-2.0, 0.5, 1.5, 3.0], dtype)
    assert gradcheck.check(softplus_in_float32_wrong, x, modes=()).kinds == ["gradient_mismatch"]


def test_a_float16_target_casting_inside_keeps_a_float32_precise_twin_as_its_reference():
    report = gradcheck.check(softplus_in_float32, tf.constant([-2.0, 0.5, 1.5], tf.float16),
                             modes=())
    assert report.ok and report.reference_dtype == "float64"
    plain = gradcheck.check(tf.math.softplus, tf.constant([1.0975195169448853], tf.float32),
                            modes=())
    assert plain.ok and plain.reference_dtype == "float64"


@tf.custom_gradient
def sigmoid_slope_off(x):
    s = tf.sigmoid(x)
    return s, lambda dy: dy * s * (1 - s) * 1.001


def test_guard_code_whose_output_hides_a_tiny_move_in_rounding_keeps_its_float64_reference():
    # sigmoid at 1e-8 moves by 2e-18 under a move below float32's ulp: under its own ulp at
    # 0.5, no evidence of a cast; taken as one, it weakened every later check of the target.
    first = gradcheck.check(sigmoid_slope_off, np.float32([1e-8, -3e-8, 2e-8]), modes=())
    later = gradcheck.check(sigmoid_slope_off, np.float32([0.5, 1.0, -2.0, 3.0]), modes=())
    for report in (first, later):
        assert report.kinds == ["gradient_mismatch"] and report.reference_dtype == "float64"
