"""The dy-linearity check (``_linearity.py``) and the twin's rounding test where a derivative
vanishes over a whole neighbourhood while the terms it is computed from do not.

``x / |x|``, a row of one entry normalized (``tf.math.l2_normalize``, ``keras.ops.normalize``),
has a derivative of 0 computed from terms of size ``1 / |x|``: its low-precision VJP is pure
rounding of those terms. The random second cotangent of the linearity check turned that into
"does not scale with the upstream gradient" at about a third of such inputs (float32 and
bfloat16, |x| from 1e-3 to 1e2; found by ``bench/soak.py --layers``), and the twin's rounding
test (``_conditioning.explained_by_rounding``) measured the error relative to a derivative of
exactly 0. Guards: every misuse of ``dy`` is still named, in every dtype.
"""

import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

import gradcheck
from shared_targets import swish_with_dy


def unit(x):
    return x * tf.math.rsqrt(x * x)


def l2_rows(x):
    return tf.math.l2_normalize(x, axis=-1)


def keras_rows(x):
    return keras.ops.normalize(x, axis=-1)


FLAT = {"unit": (unit, {"elementwise": True}),
        "l2_normalize": (l2_rows, {"elementwise": False, "batch_independent": True}),
        "keras.ops.normalize": (keras_rows, {"elementwise": False, "batch_independent": True})}


def flat_inputs(count=12, seed=1):
    """Rows of one entry, |x| log-uniform in [1e-3, 1e2], every third row constant at a power
    of two (float16 is left out: its RsqrtGrad overflows below |x| ~ 0.025, a real hazard)."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(count):
        x = rng.choice([-1, 1], size=(8, 1, 1)) * 10.0 ** rng.uniform(-3, 2, size=(8, 1, 1))
        if i % 3 == 0:
            x = np.full((8, 1, 1), 2.0 ** int(rng.integers(-6, 4)))
        found.append(x)
    return found


def _cast(x, dtype):
    return x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_derivative_that_vanishes_from_cancelling_terms_is_not_a_finding(name, dtype):
    fn, options = FLAT[name]
    failed = []
    for seed, x in enumerate(flat_inputs()):
        report = gradcheck.check(fn, _cast(x, dtype), seed=seed, **options)
        if not report.ok:
            failed.append(str(report))
    assert not failed, "\n".join(failed)


def test_the_soaks_row_of_one_constant_entry_is_not_a_finding():
    """bench/soak.py --layers, seed 7: l2_normalize in float32, a (8, 1, 1) input of 0.0625.
    The float64 twin's derivative is exactly 0 there and at every neighbour."""
    x = np.full((8, 1, 1), 0.0625, np.float32)
    report = gradcheck.check(l2_rows, x, elementwise=False, batch_independent=True,
                             seed=654318323)
    assert report.ok, str(report)


# -- guards: every misuse of dy is still named


def tanh_with(misuse):
    """tanh by a custom gradient that applies ``misuse`` to dy first."""

    @tf.custom_gradient
    def tanh(x):
        y = tf.tanh(x)

        def grad(dy):
            return misuse(dy) * (1 - y * y)

        return y, grad

    return tanh


