"""Targets that several test modules check (each from its own angle)."""

import keras
import tensorflow as tf


def swish(x):
    return x * tf.sigmoid(x)


@tf.custom_gradient
def sine_activation(x, a, b):
    """sin(a x + b) with scalar tensor parameters a and b, gradients for all three."""
    y = tf.sin(a * x + b)

    def grad(dy):
        c = tf.cos(a * x + b)
        return dy * a * c, tf.reduce_sum(dy * x * c), tf.reduce_sum(dy * c)

    return y, grad


# A mixed-precision bug (its weight is float16 under mixed_float16, not float32).
class ComputeDtypeWeight(keras.layers.Layer):
    """Creates its weight in the compute dtype: float16 under mixed_float16."""

    def build(self, input_shape):
        self.k = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="k",
                                 dtype=self.compute_dtype)

    def call(self, x):
        return x * self.k


@tf.custom_gradient
def tanh_with_noisy_gradient(x):
    """The forward repeats; the backward multiplies by fresh noise of 1e-4 at every pass."""
    y = tf.tanh(x)

    def grad(dy):
        return dy * (1.0 - y * y) * (1.0 + 1e-4 * tf.random.normal(tf.shape(x), dtype=x.dtype))
    return y, grad


def swish_with_dy(take):
    """swish by a custom gradient whose grad fn passes ``dy`` through ``take`` first
    (``tf.stop_gradient``, a clip, ...): its VJP is the derivative times ``take(dy)``."""

    @tf.custom_gradient
    def swish_dy(x):
        s = tf.sigmoid(x)

        def grad(dy):
            return take(dy) * s * (1 + x * (1 - s))

        return x * s, grad

    return swish_dy
