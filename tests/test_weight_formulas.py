"""A weight gradient with a wrong formula, in a low dtype: judged against the float64 twin.

In float16, bfloat16 and float32 a weight's analytic side is allowed the worst-case rounding of
every term it could be summed from, which grows with max(1, |x|)^2: at inputs of a few units a
weight gradient off by x0.5 passed in bfloat16 and one off by x1.1 in float16 (float32 caught
both). The float64 twin runs the same code, so where its gradient fails the line in float64,
the analytic value is held to its own measured distance from it (``_lines.wrong_formula``).
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck


class ScaledTanh(keras.layers.Layer):
    """a * tanh(x), one scalar weight, by a custom gradient whose da is scaled by ``factor``."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(), initializer=keras.initializers.Constant(1.5))

    def call(self, x):
        factor = self.factor

        @tf.custom_gradient
        def scaled_tanh(x, a):
            t = tf.tanh(x)

            def grad(dy):
                return dy * a * (1 - t * t), tf.reduce_sum(dy * t) * factor

            return a * t, grad

        return scaled_tanh(x, tf.identity(self.a))


class PerFeaturePReLU(keras.layers.Layer):
    """A slope per feature, by a custom gradient whose d(slope) is scaled by ``factor``."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(input_shape[-1],),
                                 initializer=keras.initializers.Constant(0.2))

    def call(self, x):
        factor = self.factor

        @tf.custom_gradient
        def prelu(x, a):
            negative = tf.cast(x < 0, x.dtype)

            def grad(dy):
                da = tf.reduce_sum(dy * x * negative, axis=tuple(range(len(x.shape) - 1)))
                return dy * tf.where(x > 0, tf.ones_like(x), a * tf.ones_like(x)), da * factor

            return tf.where(x > 0, x, a * x), grad

        return prelu(x, tf.identity(self.a))


class DenseTanh(keras.layers.Layer):
    """tanh(x @ W), by a custom gradient whose dW is scaled by ``factor``."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 3),
                                 initializer=keras.initializers.GlorotUniform(seed=0))

    def call(self, x):
        factor = self.factor

        @tf.custom_gradient
        def dense_tanh(x, w):
            y = tf.tanh(tf.matmul(x, w))

            def grad(dy):
                dz = dy * (1 - y * y)
                return (tf.matmul(dz, w, transpose_b=True),
                        tf.matmul(x, dz, transpose_a=True) * factor)

            return y, grad

        return dense_tanh(x, tf.identity(self.w))


LAYERS = {"ScaledTanh": (ScaledTanh, True), "PerFeaturePReLU": (PerFeaturePReLU, True),
          "DenseTanh": (DenseTanh, False)}
DTYPES = ["float16", "bfloat16", "float32"]


def inputs(dtype, seed=0, scale=6.0):
    """A (5, 4) batch of inputs of a few units, none at the kink 0."""
    x = np.random.default_rng(seed).uniform(0.5, scale, (5, 4))
    x *= np.where(np.random.default_rng(seed + 1).random((5, 4)) < 0.5, -1.0, 1.0)
    return tf.constant(x, dtype)


def check(name, dtype, factor, x, seed=3):
    cls, elementwise = LAYERS[name]
    return gradcheck.check(cls(factor=factor, dtype=dtype), x, elementwise=elementwise,
                           batch_independent=True, seed=seed, modes=())


#: Errors beyond ANALYTIC_ULPS roundings (8 ulps: 0.8% in float16, 6% in bfloat16) of the
#: line's |g| |u| terms, the allowance every analytic chain keeps. Along a random direction
#: through a matrix those terms sum to several times the derivative itself (DenseTanh in
#: bfloat16: 16 against 1.9), so bfloat16 is asked to find x2, not x1.1.
FACTORS = [(dtype, factor) for dtype in DTYPES
           for factor in ((0.5, 2.0) if dtype == "bfloat16" else (0.5, 1.1))]


