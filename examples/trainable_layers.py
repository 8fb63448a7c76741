"""Activation layers with trainable parameters, written so that Keras 3 trains them.

Seed article 000 ("custom activation function with trainable parameters") keeps each parameter
in a raw ``tf.Variable`` attribute. Keras 3 does not track those: ``layer.trainable_weights`` is
empty, ``model.fit()`` never updates them, and a saved model loses them (see
``examples/buggy/buggy_trainable_layers.py``). The fix is one call: create every parameter with
``self.add_weight`` (in ``build`` when its shape depends on the input), which also creates it
in the layer's dtype, so the layer works in float16, bfloat16 and float64 as well.

gradcheck checks these layers' gradients with respect to the input *and* every trainable
weight, and that every variable the call touches is one Keras knows about.
"""

import keras
import tensorflow as tf

import gradcheck


@gradcheck.layer(elementwise=True, kinks=(0.0,))
class ParametricReLU(keras.layers.Layer):
    """PReLU with one scalar trainable slope: x for x > 0, alpha * x otherwise.

    Seed 000, example 1, done right: ``add_weight`` instead of ``tf.Variable``. ReLU-like
    functions are not differentiable at 0, hence ``kinks=(0.0,)``: there gradcheck accepts any
    value between the one-sided derivatives (alpha and 1).
    """

    def __init__(self, alpha_initializer=0.1, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha", shape=(),
            initializer=keras.initializers.Constant(self.alpha_initializer), trainable=True)

    def call(self, inputs):
        return tf.where(inputs > 0, inputs, self.alpha * inputs)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer}


@gradcheck.layer(elementwise=True, kinks=(0.0,), input_shape=(None, 4),
                 init={"alpha_initializer": 0.25})
class PerFeaturePReLU(keras.layers.Layer):
    """PReLU with one trainable slope per feature (the last axis), like keras.layers.PReLU.

    The slope's shape comes from the input, so it is created in ``build``. The declaration
    fixes the feature axis to 4 (``input_shape=(None, 4)``: any batch size, 4 features), which
    is what a layer with a per-feature weight needs; ``init`` passes constructor arguments.
    The initial slopes differ per feature, so a gradient mixed up between features shows.
    """

    def __init__(self, alpha_initializer=0.25, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer

    def build(self, input_shape):
        features = input_shape[-1]
        start = float(self.alpha_initializer)
        slopes = [start * (1 + i) / features for i in range(features)]
        self.alpha = self.add_weight(
            name="alpha", shape=(features,),
            initializer=keras.initializers.Constant(slopes), trainable=True)

    def call(self, inputs):
        return tf.where(inputs > 0, inputs, self.alpha * inputs)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer}


@gradcheck.layer(elementwise=True, domain=(-20.0, 20.0))
class TwoParameterSigmoid(keras.layers.Layer):
    """sigmoid(a * x + b) with trainable a and b: seed 000, example 2, done right."""

    def __init__(self, a_initializer=1.0, b_initializer=0.5, **kwargs):
        super().__init__(**kwargs)
        self.a_initializer = a_initializer
        self.b_initializer = b_initializer

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(),
                                 initializer=keras.initializers.Constant(self.a_initializer))
        self.b = self.add_weight(name="b", shape=(),
                                 initializer=keras.initializers.Constant(self.b_initializer))

    def call(self, inputs):
        return tf.math.sigmoid(self.a * inputs + self.b)

    def get_config(self):
        return {**super().get_config(), "a_initializer": self.a_initializer,
                "b_initializer": self.b_initializer}


@gradcheck.layer(input_shape=(None, 3))
def dense_with_prelu():
    """The model of seed 000 in miniature: Dense followed by the PReLU above.

    A factory (a zero-argument function returning a layer) lets gradcheck check a composition:
    gradients with respect to the input, the kernel, the bias and alpha. It is not elementwise
    (Dense mixes features) but rows of the batch stay independent. No ``kinks``: the kink sits
    where the *Dense output* is 0, not at any fixed input value, so it is left to gradcheck's
    numerical kink detection.
    """
    return keras.Sequential([
        keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=0),
                           bias_initializer=keras.initializers.Constant(0.1)),
        ParametricReLU(),
    ])
