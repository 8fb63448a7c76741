"""Activations with extra parameters that are broken: every target here must FAIL.

``EXPECTED`` as in ``buggy_custom_gradients``. The correct versions are in
``examples/extra_parameter_activations.py``.
"""

import tensorflow as tf
from tensorflow import keras

import gradcheck

EXPECTED = {
    "complex_activation_lambda": ("shape_mismatch", "error"),
    "my_activation_unreduced": "shape_mismatch",
    "scaled_relu_wrong_alpha_grad": "gradient_mismatch",
}


def complex_activation(x, param_tensor):
    """Seed 001, example 3, as published."""
    param_tensor = tf.cast(param_tensor, dtype=x.dtype)
    param_tensor = tf.reshape(param_tensor, [-1, 1])  # Reshape to ensure correct broadcasting

    def forward_pass(x):
        return tf.math.tanh(x + tf.math.multiply(x, param_tensor))

    def backward_pass(x):
        intermediate = tf.math.tanh(x + tf.math.multiply(x, param_tensor))
        gradient = (1 - tf.math.square(intermediate)) * (1 + param_tensor)
        return gradient

    return forward_pass(x), backward_pass(x)


# BUG: the (3, 1) parameter broadcasts along the *batch* axis, not the features. With a
# (batch, features) input: batch 3 runs (and silently scales example i by param[i]); batch 1
# broadcasts to a (3, features) output, three rows for one example; any other batch size
# raises "Incompatible shapes: [2,4] vs. [3,1]". Plain TF: shapes for batch 1, 2, 3, 4 are
# (3, 4), error, (3, 4), error.
# Caught by: shape_mismatch (batch 1) or error (batch 2, 4, ...).
# Fix: extra_parameter_activations.feature_scaled_tanh (parameter of shape (features,)).
@gradcheck.layer(elementwise=True, input_shape=(None, 4))
def complex_activation_lambda():
    param_tensor = tf.constant([0.2, 0.5, 0.8], shape=(3, 1))
    return keras.layers.Lambda(lambda x: complex_activation(x, param_tensor)[0])


# BUG: the gradient of a scalar parameter left unreduced: seed 000's my_activation with the
# reduce_sum dropped from da and db. The tape accepts a (batch, n) gradient for a scalar
# parameter without complaint (plain TF: tape.gradient(y, a).shape == x.shape); an optimizer
# then broadcasts the scalar variable into a tensor or fails far from the cause.
# Caught by: shape_mismatch.
@gradcheck.activation(args={"a": (0.5, 2.0), "b": (-1.0, 1.0)})
@tf.custom_gradient
def my_activation_unreduced(x, a, b):
    y = tf.sin(a * x + b)

    def grad(dy):
        da = dy * x * tf.cos(a * x + b)
        db = dy * tf.cos(a * x + b)
        dx = dy * a * tf.cos(a * x + b)
        return dx, da, db

    return y, grad


# BUG: seed 001's scaled ReLU with a wired gradient whose parameter part is wrong: the
# derivative with respect to alpha is relu(x), but this returns the derivative with respect to
# x (the "backward" function of the article, reused for the wrong variable), summed.
# The gradient for x is right, so a test that only checks dx passes.
# Caught by: gradient_mismatch (for input alpha).
@gradcheck.activation(args={"alpha": (0.1, 2.0)}, kinks=(0.0,))
@tf.custom_gradient
def scaled_relu_wrong_alpha_grad(x, alpha):
    positive = tf.cast(tf.greater(x, 0), dtype=x.dtype)

    def grad(dy):
        return dy * positive * alpha, tf.reduce_sum(dy * positive * alpha)

    return tf.nn.relu(x) * alpha, grad
