"""Activations with extra tensor parameters: f(x, a, b, ...).

From seed articles 000 (``my_activation(x, a, b)`` with ``tf.custom_gradient``) and 001
("custom Keras activation with an additional parameter"). Each extra parameter is declared
with ``args``: ``name -> (low, high)`` for a scalar, ``name -> (shape, low, high)`` for a
tensor; gradcheck draws it in the checked dtype and checks its gradient too.

All targets here are correct. Seed 001's "backward pass" functions are a curiosity worth
knowing: they compute the derivative but are never wired into the gradient (the Lambda layer
uses only ``[0]``, the forward value). That is harmless: autodiff differentiates the forward
pass by itself, and gradcheck confirms the result. They are kept below, as published, with
that comment. The broken variants are in ``examples/buggy/buggy_extra_parameter_activations.py``.
"""

import tensorflow as tf
import gradcheck


def _sum_to_shape(grad, like):
    """Sum ``grad`` over the axes along which ``like`` was broadcast, and give it like's shape.

    The gradient of a broadcast parameter is the sum of the upstream gradient over the
    broadcast axes; returning the unreduced tensor is a shape bug (the tape does not complain).
    """
    _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(grad), s1=tf.shape(like))
    return tf.reshape(tf.reduce_sum(grad, axis=axes), tf.shape(like))


# -- seed 000, example 3 ----------------------------------------------------------------------

@gradcheck.activation(args={"a": (0.5, 2.0), "b": (-1.0, 1.0)})
@tf.custom_gradient
def my_activation(x, a, b):
    """sin(a x + b) with hand-written gradients for x, a and b (seed 000, as published).

    Correct for scalar a and b: their gradients are summed over every element of x, which is
    exactly the reduction a scalar needs.
    """
    y = tf.sin(a * x + b)

    def grad(dy):
        da = tf.reduce_sum(dy * x * tf.cos(a * x + b))
        db = tf.reduce_sum(dy * tf.cos(a * x + b))
        dx = dy * a * tf.cos(a * x + b)
        return dx, da, db

    return y, grad


# -- seed 001, example 1: scaled ReLU ----------------------------------------------------------

def scaled_relu(x, alpha):
    """Seed 001's scaled ReLU, as published: returns (forward value, "backward" value)."""
    alpha = tf.cast(alpha, dtype=x.dtype)
    alpha = tf.broadcast_to(alpha, tf.shape(x))

    def scaled_relu_forward(x):
        return tf.keras.activations.relu(x) * alpha

    def scaled_relu_backward(x):
        return tf.cast(tf.greater(x, 0), dtype=x.dtype) * alpha

    return scaled_relu_forward(x), scaled_relu_backward(x)


@gradcheck.activation(args={"alpha": (0.1, 2.0)}, kinks=(0.0,))
def scaled_relu_as_used(x, alpha):
    """What seed 001's ``Lambda(lambda x: scaled_relu(x, alpha)[0])`` computes.

    Harmless: ``scaled_relu_backward`` is defined but never wired into the gradient; only the
    forward value is used, and autodiff differentiates it correctly (with respect to alpha as
    well). The derivative function is dead code, not a bug.
    """
    return scaled_relu(x, alpha)[0]


@gradcheck.activation(args={"alpha": (0.1, 2.0)}, kinks=(0.0,))
@tf.custom_gradient
def scaled_relu_wired(x, alpha):
    """The same scaled ReLU with seed 001's derivative actually wired in, via custom_gradient.

    Note the second gradient: alpha multiplies every element, so its gradient is the sum over
    the broadcast axes (``_sum_to_shape``), not an elementwise tensor.
    """
    alpha = tf.cast(alpha, dtype=x.dtype)
    positive = tf.cast(tf.greater(x, 0), dtype=x.dtype)
    relu = tf.nn.relu(x)

    def grad(dy):
        return dy * positive * alpha, _sum_to_shape(dy * relu, alpha)

    return relu * alpha, grad


# -- seed 001, example 2: parameterized sigmoid -------------------------------------------------

def parameterized_sigmoid(x, k):
    """Seed 001's parameterized sigmoid, as published: returns (forward, "backward")."""
    k = tf.cast(k, dtype=x.dtype)
    k = tf.broadcast_to(k, tf.shape(x))

    def parameterized_sigmoid_forward(x):
        return tf.math.sigmoid(k * x)

    def parameterized_sigmoid_backward(x):
        s = tf.math.sigmoid(k * x)
        return k * s * (1 - s)

    return parameterized_sigmoid_forward(x), parameterized_sigmoid_backward(x)


@gradcheck.activation(args={"k": (0.1, 5.0)})
def parameterized_sigmoid_as_used(x, k):
    """What ``Lambda(lambda x: parameterized_sigmoid(x, k)[0])`` computes (harmless, as above)."""
    return parameterized_sigmoid(x, k)[0]


# -- seed 001, example 3, done right: a per-feature parameter -----------------------------------

@gradcheck.activation(input_shape=(None, 4), args={"param": ((4,), -0.5, 1.0)})
def feature_scaled_tanh(x, param):
    """tanh(x + x * param) with one parameter per feature (the last axis).

    Seed 001 reshapes its parameter to (3, 1), which broadcasts along the *batch* axis and
    breaks for every batch size but 1 and 3 (buggy_extra_parameter_activations). A parameter
    of shape (features,) broadcasts along the last axis, for any batch size.
    """
    param = tf.cast(param, dtype=x.dtype)
    return tf.math.tanh(x + x * param)


@gradcheck.activation(input_shape=(None, 4), args={"param": ((4,), -0.5, 1.0)})
@tf.custom_gradient
def feature_scaled_tanh_wired(x, param):
    """The same, with seed 001's derivative (1 - tanh^2)(1 + param) wired in for x, and the
    parameter's gradient summed over the batch axis."""
    t = tf.math.tanh(x + x * param)

    def grad(dy):
        local = dy * (1 - tf.math.square(t))
        return local * (1 + param), _sum_to_shape(local * x, param)

    return t, grad


# -- extra-parameter versions of common activations --------------------------------------------

@gradcheck.activation(domain=(-100.0, 100.0), args={"beta": (0.1, 3.0)})
def swish_beta(x, beta):
    """Swish with a slope parameter: x * sigmoid(beta * x) (beta = 1 is SiLU)."""
    return x * tf.math.sigmoid(beta * x)


@gradcheck.activation(args={"negative_slope": (0.0, 1.0)}, kinks=(0.0,))
def leaky_relu_param(x, negative_slope):
    """Leaky ReLU whose slope is a tensor: x for x > 0, negative_slope * x otherwise.

    ``keras.activations.relu(x, negative_slope=...)`` accepts only a Python float (it calls
    ``tf.nn.leaky_relu``, which raises TypeError for a tensor slope), so a slope that is an
    input or a trainable tensor needs its own one-liner.
    """
    return tf.where(x > 0, x, negative_slope * x)
