"""Layers under keras.mixed_precision policies: variables float32, output in the compute dtype,
gradients finite and close to the float32 layer's."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from shared_targets import ComputeDtypeWeight  # noqa: E402

import gradcheck  # noqa: E402

POLICIES = ("mixed_float16", "mixed_bfloat16")
RNG = np.random.default_rng(0)
X = tf.constant(RNG.normal(size=(4, 6)), tf.float32)
LARGE = tf.constant(RNG.normal(size=(4, 6)) * 300, tf.float32)  # squares beyond float16's max


def check(layer, x, **options):
    layer(x)
    return gradcheck.check(layer, x, elementwise=False, policies=POLICIES, modes=(), **options)


def for_policy(report, policy):
    return [f for f in report.findings if f.details.get("policy") == policy]


# ---------------------------------------------------------------------------- buggy layers


class CastsToVariableDtype(keras.layers.Layer):
    """Casts with self.dtype, the *variable* dtype: the output is float32 under a mixed policy."""

    def build(self, input_shape):
        self.k = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="k")

    def call(self, x):
        return tf.cast(x, self.dtype) * self.k


class NaiveRMSNorm(keras.layers.Layer):
    """mean(x^2) in the compute dtype: beyond 65504 in float16, the output collapses to 0."""

    def build(self, input_shape):
        self.g = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="g")

    def call(self, x):
        return x * tf.math.rsqrt(tf.reduce_mean(x * x, axis=-1, keepdims=True) + 1e-6) * self.g


class SafeRMSNorm(NaiveRMSNorm):
    """The fix: the statistics in float32, the result back in the compute dtype."""

    def call(self, x):
        x32 = tf.cast(x, "float32")
        y = x32 * tf.math.rsqrt(tf.reduce_mean(x32 * x32, axis=-1, keepdims=True) + 1e-6)
        return tf.cast(y, self.compute_dtype) * tf.cast(self.g, self.compute_dtype)


class LogSumExpPool(keras.layers.Layer):
    """A stable forward (reduce_logsumexp), a naive softmax in its custom gradient: exp(x)
    overflows float16 beyond x = 11, inf / inf is NaN."""

    def call(self, x):
        @tf.custom_gradient
        def lse(x):
            def grad(dy):
                e = tf.exp(x)
                return dy * e / tf.reduce_sum(e, axis=-1, keepdims=True)

            return tf.reduce_logsumexp(x, axis=-1, keepdims=True), grad

        return lse(x)


class Float32Constant(keras.layers.Layer):
    """Multiplies by a float32 constant: fails outright on a float16 tensor."""

    def call(self, x):
        return x * tf.constant(2.0)


def test_a_variable_in_the_compute_dtype_is_a_dtype_mismatch():
    report = check(ComputeDtypeWeight(), X)
    assert set(report.kinds) == {"dtype_mismatch"}
    for policy, dtype in zip(POLICIES, ("float16", "bfloat16")):
        found = for_policy(report, policy)
        assert found and found[0].details["variable"] == "k"
        assert f"under policy {policy}" in found[0].message and dtype in found[0].message


def test_a_cast_to_self_dtype_is_a_dtype_mismatch_of_the_output():
    report = check(CastsToVariableDtype(), X)
    assert report.kinds == ["dtype_mismatch"]
    assert all("output dtype is float32" in f.message and "self.compute_dtype" in f.message
               for f in report.findings)
    assert {f.details["policy"] for f in report.findings} == set(POLICIES)


def test_float16_overflow_in_a_layer_is_found_under_mixed_float16_only():
    report = check(NaiveRMSNorm(), LARGE)
    assert report.findings and not for_policy(report, "mixed_bfloat16"), str(report)
    assert for_policy(report, "mixed_float16")[0].kind == "dtype_mismatch"
    assert "overflow" in report.findings[0].message
    assert check(SafeRMSNorm(), LARGE).ok
    assert check(NaiveRMSNorm(), X).ok  # small inputs: fine


def test_overflow_in_a_custom_gradient_is_a_nonfinite_gradient():
    x = tf.constant(RNG.normal(size=(4, 6)) * 4 + 20, tf.float32)
    assert gradcheck.check(LogSumExpPool(), x, elementwise=False, modes=()).ok
    report = check(LogSumExpPool(), x)
    assert report.kinds == ["nonfinite_gradient"], str(report)
    assert [f.details["policy"] for f in report.findings] == ["mixed_float16"]


def test_a_layer_that_fails_under_the_policy_is_an_error_and_the_policy_is_restored():
    before = keras.config.dtype_policy().name
    report = check(Float32Constant(), X)
    assert report.kinds == ["error"]
    assert "under policy mixed_float16" in report.findings[0].message
    assert keras.config.dtype_policy().name == before


# ---------------------------------------------------------------------------- correct layers


@pytest.mark.parametrize("make", [lambda: keras.layers.Dense(5, activation="tanh"),
                                  lambda: keras.layers.Dense(4, activation="relu"),
                                  lambda: keras.layers.LayerNormalization(),
                                  lambda: keras.layers.BatchNormalization(),
                                  SafeRMSNorm],
                         ids=["dense_tanh", "dense_relu", "layer_norm", "batch_norm", "rms"])
def test_correct_layers_pass_under_both_policies(make):
    before = keras.config.dtype_policy().name
    for x in (X, X * 20):
        report = check(make(), x)
        assert report.ok, str(report)
    assert keras.config.dtype_policy().name == before


@pytest.mark.parametrize("make", [keras.layers.LayerNormalization,
                                  lambda: keras.layers.GroupNormalization(groups=2)],
                         ids=["layer_norm", "group_norm"])
def test_a_layer_that_does_not_autocast_is_compared_at_the_inputs_it_sees(make):
    # autocast=False: the layer normalizes the float32 input in float32. At rows of nearly
    # equal values, or far from 0, float16 rounding erases their spread: the float32 layer
    # at the inputs rounded to float16 is not what the mixed layer computes from.
    near = (5.0 + 1e-3 * np.arange(12).reshape(2, 6)).astype(np.float32)
    offset = (100.0 + np.random.default_rng(0).standard_normal((3, 6))).astype(np.float32)
    for x in (near, offset):
        report = check(make(), x)
        assert report.ok, str(report)


def test_a_layer_built_in_float64_is_compared_through_a_float32_copy():
    layer = keras.layers.Dense(3, activation="tanh", dtype="float64")
    report = check(layer, tf.cast(X, tf.float64))
    assert report.ok, str(report)


def test_policies_are_for_layers_and_validated():
    with pytest.raises(TypeError, match="Keras Layer"):
        gradcheck.check(tf.tanh, X, policies=POLICIES)
    with pytest.raises(ValueError, match="unknown policy"):
        gradcheck.check(keras.layers.Dense(2), X, policies=("float16",))
    with pytest.raises(TypeError, match="policies is for @gradcheck.layer"):
        gradcheck.activation(policies=POLICIES)(tf.tanh)


def test_declared_policies_are_fuzzed_and_reported_in_json():
    import json

    @gradcheck.layer(policies=("mixed_float16",), dtypes=("float32",), input_shape=(None, 6),
                     domain=(-1000.0, 1000.0), modes=())
    class DeclaredNaiveRMSNorm(NaiveRMSNorm):
        pass

    report = gradcheck.fuzz(DeclaredNaiveRMSNorm, max_examples=10, hypothesis_seed=0)
    assert not report.ok and "policies=('mixed_float16',)" in report.reproducer
    data = json.loads(json.dumps(report.to_dict()))
    assert data["findings"][0]["details"]["policy"] == "mixed_float16"
