"""Training mode: layers whose call accepts ``training`` are checked with both values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck

X = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)


@tf.custom_gradient
def _half_gradient(x):
    return tf.tanh(x), lambda dy: 0.5 * dy * (1 - tf.tanh(x) ** 2)  # bug: 0.5 *


class TrainingOnlyBug(keras.layers.Layer):
    """Correct at inference; in training the gradient is halved."""

    def call(self, inputs, training=False):
        return _half_gradient(inputs) if training else tf.tanh(inputs)


class NoDefaultTraining(keras.layers.Layer):
    def call(self, inputs, training):
        return tf.tanh(inputs) * (1.0 if training else 1.0)


def test_a_bug_in_the_training_path_alone_is_found_and_says_training_true():
    assert gradcheck.check(TrainingOnlyBug(), X, training=False, modes=()).ok
    report = gradcheck.check(TrainingOnlyBug(), X, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "[training=True]" in report.findings[0].message
    assert report.meta["training"] == {"training=False": "checked fully",
                                       "training=True": "checked fully"}
    fuzzed = gradcheck.fuzz(TrainingOnlyBug, dtype="float32", max_examples=10, modes=())
    assert fuzzed.kinds == ["gradient_mismatch"]
    again = eval(fuzzed.reproducer, {"gradcheck": gradcheck, "np": np, "tf": tf,
                                     "TrainingOnlyBug": TrainingOnlyBug})
    assert again.kinds == ["gradient_mismatch"]


def test_deterministic_training_layers_are_checked_fully_and_pass():
    report = gradcheck.check(keras.layers.BatchNormalization(), X * 3, elementwise=False)
    assert report.ok, str(report)
    assert report.meta["training"]["training=True"] == "checked fully"


def test_stochastic_training_layers_are_checked_with_their_draws_held_and_say_so():
    report = gradcheck.check(keras.layers.Dropout(0.5), X, elementwise=True)
    assert report.ok, str(report)
    assert report.meta["training"]["training=False"] == "checked fully"
    assert report.meta["training"]["training=True"].startswith(
        "checked fully with its random draws held fixed")


class HandDropout(keras.layers.Layer):
    """Dropout written by hand with a custom gradient; ``bug``: it forgets 1 / (1 - rate)."""

    def __init__(self, bug=False, **kwargs):
        super().__init__(**kwargs)
        self.bug, self.seed_generator = bug, keras.random.SeedGenerator(1)

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs, training=False):
        x = inputs * self.w
        if not training:
            return x
        keep = tf.cast(keras.random.uniform(tf.shape(x), seed=self.seed_generator) >= 0.5,
                       x.dtype)

        @tf.custom_gradient
        def drop(t):
            return t * keep * 2.0, lambda dy: dy * keep * (1.0 if self.bug else 2.0)
        return drop(x)


def test_a_bug_in_a_stochastic_training_path_is_found_and_replays_the_same():
    assert gradcheck.check(HandDropout(), X, modes=()).ok
    report = gradcheck.check(HandDropout(bug=True), X, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "[training=True]" in report.findings[0].message
    fuzzed = gradcheck.fuzz(HandDropout, dtype="float32", max_examples=20,
                            init={"bug": True}, modes=())
    assert fuzzed.kinds == ["gradient_mismatch"], str(fuzzed)
    namespace = {"gradcheck": gradcheck, "np": np, "tf": tf, "HandDropout": HandDropout}
    setup, call = fuzzed.reproducer.rsplit("; ", 1)  # x = ...; layer = ...; check(layer, x)
    exec(setup, namespace)
    assert eval(call, namespace).kinds == ["gradient_mismatch"]


@pytest.mark.parametrize("value", [0.0, 0.75])
def test_a_dropout_whose_calls_repeat_by_chance_is_not_read_as_nondeterminism(value):
    # One entry's mask repeats with probability 0.7^2 + 0.3^2 per call (0.25 over four), and
    # at 0 the output hides it: four calls agreeing said "deterministic", and the check's own
    # probe then saw a call differ: a correct Dropout read nondeterministic.
    one = np.full((1, 1), value, np.float32)
    for _ in range(20):
        report = gradcheck.check(keras.layers.Dropout(0.3), one, modes=())
        assert report.ok, str(report)


def test_randomness_that_cannot_be_held_is_checked_for_structure_only_and_says_not_checked():
    class NumpyNoise(keras.layers.Layer):
        def call(self, inputs, training=False):
            if not training:
                return inputs
            return inputs * np.random.uniform(0.5, 1.5, size=inputs.shape).astype(np.float32)

    report = gradcheck.check(NumpyNoise(), X, elementwise=True, modes=())
    assert report.ok and report.meta["training"]["training=True"].startswith("structure only")
    assert "not checked: training=True: no gradient compared" in str(report)


def test_structure_is_still_checked_in_a_stochastic_training_path():
    class NoisyCast(keras.layers.Layer):
        def call(self, inputs, training=False):
            if not training:
                return inputs
            noise = tf.random.uniform(tf.shape(inputs), dtype=inputs.dtype)
            return tf.cast(inputs * noise, tf.float16)  # bug: a hard-coded cast

    report = gradcheck.check(NoisyCast(), X, elementwise=True, modes=())
    assert report.kinds == ["dtype_mismatch"], str(report)
    assert "[training=True]" in report.findings[0].message


def test_a_training_argument_without_default_needs_no_args_entry():
    gradcheck.layer(NoDefaultTraining)
    assert gradcheck.check(NoDefaultTraining(), X, elementwise=False, modes=()).ok


def test_args_naming_training_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match="args must not name 'training': Keras passes it"):
        gradcheck.layer(args={"training": (-1.0, 1.0)})(NoDefaultTraining)


def test_training_is_refused_for_targets_without_it():
    with pytest.raises(TypeError, match="training=True is for a Keras layer"):
        gradcheck.check(tf.tanh, X, training=True)


def test_layers_that_merely_accept_training_are_not_checked_twice():
    assert "training" in keras.layers.Dense(3).call.__code__.co_varnames  # Keras 3's Dense
    report = gradcheck.check(keras.layers.Dense(3), X, elementwise=False)
    assert report.ok, str(report)
    assert report.meta["training"]["training=True"].startswith("same output and gradient")


class LogOnlyInTraining(keras.layers.Layer):
    """NaN in training mode at negative inputs, where the float64 reference is NaN too."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs, training=False):
        return tf.math.log(inputs) * self.w if training else inputs * self.w


def test_what_the_training_run_could_not_compare_is_said_in_the_merged_report():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)
    report = gradcheck.check(LogOnlyInTraining(), x, modes=())
    assert report.ok and report.meta["training"]["training=True"] == "checked fully"
    assert [note.split(":")[0] for note in report.meta["skipped"]] == ["training=True"]
    assert "not checked: training=True: no gradient compared" in str(report)
    alone = gradcheck.check(LogOnlyInTraining(), x, training=True, modes=())
    assert alone.meta["skipped"][0].startswith("no gradient compared")
