"""Gradients that are *meant* to differ from the derivative, declared with ``gradient=``.

A gradient reversal layer (domain-adversarial training) is the identity forward and sends
``-lambda * dy`` back; a straight-through estimator rounds (or binarizes) forward and lets the
gradient through as if it had not; spiking networks replace the Heaviside step's zero
derivative by a smooth surrogate. Against finite differences each of these is a
``gradient_mismatch``, on purpose. ``gradient=`` says what the gradient should be instead,
``(x, dy, *args) -> expected gradient for x``: gradcheck compares the grad fn with it, and still
checks shapes, dtypes, NaN/Inf, that the gradient is linear in ``dy`` (a surrogate that ignores
``dy`` fails: ``examples/buggy/buggy_surrogate_gradients.py``), batch rows and execution modes.
"""

import keras
import tensorflow as tf

import gradcheck


@gradcheck.layer(elementwise=True, init={"strength": 0.5}, gradient=lambda x, dy: -0.5 * dy)
class GradientReversal(keras.layers.Layer):
    """Identity forward; the gradient is reversed and scaled by ``strength`` (Ganin and
    Lempitsky, 2015). The declaration's ``-0.5 * dy`` matches ``init={"strength": 0.5}``."""

    def __init__(self, strength=1.0, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength

    def call(self, inputs):
        strength = self.strength

        @tf.custom_gradient
        def reverse(x):
            return tf.identity(x), lambda dy: -strength * dy

        return reverse(inputs)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


@gradcheck.activation(domain=(-4.0, 4.0), gradient=lambda x, dy: dy)
@tf.custom_gradient
def round_ste(x):
    """Round to the nearest integer forward, identity backward: quantization-aware training."""
    return tf.round(x), lambda dy: dy


def clipped_identity(x, dy):
    """The gradient of a sign STE: dy where |x| <= 1, 0 beyond (BinaryConnect, Courbariaux et
    al. 2016)."""
    return dy * tf.cast(tf.abs(x) <= 1, dy.dtype)


@gradcheck.activation(domain=(-3.0, 3.0), gradient=clipped_identity)
@tf.custom_gradient
def sign_ste(x):
    """Binarize forward, the clipped identity backward."""
    return tf.sign(x), lambda dy: clipped_identity(x, dy)


def fast_sigmoid(x, dy):
    """SuperSpike's surrogate of the step's derivative: dy / (1 + 10 |x|)^2."""
    return dy / tf.square(1 + 10 * tf.abs(x))


@gradcheck.activation(domain=(-3.0, 3.0), gradient=fast_sigmoid)
@tf.custom_gradient
def spike(x):
    """A spiking neuron's Heaviside step forward, the fast-sigmoid surrogate backward."""
    return tf.cast(x > 0, x.dtype), lambda dy: fast_sigmoid(x, dy)
