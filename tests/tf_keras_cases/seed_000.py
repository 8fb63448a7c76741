"""Seed 000's ParametricReLU, verbatim (shared/seeds/000_*.txt): a raw ``tf.Variable`` attribute.

Written against ``tf.keras``, so it belongs to whichever Keras that is: Keras 2 (tf-keras,
``TF_USE_LEGACY_KERAS=1``) tracks the variable and trains it; Keras 3 does not.
"""

import tensorflow as tf


class ParametricReLU(tf.keras.layers.Layer):
    def __init__(self):
        super(ParametricReLU, self).__init__()
        self.alpha = tf.Variable(initial_value=0.1, trainable=True, name='alpha')

    def call(self, inputs):
        return tf.where(inputs > 0, inputs, self.alpha * inputs)
