"""tf-keras (Keras 2) layers, declared for gradcheck: imported only under TF_USE_LEGACY_KERAS=1,
where ``tf.keras`` is tf-keras (cases_tf_keras.py and the plugin case use them)."""

import tensorflow as tf

import gradcheck


@gradcheck.layer(input_shape=(None, 3))
class PReLU(tf.keras.layers.Layer):
    """max(0, x) + alpha min(0, x), correct in every dtype (the zero is made in x's dtype)."""

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],),
                                     initializer=tf.keras.initializers.Constant(0.25))

    def call(self, x):
        zero = tf.zeros_like(x)
        return tf.maximum(zero, x) + self.alpha * tf.minimum(zero, x)


class PReLUFloat32Zero(PReLU):
    """The same with ``tf.maximum(0.0, x)``: in a graph the leading 0.0 is a float32 constant,
    so it runs eagerly in every dtype but traced (model.fit) in float32 only."""

    def call(self, x):
        return tf.maximum(0.0, x) + self.alpha * tf.minimum(0.0, x)


@tf.custom_gradient
def _prelu_wrong_alpha_gradient(x, alpha):
    def grad(dy):
        dx = dy * tf.where(x > 0, tf.ones_like(x), alpha * tf.ones_like(x))
        dalpha = tf.reduce_sum(dy * tf.maximum(tf.zeros_like(x), x), axis=0)  # bug: min
        return dx, dalpha

    zero = tf.zeros_like(x)
    return tf.maximum(zero, x) + alpha * tf.minimum(zero, x), grad


@gradcheck.layer(input_shape=(None, 3))
class PReLUWrongAlphaGradient(PReLU):
    """The PReLU with a hand-written gradient whose parameter part is wrong."""

    def call(self, x):
        # read outside the custom gradient: the tape carries its gradient to the variable
        return _prelu_wrong_alpha_gradient(x, tf.convert_to_tensor(self.alpha))


@gradcheck.layer(input_shape=(None, 4), dtypes=("float32", "float64"))
def dense():
    """A factory: built with tf-keras' floatx and global policy set to the checked dtype."""
    return tf.keras.layers.Dense(2, activation="tanh")
