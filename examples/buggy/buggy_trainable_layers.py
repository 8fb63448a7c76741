"""Seed 000's trainable-parameter layers as published: every target here must FAIL.

Both layers keep their parameters in raw ``tf.Variable`` attributes. Keras 3 does not track a
raw ``tf.Variable``: ``layer.trainable_weights`` is empty, ``model.fit()`` never updates the
parameter (it only warns), and a saved model does not contain it. Plain TF 2.21 / Keras 3.15:
``ParametricReLU()(x)`` works, ``tape.watched_variables()`` shows ``alpha``, but
``layer.trainable_weights == []``. The variable is also always float32, whatever the layer's
dtype, so in float16, bfloat16 and float64 ``alpha * inputs`` raises a dtype error.

The only change from the article: ``__init__`` forwards ``**kwargs`` (the article's takes none),
so that the layer can be built in each dtype and the tracking bug is what gets reported.
``EXPECTED`` as in ``buggy_custom_gradients``. The correct versions (``add_weight``) are in
``examples/trainable_layers.py``.
"""

import tensorflow as tf

import gradcheck

EXPECTED = {
    # float32: untracked_variable. Other dtypes: the float32 variable meets a float16/bfloat16/
    # float64 input and the call raises; since the same input runs in float32, that is a
    # dtype_mismatch (reported as a plain error if the checker cannot tell).
    "ParametricReLU": ("untracked_variable", "dtype_mismatch", "error"),
    "CustomActivation": ("untracked_variable", "dtype_mismatch", "error"),
}


# BUG: raw tf.Variable, never tracked by Keras 3 (and float32 in every dtype).
# Caught by: untracked_variable (dtype_mismatch in dtypes other than float32).
@gradcheck.layer(elementwise=True, kinks=(0.0,))
class ParametricReLU(tf.keras.layers.Layer):
    def __init__(self, **kwargs):
        super(ParametricReLU, self).__init__(**kwargs)
        self.alpha = tf.Variable(initial_value=0.1, trainable=True, name='alpha')

    def call(self, inputs):
        return tf.where(inputs > 0, inputs, self.alpha * inputs)


# BUG: the same with two parameters: sigmoid(a * x + b), a and b raw tf.Variables.
# Caught by: untracked_variable (dtype_mismatch in dtypes other than float32).
@gradcheck.layer(elementwise=True)
class CustomActivation(tf.keras.layers.Layer):
    def __init__(self, **kwargs):
        super(CustomActivation, self).__init__(**kwargs)
        self.a = tf.Variable(initial_value=1.0, trainable=True, name='a')
        self.b = tf.Variable(initial_value=0.5, trainable=True, name='b')

    def call(self, inputs):
        return tf.sigmoid(self.a * inputs + self.b)
