"""Per-layer activations: ``Lambda`` and ``Activation`` layers, and a custom reduction layer.

From seed articles 004 ("customize activation functions for specific layers in Keras") and 002
("how can custom activation functions be created in Keras?"). A layer is declared with
``@gradcheck.layer`` on a zero-argument *factory* that returns it: gradcheck calls the factory
once per checked dtype, with Keras' floatx set to that dtype, so the layer computes in it.

Layer factories default to ``elementwise=False``; an activation layer is elementwise, so it says
so, which lets gradcheck check every element's derivative exactly.

All targets here are correct; the broken versions are in
``examples/buggy/buggy_per_layer_activations.py``.
"""

import keras
import tensorflow as tf

import gradcheck


# -- seed 004 ------------------------------------------------------------------------------------

def swish_activation(x):
    return x * tf.sigmoid(x)


@gradcheck.layer(elementwise=True, domain=(-100.0, 100.0))
def swish_lambda():
    """Seed 004, example 1: ``Lambda(swish_activation)``, as published (correct)."""
    return keras.layers.Lambda(swish_activation)


def parameterized_activation(x, negative_slope=0.0):
    # Seed 004 wrote ``relu(x, alpha=alpha)``: Keras 3 renamed the argument to negative_slope
    # and rejects ``alpha`` with a TypeError (buggy_per_layer_activations.relu_alpha_lambda).
    return keras.activations.relu(x, negative_slope=negative_slope)


@gradcheck.layer(elementwise=True, kinks=(0.0,))
def leaky_relu_lambda():
    """Seed 004, example 2, ported to Keras 3: a leaky ReLU with slope 0.5 in a Lambda."""
    return keras.layers.Lambda(lambda x: parameterized_activation(x, negative_slope=0.5))


@tf.custom_gradient
def custom_elu_with_grad(x):
    y = tf.nn.elu(x)

    def grad(dy):
        # Seed 004 wrote ``tf.where(x > 0, 1.0, tf.exp(x))``: under tf.function (model.fit)
        # the 1.0 is a float32 constant and the layer fails in float16, bfloat16 and float64
        # (buggy_per_layer_activations.custom_elu_lambda). ones_like has x's dtype.
        return dy * tf.where(x > 0, tf.ones_like(x), tf.exp(x))

    return y, grad


@gradcheck.layer(elementwise=True, domain=(-1000.0, 1000.0))
def custom_elu_lambda():
    """Seed 004, example 3: ELU with a custom gradient inside a Lambda, dtype bug fixed (the
    custom gradient is not differentiated again, so its exp overflow is never multiplied by
    0)."""
    return keras.layers.Lambda(lambda x: custom_elu_with_grad(x))


# -- seed 002 ------------------------------------------------------------------------------------

def custom_sigmoid(x):
    """Seed 002, example 1: a sigmoid rescaled to (-1, 1). ``keras.ops`` replaces the Keras 2
    ``keras.backend`` functions the article imports, which Keras 3 no longer has."""
    return keras.ops.sigmoid(x) * 2 - 1


def custom_relu(x):
    """Seed 002, example 2: max(x, 0.1 x), a leaky ReLU (not differentiable at 0)."""
    return keras.ops.maximum(x, 0.1 * x)


@gradcheck.layer(elementwise=True, domain=(-50.0, 50.0))
def custom_sigmoid_activation():
    """``keras.layers.Activation(custom_sigmoid)``: the per-layer use of a custom function."""
    return keras.layers.Activation(custom_sigmoid)


@gradcheck.layer(elementwise=True, kinks=(0.0,))
def custom_relu_activation():
    return keras.layers.Activation(custom_relu)


@gradcheck.layer(input_shape=(None, 5))
def dense_custom_sigmoid():
    """Seed 002's ``Dense(1, activation=custom_sigmoid)``: the activation inside a Dense layer.

    Not elementwise (Dense mixes features); gradients with respect to kernel and bias too.
    """
    return keras.layers.Dense(
        2, activation=custom_sigmoid,
        kernel_initializer=keras.initializers.GlorotUniform(seed=1),
        bias_initializer=keras.initializers.Constant(-0.2))


@tf.custom_gradient
def row_l2_norm(x):
    """Euclidean norm of each row (last axis), keeping the axis: shape (..., n) -> (..., 1).

    Scaled by the row's largest magnitude first, so squaring neither underflows (tiny rows
    would get norm 0 and gradient 0) nor overflows (float16 squares overflow above 256). The
    gradient x / |x| is exact; at an all-zero row, where the norm has no derivative, it is 0,
    a valid subgradient, instead of the NaN of ``tf.norm``.
    """
    scale = tf.reduce_max(tf.math.abs(x), axis=-1, keepdims=True)
    nonzero = scale > 0
    safe_scale = tf.where(nonzero, scale, tf.ones_like(scale))
    unit = x / safe_scale                                     # entries in [-1, 1]
    ratio = tf.math.sqrt(tf.reduce_sum(tf.math.square(unit), axis=-1, keepdims=True))
    safe_ratio = tf.where(nonzero, ratio, tf.ones_like(ratio))

    def grad(dy):
        return dy * tf.where(nonzero, unit / safe_ratio, tf.zeros_like(unit))

    return scale * ratio, grad


@gradcheck.layer(input_shape=(None, 4))
class RowL2Norm(keras.layers.Layer):
    """Seed 002, example 3, done right: the L2 norm of each example, shape (batch, 1).

    The article sums over the whole tensor, batch included, so every output depends on every
    example and the output is a scalar, not the (batch, 1) its ``compute_output_shape`` claims
    (buggy_per_layer_activations.L2NormActivation). Reducing over the feature axis only makes
    the layer what it says it is. Not elementwise, but batch-independent.
    """

    def call(self, inputs):
        return row_l2_norm(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)
