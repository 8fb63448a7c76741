"""Execution modes of an ill-conditioned but right formula: a variance as mean(x^2) - mean(x)^2.

At a constant row the eager run cancels exactly (0: no error at the input, nor at inputs 4%
away, where the row is no longer constant), while a traced graph that computes in another
order leaves a rounding that 1 / sqrt(var + 1e-3) multiplies by ~3e4. The mode allowance
also samples inputs a few ulps away (``_conditioning.TwinGradients.adjacent``: float64), and
a difference that the float64 twin shows shrunk by eps64 / eps (within SAFETY) is rounding
(``_modes._scales_with_eps``: float32, where the traced gradient missed float64's by 37 times
the eager run's largest sampled error).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck


class SumOfSquaresLayerNorm(keras.layers.Layer):
    """A layer norm as users write it, its variance from the sum of squares."""

    def __init__(self, epsilon=1e-3, traced_epsilon=None, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.traced_epsilon = epsilon, traced_epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],),
                                     initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        epsilon = self.epsilon
        if self.traced_epsilon is not None and not tf.executing_eagerly():
            epsilon = self.traced_epsilon  # a mode bug: another constant when traced
        mean = tf.reduce_mean(x, -1, keepdims=True)
        var = tf.reduce_mean(x * x, -1, keepdims=True) - mean * mean
        return self.gamma * (x - mean) / tf.sqrt(var + epsilon) + self.beta


CONSTANT_ROWS = [([[2.0, 2.0, 2.0, 2.0]], 443018837), ([[-10.0, -10.0, -10.0, -10.0]], 1121819700)]


@pytest.mark.parametrize(("rows", "seed"), CONSTANT_ROWS)
def test_a_constant_row_of_a_sum_of_squares_variance_is_not_a_mode_mismatch(rows, seed):
    """Fuzzed (float64, Hypothesis seeds 0 and 2): the traced gradient was 250 and 2400
    ulps from the eager one, which has no wider twin to measure its error against."""
    report = gradcheck.check(SumOfSquaresLayerNorm(dtype="float64"), np.array(rows),
                             elementwise=False, batch_independent=True, seed=seed)
    assert report.ok, str(report)


@pytest.mark.parametrize(("rows", "seed"), CONSTANT_ROWS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_guard_another_epsilon_when_traced_is_still_a_mode_mismatch(rows, seed, dtype):
    layer = SumOfSquaresLayerNorm(traced_epsilon=1.1e-3, dtype=dtype)
    report = gradcheck.check(layer, tf.constant(rows, dtype), elementwise=False,
                             batch_independent=True, seed=seed)
    assert report.kinds == ["mode_mismatch"], str(report)


FLOAT32_ROWS = [([[5.0, 5.0, 5.0, 5.0]], 1619017478),
                ([[1.0, 8.0, 1.0, 8.0], [8.0, 8.0, 1.0, 1.0], [8.0, 8.0, 8.0, 8.0]], 831469140)]


@pytest.mark.parametrize(("rows", "seed"), FLOAT32_ROWS)
def test_a_constant_row_in_float32_is_not_a_mode_mismatch(rows, seed):
    report = gradcheck.check(SumOfSquaresLayerNorm(dtype="float32"), np.array(rows, np.float32),
                             elementwise=False, batch_independent=True, seed=seed)
    assert report.ok, str(report)


@pytest.mark.parametrize(("rows", "seed"), FLOAT32_ROWS)
def test_guard_a_value_frozen_at_trace_time_is_still_a_mode_mismatch(rows, seed):
    """A Python value read at trace time and changed afterwards: the float64 twin's fresh
    trace reads the value as it is now, so it differs by float64's own rounding only, far
    less than the frozen value's 1% scaled by eps64 / eps32."""
    frozen = {"scale": 1.0}

    def scaled_norm(x):
        mean = tf.reduce_mean(x, -1, keepdims=True)
        var = tf.reduce_mean(x * x, -1, keepdims=True) - mean * mean
        return tf.cast(frozen["scale"], x.dtype) * (x - mean) / tf.sqrt(var + 1e-3)

    x = np.array(rows, np.float32)
    first = gradcheck.check(scaled_norm, x, elementwise=False, batch_independent=True,
                            seed=seed)
    frozen["scale"] = 1.01  # the traced graph, cached for this function, keeps 1.0
    report = gradcheck.check(scaled_norm, x, elementwise=False, batch_independent=True,
                             seed=seed)
    assert first.ok and report.kinds == ["mode_mismatch"], f"{first}\n{report}"