MISUSES = {
    "ignored": lambda dy: tf.ones_like(dy),
    "abs": tf.abs,
    "squared": tf.square,
    "clipped": lambda dy: tf.clip_by_value(dy, -0.75, 0.75),
    "plus a constant": lambda dy: dy + tf.cast(0.25, dy.dtype),
    "bent by the batch's largest": lambda dy: dy * tf.abs(dy) / tf.reduce_max(tf.abs(dy)),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("misuse", sorted(MISUSES))
def test_guard_a_misused_dy_is_named(misuse, dtype):
    x = _cast(np.linspace(-2, 2, 12).reshape(4, 3), dtype)
    report = gradcheck.check(tanh_with(MISUSES[misuse]), x, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)
    if misuse == "plus a constant" and dtype == "bfloat16":
        return  # 0.25 (1 - y^2) is within bfloat16's tolerance: a plain mismatch there
    assert report.findings[0].details["cause"] == "not_linear_in_dy", str(report)


def sin_with_vjp(bend):
    """sin by a custom gradient whose VJP is ``cos(x) * bend(dy)``."""

    @tf.custom_gradient
    def sin(x):
        def grad(dy):
            return tf.cos(x) * bend(dy)

        return tf.sin(x), grad

    return sin


#: VJPs that scale with a row's dy, v -> c v for one c per row, yet are not linear: only a
#: second cotangent that is not proportional to the first within a row shows them (review).
ROW_HOMOGENEOUS = {
    "bent by its row's largest": lambda dy: dy * tf.abs(dy) / tf.reduce_max(
        tf.abs(dy), axis=-1, keepdims=True),
    "scaled by its row's norms": lambda dy: dy * tf.reduce_sum(tf.abs(dy), -1, keepdims=True)
    / tf.norm(dy, axis=-1, keepdims=True),
    "sorted within its row": lambda dy: tf.sign(dy) * tf.sort(tf.abs(dy), axis=-1),
}


@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("bend", sorted(ROW_HOMOGENEOUS))
def test_guard_a_vjp_proportional_row_by_row_is_still_named(bend, rows):
    """With rtol = atol = 1 finite differences accept them: linearity is what is left, as
    under a kink, a one-sided step or a low dtype's window."""
    x = np.random.default_rng(1).uniform(-2, 2, size=(rows, 6)).astype(np.float32)
    report = gradcheck.check(sin_with_vjp(ROW_HOMOGENEOUS[bend]), x, modes=(), rtol=1.0,
                             atol=1.0)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert report.findings[0].details["cause"] == "not_linear_in_dy", str(report)


@tf.custom_gradient
def relu_bent_below_float64(x):
    """relu whose VJP takes 0.05 x^2 dy on the negative side, except in float64: a rule of
    the low dtypes where the true derivative, and the float64 twin's, is 0 (review)."""

    def grad(dy):
        if x.dtype == tf.float64:
            return dy * tf.cast(x > 0, x.dtype)
        return dy * tf.where(x > 0, tf.ones_like(x), 0.05 * x * x)

    return tf.nn.relu(x), grad


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_guard_a_low_dtype_rule_where_the_derivative_is_zero_is_not_rounding(dtype):
    x = np.random.default_rng(1).uniform(-2, 2, size=(4, 5))
    report = gradcheck.check(relu_bent_below_float64, _cast(x, dtype), modes=(), seed=0)
    assert report.kinds == ["gradient_mismatch"], str(report)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_dy_clipped_beyond_the_drawn_cotangents_is_named_at_a_loss_scaled_dy(dtype):
    # |dy| of 0.5 to 1.5 never reaches a clip at 5; loss scaling (2^15 in float32, the most
    # float16 holds without overflow, 2^7, here) does, and training then stalls.
    clipped = tanh_with(lambda dy: tf.clip_by_value(dy, -5.0, 5.0))
    report = gradcheck.fuzz(clipped, dtype=dtype, max_examples=50, hypothesis_seed=1,
                            domain=(-10.0, 10.0))
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert report.findings[0].details["cause"] == "not_linear_in_dy"
    assert "loss scaling" in report.findings[0].message
    assert gradcheck.fuzz(tanh_with(lambda dy: dy), dtype=dtype, max_examples=50,
                          hypothesis_seed=1, domain=(-10.0, 10.0)).ok


class OverflowingGate(keras.layers.Layer):
    """x + c x^2, its weight gradient sum(dy x^2): past 65504 in float16 at |x| = 1000."""

    def build(self, shape):
        self.c = self.add_weight(shape=(shape[-1],), initializer=keras.initializers.Constant(0.01),
                                 name="c")

    def call(self, x):
        @tf.custom_gradient
        def f(x, c):
            def grad(dy):
                return dy * (1 + 2 * c * x), tf.reduce_sum(dy * x * x, axis=0)
            return x + c * x * x, grad
        return f(x, tf.cast(self.c, x.dtype))


def test_a_weight_gradient_step_1_found_not_finite_is_left_out_of_the_linearity_test():
    # Its gradient is None past step 1 (sum(dy x^2) = 4e6 overflows float16 as its true
    # value does); the linearity test read its shape (AttributeError).
    x = np.full((1, 4), -1000.0, np.float16)
    report = gradcheck.check(OverflowingGate(dtype="float16"), x, domain=(-1000, 1000))
    assert report.ok, report
    assert "the true value overflows" in report.meta["skipped"][0]


def expm1_over_b(x, b):
    """A parametric ELU term: its gradient for ``b``, ``x e^(bx) / b - expm1(bx) / b^2``,
    cancels terms of size ``x / b`` down to ``x^2 / 2`` at small ``b``."""
    return tf.math.expm1(b * x) / b


def box_cox(x, lam):
    """Box-Cox of ``1 + x``: its gradient for ``lam`` cancels alike at small ``lam``."""
    return tf.math.expm1(lam * tf.math.log1p(x)) / lam


class LearnedLeakyExp(keras.layers.Layer):
    """``x`` for x > 0, else ``a expm1(b x) / b``: trainable ``a`` and ``b``."""

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(), initializer="ones")
        self.b = self.add_weight(name="b", shape=(), initializer="ones")

    def call(self, x):
        b = self.b + 1e-3
        return tf.where(x > 0, x, self.a * tf.math.expm1(b * tf.minimum(x, 0.0)) / b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_parameters_gradient_summed_from_cancelling_terms_is_linear_within_their_rounding(
        dtype):
    """A fresh corpus's false alarm (35 of 60 items): the gradient of a scalar parameter
    sums cancelling terms over entries that tests 2 and 3 scale differently, and rounds at
    the terms' size, 1e3 times the gradient's. Float64 too, the VJP linear to 4e-14."""
    rng = np.random.default_rng(3)
    failed = []
    for seed in range(6):
        x = rng.choice([1.0, -5.0, 5.0], size=(int(rng.integers(1, 4)), 3)).astype(dtype)
        for fn, lo in ((expm1_over_b, -5.0), (box_cox, 0.0)):
            report = gradcheck.check(fn, np.abs(x) if lo == 0 else x, np.asarray(1e-3, dtype),
                                     elementwise=True, batch_independent=True,
                                     domain=(lo, 5.0), seed=seed)
            if not report.ok:
                failed.append(str(report))
        layer = LearnedLeakyExp(dtype=dtype)
        layer(x)
        layer.set_weights([np.asarray(rng.uniform(-3, 3)), np.asarray(0.0)])
        report = gradcheck.check(layer, -np.abs(x), elementwise=True, batch_independent=True,
                                 seed=seed)
        if not report.ok:
            failed.append(str(report))
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("bend", ["bent by the batch's largest", "ignored"])
def test_guard_a_parameters_gradient_bent_by_the_batch_is_still_named(bend):
    """The rounding probe scales dy uniformly: a VJP positively homogeneous in dy scales with
    it, so the probe sees only rounding and the bend is still named."""
    bent = MISUSES[bend]

    @tf.custom_gradient
    def scaled(x, b):
        def grad(dy):
            return dy * b, tf.reduce_sum(bent(dy) * x)
        return b * x, grad

    x = np.random.default_rng(2).uniform(-2, 2, size=(4, 3)).astype(np.float32)
    report = gradcheck.check(scaled, x, np.float32(0.7), modes=(), rtol=1.0, atol=1.0)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert report.findings[0].details["cause"] == "not_linear_in_dy", str(report)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("clip", [5.0, 100.0])
def test_a_dy_clipped_where_finite_differences_pass_is_named_at_a_loss_scaled_dy(clip, dtype):
    """A fresh corpus's miss: on a smooth target every comparison passed strictly, so no
    linearity test ran, and dy of 0.5 to 1.5 never reaches a clip. The loss-scaled test now
    runs with the execution modes, in check() and in fuzzing's mode sample."""
    clipped = swish_with_dy(lambda dy: tf.clip_by_value(dy, -clip, clip))
    x = _cast(np.array([[0.5, -1.0, 2.0]]), dtype)
    report = gradcheck.check(clipped, x, seed=1)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "loss scaling" in report.findings[0].message
    fuzzed = gradcheck.fuzz(clipped, dtype=dtype, max_examples=20, hypothesis_seed=1)
    assert fuzzed.kinds == ["gradient_mismatch"] and "loss scaling" in str(fuzzed)
    assert gradcheck.check(swish_with_dy(lambda dy: dy), x, seed=1).ok


def xlogx(x):
    positive = x > 0
    safe = tf.where(positive, x, tf.ones_like(x))
    return tf.where(positive, safe * tf.math.log(safe), tf.zeros_like(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_vjp_whose_dy_products_flush_to_zero_next_to_the_smallest_normal_is_linear(dtype):
    """x log x at x = 1.2e-38 (float32) computes (dy x) / x: TensorFlow flushes the
    subnormal dy x to 0 for |dy| < 1, a threshold in dy that tests 1-3 read as a bug where
    the 0 next to it made linearity run (the fresh corpus's x log x, after its domain end
    was fixed)."""
    tiny = float(np.finfo(dtype).tiny)
    failed = []
    for seed in range(8):
        x = np.array([0.0, tiny, 1.5 * tiny, 1.0], dtype)
        report = gradcheck.check(xlogx, x, domain=(0.0, 10.0), seed=seed)
        if not report.ok:
            failed.append(str(report))
    assert not failed, "\n".join(failed)


def test_guard_a_vjp_ignoring_dy_next_to_the_smallest_normal_is_still_a_mismatch():
    x = np.array([1e-37, 3e-37, 1.0], np.float32)
    report = gradcheck.check(tanh_with(MISUSES["ignored"]), x, modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_guard_a_dead_zone_in_dy_is_named_though_the_rounding_probes_run(dtype):
    """Review: probes at 3 v and v / 3 bracketed the tests' cotangents, so the v / 3 probe
    crossed a dead zone at |dy| < 0.45 too and took its jump for rounding."""
    dead_zone = sin_with_vjp(lambda dy: tf.where(tf.abs(dy) < 0.45, tf.zeros_like(dy), dy))
    x = np.linspace(-1.0, 1.0, 12).reshape(3, 4).astype(dtype)
    report = gradcheck.check(dead_zone, x, modes=(), domain=(-1.0, 1.0))
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert report.findings[0].details["cause"] == "not_linear_in_dy", str(report)


def test_a_dy_clipped_by_its_norm_is_named_at_a_loss_scaled_dy():
    """Review: the loss-scale test judged only entries that a scaling by 2 repeated bit for
    bit, and a norm clip at 5 changes every entry under that scaling."""
    clipped = sin_with_vjp(lambda dy: tf.clip_by_norm(dy, 5.0))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    for seed in range(3):
        report = gradcheck.check(clipped, x, seed=seed)
        assert report.kinds == ["gradient_mismatch"], str(report)
