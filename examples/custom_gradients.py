"""Hand-written activations and custom gradients, done right.

The activations users copy most (Swish/SiLU, Mish, GELU, softplus, ELU), written the way that
survives every dtype and the whole declared domain, plus the custom-gradient examples of the
seed articles 003 ("Does Keras adapt gradients for custom activations?") and 004 ("customize
activation functions for specific layers").

Every target here is correct: ``pytest --gradcheck examples/`` must pass on all of them. Their
broken look-alikes live in ``examples/buggy/buggy_custom_gradients.py``.

Two rules make the difference between these and the buggy versions:

* ``tf.where(c, a, b)`` back-propagates into *both* branches; an ``inf`` in the branch not taken
  becomes ``0 * inf = NaN`` in the gradient. Feed each branch a "safe" input that cannot
  overflow (the double-where trick), or write the gradient yourself with ``tf.custom_gradient``.
* A ``tf.custom_gradient`` must multiply by the upstream gradient ``dy`` and must return the
  gradient in the input's dtype (no hard-coded ``float32``).
"""

import math

import keras
import tensorflow as tf

import gradcheck

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# -- ELU ------------------------------------------------------------------------------------------

@gradcheck.activation(domain=(-1000.0, 1000.0))
def elu_double_where(x):
    """ELU by autodiff, safe for any x: exp only ever sees non-positive inputs.

    ``tf.where(x > 0, x, tf.exp(x) - 1)`` would overflow ``exp`` for large x in the branch not
    taken and turn the gradient into NaN (see buggy_custom_gradients.elu_where_exp). Clamping
    the input of that branch first (the inner where) keeps both branches finite.
    """
    positive = x > 0
    safe_x = tf.where(positive, tf.zeros_like(x), x)  # inner where: exp(0) for x > 0
    return tf.where(positive, x, tf.math.expm1(safe_x))


@gradcheck.activation(domain=(-1000.0, 1000.0))
@tf.custom_gradient
def custom_elu(x):
    """ELU with a hand-written gradient: d/dx = 1 for x > 0, exp(x) otherwise.

    exp is taken of min(x, 0), so it never overflows; and the derivative is exp(x) itself, not
    ``elu(x) + 1``, which cancels to 0 for very negative x.
    """
    positive = x > 0
    safe_x = tf.minimum(x, tf.zeros_like(x))
    y = tf.where(positive, x, tf.math.expm1(safe_x))

    def grad(dy):
        return dy * tf.where(positive, tf.ones_like(x), tf.math.exp(safe_x))

    return y, grad


@gradcheck.activation(domain=(-1000.0, 1000.0))
@tf.custom_gradient
def custom_elu_with_grad(x):
    """Seed 004, example 3, with its one bug fixed: ``tf.ones_like(x)`` instead of ``1.0``.

    As published, ``tf.where(x > 0, 1.0, tf.exp(x))`` works eagerly, but under ``tf.function``
    (which is how ``model.fit`` runs it) the Python float becomes a float32 constant and the
    where fails for float16 (mixed precision), bfloat16 and float64 inputs
    (buggy_custom_gradients.custom_elu_with_grad). ``tf.exp(x)`` overflowing to inf for large x
    is harmless here: a custom gradient is not differentiated again, so where just picks 1.
    """
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(x), tf.exp(x))

    return y, grad


# -- sin (seed 003) ----------------------------------------------------------------------------

@gradcheck.activation
@tf.custom_gradient
def sin_with_custom_gradient(x):
    """Seed 003, example 2: sin with its derivative written by hand (correct)."""
    y = tf.math.sin(x)

    def grad(dy):
        return dy * tf.math.cos(x)

    return y, grad


@gradcheck.layer(elementwise=True)
class SinLayer(keras.layers.Layer):
    """Seed 003, example 1: a Layer whose call is ``tf.math.sin`` and nothing else.

    The article claims this "will likely fail during training" because no derivative is
    defined. That claim is wrong: autodiff differentiates ``tf.math.sin`` like any other op,
    and gradcheck confirms it. A custom gradient is only needed when autodiff's is unstable or
    too slow, never merely because the activation is "custom".
    """

    def call(self, inputs):
        return tf.math.sin(inputs)


