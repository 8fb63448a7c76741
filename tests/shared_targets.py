"""Correct targets that several test modules check (each from its own angle)."""

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