@pytest.mark.parametrize(("dtype", "factor"), FACTORS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_a_weight_gradient_with_a_wrong_formula_is_found_in_a_low_dtype(name, factor, dtype):
    """Along 4 random directions (seeds): an error can fall within the low dtype's own
    rounding along one of them (DenseTanh x1.1 in bfloat16, seed 3: the analytic value is
    0.027 from the float64 formula's, the error 0.013), never along more."""
    reports = [check(name, dtype, factor, inputs(dtype), seed=seed) for seed in range(4)]
    found = [r for r in reports if not r.ok]
    assert len(found) >= 3, "\n".join(map(str, reports))
    for report in found:
        assert report.kinds == ["gradient_mismatch"], str(report)
        assert "gradient mismatch for weight" in report.findings[0].message, str(report)


def test_the_message_says_the_formula_is_wrong_in_float64_too():
    report = check("DenseTanh", "bfloat16", 0.5, inputs("bfloat16"), seed=0)
    message = report.findings[0].message
    assert "the same code in float64 gives" in message, message
    assert "a wrong formula, not bfloat16's rounding" in message, message
    details = report.findings[0].details
    # the bound shown is the tight one the analytic value missed, not the low dtype's floor
    assert abs(details["analytic"] - details["numerical"]) > details["bound"], details


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", list(LAYERS))
def test_the_right_weight_gradient_passes_at_large_inputs(name, seed, dtype):
    """Guard: where rounding is largest (inputs up to 60, tanh saturated), the correct
    formula is still within its measured rounding. ScaledTanh's and DenseTanh's lines go
    past their own 8 ulps here, so the twin is consulted (at the rows, or whole); the
    PReLU's, exact in every dtype, never do."""
    report = check(name, dtype, 1.0, inputs(dtype, seed, scale=60.0), seed=seed)
    assert report.ok, str(report)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_right_gradient_passes_at_the_kink(dtype):
    """Guard: the PReLU's kink at 0 sits on the slopes' random line; the float64 twin's
    subgradient is accepted there as a float64 check accepts it."""
    x = inputs(dtype).numpy().astype(np.float64)
    x[::2, 1:3] = 0.0
    report = check("PerFeaturePReLU", dtype, 1.0, tf.constant(x, dtype))
    assert report.ok, str(report)


def wrong_in_low_precision_only(error):
    """sigmoid(a x), its da off by ``error`` in the input's dtype unless that is float64:
    the float64 twin's formula is right, so the rule above claims nothing for it."""

    class LowOnly(keras.layers.Layer):
        def build(self, input_shape):
            self.a = self.add_weight(name="a", shape=(),
                                     initializer=keras.initializers.Constant(0.7))

        def call(self, x):
            scale = 1.0 if x.dtype == tf.float64 else 1.0 + error

            @tf.custom_gradient
            def sigmoid_ax(x, a):
                y = tf.sigmoid(a * x)

                def grad(dy):
                    d = dy * y * (1 - y)
                    return d * a, tf.reduce_sum(d * x) * tf.cast(scale, x.dtype)

                return y, grad

            return sigmoid_ax(x, tf.identity(self.a))

    return LowOnly


def test_guard_a_weight_gradient_wrong_in_float32_only_is_judged_as_before():
    """Guard: float32's floor still catches a x0.5 error the float64 twin does not share."""
    layer = wrong_in_low_precision_only(-0.5)(dtype="float32")
    report = gradcheck.check(layer, inputs("float32"), elementwise=True,
                             batch_independent=True, seed=3, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "the same code in float64" not in report.findings[0].message


# -- per element: an activation's derivative, whose low-dtype allowance grows with |x|


def swish_off_by(error):
    @tf.custom_gradient
    def swish(x):
        s = tf.sigmoid(x)
        y = x * s

        def grad(dy):
            return dy * (s + y * (1 - s)) * (1 + error)

        return y, grad

    return swish


def elu_off_by(error):
    @tf.custom_gradient
    def elu(x):
        e = tf.exp(tf.minimum(x, tf.zeros_like(x)))

        def grad(dy):
            return dy * tf.where(x > 0, tf.ones_like(x), e * (1 + error))

        return tf.where(x > 0, x, e - 1), grad

    return elu


ACTIVATIONS = {"swish": swish_off_by, "elu": elu_off_by}


@pytest.mark.parametrize(("dtype", "error"), [("float16", 0.02), ("float16", 0.1),
                                               ("bfloat16", 0.1), ("bfloat16", 0.25)])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_a_derivative_with_a_wrong_formula_is_found_per_element(name, error, dtype):
    report = gradcheck.check(ACTIVATIONS[name](error), tf.constant(np.linspace(-8, 8, 37), dtype),
                             seed=1, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)
    message = report.findings[0].message
    assert "the same code in float64 gives the derivative" in message, message
    assert f"a wrong formula, not {dtype}'s rounding" in message, message


def softplus(x):
    return tf.math.softplus(x)


def gelu(x):
    return tf.nn.gelu(x, approximate=True)


def log_cosh(x):
    return x + tf.math.softplus(-2.0 * x) - tf.cast(np.log(2.0), x.dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("fn", [swish_off_by(0.0), elu_off_by(0.0), softplus, gelu, log_cosh,
                                tf.nn.selu, tf.math.tanh, tf.math.sigmoid])
def test_guard_right_derivatives_pass_across_their_range(fn, dtype):
    """Guard: where the low dtype rounds most (saturation, cancellation in log_cosh, large
    |x|), the right formula stays within its measured distance from float64's."""
    limit = 60.0 if dtype == "float16" else 300.0
    x = np.concatenate([np.linspace(-limit, limit, 401), np.linspace(-3, 3, 97)])
    report = gradcheck.check(fn, tf.constant(x, dtype), seed=2, modes=())
    assert report.ok, str(report)


# -- false alarms the rule made before it asked for a shorter step too (bench/soak.py --layers)

CASES = json.loads((Path(__file__).parent / "normalize_steps_cases.json").read_text())
NORMALIZE = {"l2_normalize": lambda x: tf.math.l2_normalize(x, axis=-1),
             "normalize": lambda x: keras.ops.normalize(x, axis=-1)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_right_formula_at_rows_of_tiny_norm_is_not_called_wrong(case):
    """Fuzzed inputs of rows of tiny norm (9e-5, 1e-4 next to zeros and subnormals): at the
    step h the float64 difference quotient misses the right float64 formula beyond its
    Richardson bound; at a 1000 times shorter step it does not."""
    fn = NORMALIZE[case.rsplit("_", 1)[0]]
    x, dtype, seed = CASES[case]["x"], CASES[case]["dtype"], CASES[case]["seed"]
    report = gradcheck.check(fn, tf.constant(np.array(x), dtype), elementwise=False,
                             batch_independent=True, seed=seed)
    assert report.ok, str(report)


def sin_times(error):
    """sin(x * b), its dx off by ``error``: b a second input, broadcast along x's last axis."""

    @tf.custom_gradient
    def sin_times(x, b):
        def grad(dy):
            c = tf.cos(x * b)
            return dy * b * c * (1 + error), tf.reduce_sum(dy * x * c, axis=0)

        return tf.sin(x * b), grad

    return sin_times


@pytest.mark.parametrize("error", [0.15, 0.0])
@pytest.mark.parametrize("shape", [(37,), (12, 3)])
def test_per_element_lines_with_a_second_input_are_judged_at_their_rows(shape, error):
    """The float64 twin is asked at the rows of the elements in question alone
    (``TwinGradients.at_rows``): a rank-1 input (its entries are the rows), and a second
    input without the batch axis, passed whole."""
    x = np.linspace(-40.0, 40.0, int(np.prod(shape))).reshape(shape)
    b = np.array([0.7, 1.3, 0.4][: shape[-1]] if len(shape) > 1 else 0.7)
    report = gradcheck.check(sin_times(error), tf.constant(x, "bfloat16"),
                             tf.constant(b, "bfloat16"), seed=4, modes=())
    if error:
        assert report.kinds == ["gradient_mismatch"], str(report)
        assert "a wrong formula, not bfloat16's rounding" in report.findings[0].message
    else:
        assert report.ok, str(report)