# -- Swish / SiLU ------------------------------------------------------------------------------

@gradcheck.activation(domain=(-100.0, 100.0))
def swish(x):
    """Swish/SiLU, x * sigmoid(x), by autodiff (seed 004, example 1)."""
    return x * tf.math.sigmoid(x)


@gradcheck.activation(domain=(-100.0, 100.0))
@tf.custom_gradient
def swish_custom_gradient(x):
    """Swish with its derivative by hand: s + x s (1 - s) = s + y (1 - s), with s = sigmoid(x)."""
    s = tf.math.sigmoid(x)
    y = x * s

    def grad(dy):
        return dy * (s + y * (1 - s))

    return y, grad


# -- Mish ------------------------------------------------------------------------------------

@gradcheck.activation(domain=(-100.0, 100.0))
def mish(x):
    """Mish, x * tanh(softplus(x)), by autodiff. ``tf.nn.softplus`` is overflow-safe."""
    return x * tf.math.tanh(tf.nn.softplus(x))


@gradcheck.activation(domain=(-100.0, 100.0))
@tf.custom_gradient
def mish_custom_gradient(x):
    """Mish with its derivative by hand: tanh(sp) + x * (1 - tanh(sp)^2) * sigmoid(x)."""
    t = tf.math.tanh(tf.nn.softplus(x))
    y = x * t

    def grad(dy):
        return dy * (t + x * (1 - tf.math.square(t)) * tf.math.sigmoid(x))

    return y, grad


# -- GELU --------------------------------------------------------------------------------------

@gradcheck.activation
def gelu_exact(x):
    """GELU, x * Phi(x), with the Gaussian CDF written through erf."""
    return 0.5 * x * (1.0 + tf.math.erf(x / _SQRT_2))


@gradcheck.activation
def gelu_tanh(x):
    """GELU's tanh approximation (Hendrycks & Gimpel), as in BERT and GPT-2.

    Beyond |x| = 10 the tanh is exactly +-1 in every dtype (its argument exceeds 43), so the
    cubic is taken of x clipped there: written plainly, x * x * x overflows (float16 from
    |x| = 40) and the gradient is NaN from 0 * inf, as in keras' own gelu.
    """
    clipped = tf.clip_by_value(x, -10.0, 10.0)
    inner = _SQRT_2_OVER_PI * (clipped + 0.044715 * clipped * clipped * clipped)
    return 0.5 * x * (1.0 + tf.math.tanh(inner))


# -- softplus ----------------------------------------------------------------------------------

@gradcheck.activation(domain=(-1000.0, 1000.0))
def softplus_double_where(x):
    """log(1 + exp(x)) without overflow, by autodiff, correct at every x including 0.

    For x > 0 use x + log1p(exp(-x)); otherwise log1p(exp(x)). Each branch gets a safe input
    (the double-where trick), so neither exp overflows in the branch not taken. The popular
    one-liner ``relu(x) + log1p(exp(-|x|))`` has the right values but a wrong gradient at
    exactly x = 0 (see buggy_custom_gradients.softplus_relu_abs).
    """
    positive = x > 0
    zeros = tf.zeros_like(x)
    x_pos = tf.where(positive, x, zeros)
    x_neg = tf.where(positive, zeros, x)
    return tf.where(positive,
                    x_pos + tf.math.log1p(tf.math.exp(-x_pos)),
                    tf.math.log1p(tf.math.exp(x_neg)))


@gradcheck.activation(domain=(-1000.0, 1000.0))
@tf.custom_gradient
def softplus_custom_gradient(x):
    """The stable one-liner for the value, and the exact derivative, sigmoid(x), by hand."""
    y = tf.nn.relu(x) + tf.math.log1p(tf.math.exp(-tf.math.abs(x)))

    def grad(dy):
        return dy * tf.math.sigmoid(x)

    return y, grad
