"""Per-layer activations that are broken: every target here must FAIL.

``EXPECTED`` as in ``buggy_custom_gradients``. The correct versions are in
``examples/per_layer_activations.py``.
"""

import keras
import tensorflow as tf

import gradcheck

EXPECTED = {
    "L2NormActivation": ("shape_mismatch", "batch_coupling"),
    "relu_alpha_lambda": "error",
    "row_norm_tf_norm": "nonfinite_gradient",
    "custom_elu_lambda": "mode_mismatch",
}


def custom_activation(x):
    """Seed 002, example 3, ported from ``keras.backend`` (gone in Keras 3) to ``keras.ops``."""
    squared_sum = keras.ops.sum(keras.ops.square(x))
    return keras.ops.sqrt(squared_sum)  # L2 norm of the input vector


# BUG: the "activation" sums over the whole tensor, batch axis included: it returns one scalar
# for the whole batch, while compute_output_shape claims (batch, 1), and every example's
# output depends on every other example. Plain TF: custom_activation(tf.ones((5, 4))).shape
# is (). (Its gradient is also NaN at an all-zero batch: sqrt at 0.)
# Caught by: shape_mismatch (the batch axis is lost) or batch_coupling.
# Fix: per_layer_activations.RowL2Norm (reduce over the last axis, keepdims).
@gradcheck.layer(input_shape=(None, 4))
class L2NormActivation(keras.layers.Layer):
    def call(self, inputs):
        return custom_activation(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)  # output is a scalar

    def get_config(self):
        config = super().get_config()
        return config


# BUG: seed 004, example 2, run under Keras 3: ``relu(x, alpha=0.5)``. Keras 3 renamed the
# argument to negative_slope; every call raises
# "TypeError: relu() got an unexpected keyword argument 'alpha'".
# Caught by: error. Fix: per_layer_activations.leaky_relu_lambda.
@gradcheck.layer(elementwise=True, kinks=(0.0,))
def relu_alpha_lambda():
    def parameterized_activation(x, alpha=1.0):
        return keras.activations.relu(x, alpha=alpha)

    return keras.layers.Lambda(lambda x: parameterized_activation(x, alpha=0.5))


# BUG: the obvious per-example norm, ``tf.norm(x, axis=-1, keepdims=True)``, has a NaN
# gradient at an all-zero row (the derivative of sqrt at 0 is inf, times 0): one zero-padded
# example or one dead ReLU row turns every weight update into NaN. Plain TF: the gradient of
# tf.norm at [[0., 0., 0., 0.]] is [[nan, nan, nan, nan]].
# Caught by: nonfinite_gradient. Fix: per_layer_activations.RowL2Norm.
@gradcheck.layer(input_shape=(None, 4))
def row_norm_tf_norm():
    return keras.layers.Lambda(lambda x: tf.norm(x, axis=-1, keepdims=True))


@tf.custom_gradient
def custom_elu_with_grad(x):
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, 1.0, tf.exp(x))

    return y, grad


# BUG: seed 004, example 3, as published: the custom ELU in a Lambda layer. Its gradient's
# ``tf.where(x > 0, 1.0, ...)`` turns 1.0 into a float32 constant under tf.function, so the
# layer trains in float32 but model.fit fails under mixed_float16 (and in bfloat16 and
# float64): "Input 'e' of 'SelectV2' Op has type float16 that does not match type float32".
# Declared for the dtypes it breaks in. Caught by: mode_mismatch.
# Fix: per_layer_activations.custom_elu_lambda.
@gradcheck.layer(elementwise=True, domain=(-1000.0, 1000.0),
                 dtypes=("float16", "bfloat16", "float64"))
def custom_elu_lambda():
    return keras.layers.Lambda(lambda x: custom_elu_with_grad(x))
