"""Surrogate gradients with real bugs: every target here must FAIL, ``gradient=`` or not.

``gradient=`` declares what a surrogate should be; it does not excuse a grad fn that ignores
the upstream ``dy``, or one that returns something else than declared. ``EXPECTED`` as in
``buggy_custom_gradients.py``; the correct versions are in ``examples/surrogate_gradients.py``.
"""

import tensorflow as tf

import gradcheck

EXPECTED = {
    "spike_ignores_dy": "gradient_mismatch",
    "reversal_forgets_the_sign": "gradient_mismatch",
}


def fast_sigmoid(x, dy):
    return dy / tf.square(1 + 10 * tf.abs(x))


# BUG: the surrogate derivative is returned as the gradient, without the upstream dy: seen in
# a public spiking-network repository, where the gradient was 0.24 at a membrane potential of
# 0.1 whatever the sign of dy. Training then pushes every weight the same way.
# Caught by: gradient_mismatch (against the declaration, and: not linear in dy).
@gradcheck.activation(domain=(-3.0, 3.0), gradient=fast_sigmoid)
@tf.custom_gradient
def spike_ignores_dy(x):
    def grad(dy):
        return 1 / tf.square(1 + 10 * tf.abs(x))  # should be dy / ...
    return tf.cast(x > 0, x.dtype), grad


# BUG: a gradient reversal whose grad fn passes dy through: the "adversarial" branch then
# helps the domain classifier instead of fooling it.
# Caught by: gradient_mismatch against the declared -dy.
@gradcheck.activation(gradient=lambda x, dy: -dy)
@tf.custom_gradient
def reversal_forgets_the_sign(x):
    return tf.identity(x), lambda dy: dy  # should be -dy
