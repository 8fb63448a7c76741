"""Every printed reproducer runs as printed and finds the same thing again."""

import keras
import numpy as np
import tensorflow as tf

import gradcheck

X = np.array([[-2.0, -0.5, 0.7], [1.5, 0.3, -1.1]])


@tf.custom_gradient
def forgets_dy(x):
    return tf.nn.softplus(x), lambda dy: tf.sigmoid(x)


@tf.custom_gradient
def _halved(x):
    return tf.tanh(x), lambda dy: 0.5 * dy * (1 - tf.tanh(x) ** 2)


class HalvedTanh(keras.layers.Layer):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        return _halved(inputs * self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def halved_factory():
    return HalvedTanh(scale=2.0)


def rerun(reproducer):
    """Run the reproducer as a user pastes it into a module that defines the targets."""
    namespace = {"gradcheck": gradcheck, "np": np, "tf": tf, "keras": keras,
                 **{k: v for k, v in globals().items() if not k.startswith("__")}}
    policy = keras.config.dtype_policy()  # a factory's reproducer sets Keras' policy
    try:
        exec(f"report = {reproducer}" if ";" not in reproducer else
             reproducer.replace("; gradcheck.check(", "; report = gradcheck.check(", 1),
             namespace)
    finally:
        keras.config.set_dtype_policy(policy)
    return namespace["report"]


def same_again(report):
    assert not report.ok and report.reproducer
    again = rerun(report.reproducer)
    assert again.kinds == report.kinds, (report.reproducer, str(again))
    assert again.dtype == report.dtype
    return again


def test_check_of_a_layer_instance_builds_the_layer_in_its_dtype():
    report = gradcheck.check(HalvedTanh(scale=2.0, dtype="float16"), X.astype(np.float16),
                             elementwise=True, modes=())
    assert report.reproducer.startswith("gradcheck.check(HalvedTanh(scale=2.0, "
                                        "dtype='float16'), tf.constant(")
    same_again(report)


def test_check_of_a_function_with_options_and_a_declared_gradient():
    same_again(gradcheck.check(forgets_dy, X.astype(np.float32), seed=3, modes=()))
    report = gradcheck.check(forgets_dy, tf.constant(X, tf.bfloat16),
                             gradient=lambda x, dy: dy * tf.sigmoid(x))
    assert "gradient=(lambda x, dy: dy * tf.sigmoid(x))" in report.reproducer
    same_again(report)


def test_check_of_keras_layers_and_lambdas_names_them_through_keras():
    report = gradcheck.check(keras.layers.Lambda(forgets_dy), X.astype(np.float32))
    assert report.reproducer.startswith("gradcheck.check(keras.layers.Lambda(forgets_dy)")
    same_again(report)


def test_fuzzed_reproducers_of_classes_factories_and_instances_keep_the_dtype():
    cls = gradcheck.layer(elementwise=True, init={"scale": 2.0}, domain=(-3, 3))(HalvedTanh)
    gradcheck.layer(elementwise=True, domain=(-3, 3))(halved_factory)
    for target in (cls, halved_factory, HalvedTanh(scale=2.0, dtype="float64")):
        dtypes = ("float64",) if isinstance(target, keras.layers.Layer) else ("float16",
                                                                              "bfloat16")
        for dtype in dtypes:
            for sweep in (True, False):  # the sweep's reproducer is the core's; Hypothesis's
                report = gradcheck.fuzz(target, dtype=dtype, max_examples=5, elementwise=True,
                                        domain=(-3, 3), modes=(), sweep=sweep)
                assert report.kinds == ["gradient_mismatch"], str(report)
                again = same_again(report)
                assert again.dtype == dtype
                if target is halved_factory and not sweep:
                    assert report.reproducer.startswith(
                        f"keras.config.set_dtype_policy('{dtype}'); "
                        "gradcheck.check(halved_factory(),")
                elif target is halved_factory:
                    assert report.reproducer.startswith(
                        f"gradcheck.check(HalvedTanh(scale=2.0, dtype='{dtype}'),")


def test_a_fuzzed_activation_with_a_declared_gradient():
    report = gradcheck.fuzz(forgets_dy, dtype="float32", max_examples=5,
                            gradient=lambda x, dy: dy * tf.sigmoid(x))
    assert "gradient=(lambda x, dy: dy * tf.sigmoid(x))" in report.reproducer
    same_again(report)


def test_a_subnormal_input_is_printed_as_itself_not_as_zero():
    import tensorflow as tf

    @tf.custom_gradient
    def wrong_at_tiny(x):
        return tf.sin(x), lambda dy: dy * 2.0 * tf.cos(x)

    x = tf.constant([5e-39, 1.0], tf.float32)  # 5e-39: a float32 subnormal
    report = gradcheck.check(wrong_at_tiny, x, modes=())
    assert not report.ok
    first = float(report.reproducer.split("tf.constant([", 1)[1].split(",", 1)[0])
    assert 4e-39 < first < 6e-39, report.reproducer


@tf.custom_gradient
def _gated(x, w):
    def grad(dy):
        d = 1 - tf.tanh(x * w) ** 2
        return tf.where(x * w > 1.0, dy * d, dy * d * w), tf.reduce_sum(dy * d * x, axis=0)
    return tf.tanh(x * w), grad


class GatedTanh(keras.layers.Layer):
    """tanh(w x), a weight per feature; the gradient for x forgets w where w x > 1, which a
    weight of 1 (the initial one) never shows."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):
        return _gated(inputs, tf.convert_to_tensor(self.w))


def test_check_of_a_layer_instance_gives_it_the_weights_it_was_checked_with():
    layer, x = GatedTanh(), (0.4 * X).astype(np.float32)
    layer.build(x.shape)
    assert gradcheck.check(layer, x, modes=()).ok  # as a fresh layer: w = 1
    layer.w.assign([3.0, -2.0, 4.0])
    report = gradcheck.check(layer, x, modes=())
    assert "layer.set_weights([np.array([3.0, -2.0, 4.0])])" in report.reproducer
    same_again(report)


def test_a_fuzzed_instance_is_given_its_own_weights_where_none_were_moved():
    layer = GatedTanh()
    layer.build((None, 3))
    layer.w.assign([3.0, -2.0, 4.0])
    report = gradcheck.fuzz(layer, dtype="float32", max_examples=30, modes=(),
                            hypothesis_seed=0)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "layer.set_weights(" in report.reproducer
    same_again(report)
