"""gradcheck.check on correct targets (no finding) and on real buggy ones (the right finding)."""

import json

import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from shared_targets import sine_activation, swish

import gradcheck  # noqa: E402

DTYPES = ["float16", "bfloat16", "float32", "float64"]
GRID = np.array([-6.0, -2.5, -1.0, -0.3, 0.0, 0.0, 0.25, 1.0, 3.0, 7.5])


def grid(dtype, shape=(2, 5)):
    return tf.constant(GRID.reshape(shape), dtype)


# ---------------------------------------------------------------------------- correct targets


def steep_tanh(x):
    return tf.tanh(20.0 * x)


@tf.custom_gradient
def custom_elu(x):
    safe = tf.where(x > 0, tf.zeros_like(x), x)  # the double-where: no exp overflow anywhere
    y = tf.where(x > 0, x, tf.exp(safe) - 1)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(x), tf.exp(safe))

    return y, grad


class PReLU(keras.layers.Layer):
    def build(self, input_shape):
        self.alpha = self.add_weight(shape=(input_shape[-1],),
                                     initializer=keras.initializers.Constant(0.25), name="alpha")

    def call(self, x):
        return tf.where(x > 0, x, self.alpha * x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [swish, tf.nn.relu, tf.nn.leaky_relu, tf.abs, steep_tanh,
                                tf.nn.gelu, tf.nn.elu, tf.nn.softplus, custom_elu, tf.nn.relu6],
                         ids=lambda f: getattr(f, "__name__", str(f)))
def test_correct_elementwise_targets_pass(fn, dtype):
    report = gradcheck.check(fn, grid(dtype))
    assert report.ok, str(report)


def test_kinks_exactly_at_zero_pass_and_are_not_hidden_elsewhere():
    zeros = tf.zeros((3, 4), tf.float32)
    for fn in (tf.nn.relu, tf.nn.leaky_relu, tf.abs):
        assert gradcheck.check(fn, zeros).ok


def test_a_batch_statistic_of_one_row_declared_elementwise_passes():
    # x - mean over a batch of one row is 0, an elementwise function. The diagonal's samples
    # stacked in one call share one mean over every copy (the rider row, the whole batch here,
    # cannot tell): before not_elementwise stands they are taken again, one call each.
    x = np.random.default_rng(0).normal(size=(1, 5)).astype(np.float32)
    assert gradcheck.check(lambda x: x - tf.reduce_mean(x, axis=0), x, elementwise=True).ok


def _reads_its_size(x):
    return x / tf.cast(tf.size(x), x.dtype)


def _centred(x):
    return x - tf.reduce_mean(x)


@pytest.mark.parametrize("fn, stacks", [(swish, True), (custom_elu, True),
                                        (_reads_its_size, False), (_centred, False)],
                         ids=["swish", "custom_elu", "reads_its_size", "centred"])
def test_stacked_samples_equal_separate_calls_or_are_refused(fn, stacks):
    from gradcheck._check import _Run
    from gradcheck._targets import as_target

    run = _Run(as_target(fn), [grid("float32")], None, None, None, None, 0)
    assert run.forward_backward() and run.choose_reference()
    s = np.maximum(1.0, np.abs(run.params[0].value))
    ts = [k * run.h for k in (-2, -1, 1, 2)]
    stacked = run.stacked({0: s}, ts)
    assert (stacked is not None) is stacks  # the rider row tells a target reading its batch
    for t, part in zip(ts, stacked or []):  # vectorized kernels may round a value apart
        np.testing.assert_allclose(part, run.evaluate({0: s}, t), rtol=4 * 2.0 ** -52, atol=0)


def _by_position(period, factor, rowwise):
    """Row j weighted 1 + (j mod period), reduced over the features (``rowwise``) or not; its
    gradient ``factor`` times the true one (1.0: correct)."""

    @tf.custom_gradient
    def f(x):
        c = 1.0 + tf.cast(tf.range(tf.shape(x)[0]) % period, x.dtype)[:, None]
        y = tf.sin(x) * c

        def grad(dy):
            dy = dy[:, None] if rowwise else dy
            return dy * tf.cos(x) * c * factor

        return (tf.reduce_sum(y, axis=-1) if rowwise else y), grad

    return f


def _by_row_index(x):
    return x * tf.cast(tf.range(tf.shape(x)[0]), x.dtype)[:, None]


def _rows_run(fn, shape=(4, 5), elementwise=False, first_row_scale=1.0):
    from gradcheck._check import _Run
    from gradcheck._targets import as_target

    x = np.random.default_rng(2).normal(size=shape) * 2
    x[0] *= first_row_scale
    x = tf.constant(x, tf.float32)
    run = _Run(as_target(fn), [x], elementwise, True, None, None, 0)
    assert run.forward_backward() and run.choose_reference()
    return run


@pytest.mark.parametrize("shape", [(3, 0), (0,), (0, 4)])
def test_an_empty_input_is_not_reported_as_the_targets_error(shape):
    """No stacked call on an empty input: its riders (rows of the input) do not exist, and
    the failure to build them was reported as the target raising a ValueError. (check()
    itself now refuses an empty first input, which compares nothing; its core still runs.)"""
    from gradcheck._check import check_with
    from gradcheck._options import CheckOptions
    from gradcheck._targets import as_target

    report = check_with(as_target(swish), [tf.zeros(shape)], CheckOptions(modes=()))
    assert "error" not in report.kinds, str(report)


def _times(x, z):
    return x * z


def _periodic(period):
    def f(x):
        return x * (1.0 + tf.cast(tf.range(tf.shape(x)[0]) % period, x.dtype)[:, None])

    return f


@pytest.mark.parametrize("fn, shape, stacks", [
    (_periodic(2), (4, 5), True), (_periodic(2), (3, 5), False),
    (_periodic(3), (4, 5), False), (_by_row_index, (4, 5), False)],
    ids=["period_2_of_4", "period_2_of_3", "period_3_of_4", "by_row_index"])
def test_stacked_samples_of_a_target_reading_its_row_position(fn, shape, stacks):
    """A pattern over the rows whose period divides the batch B gives the parts at offsets iB
    the values of separate calls: it stacks; otherwise the rider one batch after its twin row
    differs from it, and the stacked call is refused. (Row 0 holds the largest output here:
    the rider of the largest row sits at offset mB + 2, where a row of another parity would
    read another weight and refuse the call, slower but never wrong.)"""
    run = _rows_run(fn, shape, elementwise=True, first_row_scale=10.0)
    s = np.maximum(1.0, np.abs(run.params[0].value))
    ts = [k * run.h for k in (-2, -1, 1, 2)]
    stacked = run.stacked({0: s}, ts)
    assert (stacked is not None) is stacks
    for t, part in zip(ts, stacked or []):
        np.testing.assert_allclose(part, run.evaluate({0: s}, t), rtol=4 * 2.0 ** -52, atol=0)


def test_stacked_samples_pair_the_riders_with_the_rows_of_the_other_inputs():
    """An unmoved input of x's shape is stacked alongside: each rider meets the row of it
    that its copy met (z's rows differ), so x * z stacks."""
    from gradcheck._check import _Run
    from gradcheck._targets import as_target

    rng = np.random.default_rng(7)
    x, z = (tf.constant(rng.normal(size=(3, 4)), tf.float32) for _ in range(2))
    run = _Run(as_target(_times), [x, z], True, True, None, None, 0)
    assert run.forward_backward() and run.choose_reference()
    s = np.maximum(1.0, np.abs(run.params[0].value))
    ts = [k * run.h for k in (-2, -1, 1, 2)]
    stacked = run.stacked({0: s}, ts)
    assert stacked is not None
    for t, part in zip(ts, stacked):
        np.testing.assert_allclose(part, run.evaluate({0: s}, t), rtol=4 * 2.0 ** -52, atol=0)


def _squares_over_batch(factor):
    """x * x / B: elementwise, and reads its batch size B; its gradient ``factor`` times the
    true one."""

    @tf.custom_gradient
    def f(x):
        n = tf.cast(tf.shape(x)[0], x.dtype)

        def grad(dy):
            return dy * 2 * x / n * factor

        return x * x / n, grad

    return f


@pytest.mark.parametrize("elementwise", [None, True])
@pytest.mark.parametrize("first_row", [0.0, 1.0])
def test_an_elementwise_target_reading_its_batch_size_is_judged_right(elementwise, first_row):
    """The stacked call's riders include the row whose output is largest: with a zero first
    row, a rider of row 0 alone read 0 whatever the batch size, the parts (at another batch
    size) then disagreed with the output at the input, which passed for a kink, and a wrong
    gradient passed (review finding, before this session too)."""
    x = np.random.default_rng(1).standard_normal((3, 3)) + 2
    x[0] = first_row
    wrong = gradcheck.check(_squares_over_batch(2.0), x, modes=(), elementwise=elementwise)
    assert wrong.kinds == ["gradient_mismatch"], str(wrong)
    right = gradcheck.check(_squares_over_batch(1.0), x, modes=(), elementwise=elementwise)
    assert right.ok, str(right)


def _threshold_rows(factor):
    @tf.custom_gradient
    def f(x):
        c = tf.cast(tf.where(tf.range(tf.shape(x)[0]) < 5, 1.0, 2.0), x.dtype)[:, None]

        def grad(dy):
            return dy[:, None] * c * 2 * tf.nn.relu(x) * factor

        return tf.reduce_sum(c * tf.nn.relu(x) ** 2, axis=1), grad

    return f


def _over_batch_rows(factor):
    @tf.custom_gradient
    def f(x):
        n = tf.cast(tf.shape(x)[0], x.dtype)

        def grad(dy):
            return dy[:, None] * tf.ones_like(x) / n * factor

        return tf.reduce_sum(x, axis=1) / n, grad

    return f


@pytest.mark.parametrize("make", [_threshold_rows, _over_batch_rows],
                         ids=["row_index_threshold", "batch_size"])
@pytest.mark.parametrize("first_row", [0.0, -1.0, 1e-8])
def test_batch_rows_with_a_first_row_of_output_near_zero_are_judged_right(make, first_row):
    """The batch-row route samples in separate calls: a stacked call's riders read ~0 where
    the first row's output is ~0, whatever the target makes of the batch size or a row's
    index, and stacked samples (d3fa14a, reverted) then passed a wrong gradient and flagged
    a correct x.sum(1) / batch (review findings)."""
    x = np.random.default_rng(1).standard_normal((3, 3)) + 2
    x[0] = first_row
    wrong = gradcheck.check(make(2.0), x, modes=())
    assert wrong.kinds == ["gradient_mismatch"], str(wrong)
    right = gradcheck.check(make(1.0), x, modes=())
    assert right.ok, str(right)


@pytest.mark.parametrize("batch, period", [(3, 2), (5, 2), (2, 4), (6, 4), (4, 3)])
@pytest.mark.parametrize("rowwise, elementwise", [(True, None), (False, False),
                                                  (False, None)],
                         ids=["rows", "same_shape_rows", "elementwise_route"])
def test_a_target_reading_its_row_position_is_checked_whatever_the_batch(
        batch, period, rowwise, elementwise):
    """Stacked parts sit at offsets iB: a pattern repeating every ``period`` rows gives them
    other weights than a call on each alone wherever the period does not divide B. The rider
    one batch after the last part's first row shows it, and separate calls judge: a wrong
    gradient is found (a copy of the input's first row alone, at offset mB, let it pass for
    (B, period) = (3, 2), (5, 2), (2, 4), (6, 4)), the right one passes."""
    x = np.random.default_rng(0).standard_normal((batch, 4))
    kwargs = {} if elementwise is None else {"elementwise": elementwise}
    wrong = gradcheck.check(_by_position(period, 1.5, rowwise), x, modes=(), **kwargs)
    assert "gradient_mismatch" in wrong.kinds, str(wrong)
    right = gradcheck.check(_by_position(period, 1.0, rowwise), x, modes=(), **kwargs)
    assert right.ok, str(right)


def test_samples_along_a_weight_restore_it_once_and_equal_separate_evaluations(monkeypatch):
    """Four evaluations at moved weights save and restore the weights once
    (_targets.weights_restored), each evaluation assigning every weight: the same outputs,
    bit for bit, as evaluations that restore the weights after each, and the weights hold
    their values again afterwards, also when an evaluation raises."""
    from gradcheck import _reference
    from gradcheck._check import _Run
    from gradcheck._targets import as_target

    restored, held = _reference.weights_restored, []
    monkeypatch.setattr(_reference, "weights_restored",
                        lambda weights: held.append(len(weights)) or restored(weights))

    layer = PReLU()
    x = tf.constant(np.random.default_rng(5).normal(size=(3, 4)), tf.float32)
    layer(x)
    run = _Run(as_target(layer), [x], None, None, None, None, 0)
    assert run.forward_backward() and run.choose_reference()
    k = next(i for i, p in enumerate(run.params) if p.is_weight)
    u = {k: np.random.default_rng(6).choice([-1.0, 1.0], size=run.params[k].value.shape)}
    before = [w.numpy().copy() for w in run.ref_weights]
    together = run.samples(u)
    assert held == [len(run.ref_weights)]
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(run.ref_weights, before))
    for t, part in together.items():
        assert np.array_equal(part, run.f0 if t == 0 else run.evaluate(u, t * run.h))
    calls, real = [], run.values  # what finite differences call

    def third_raises(args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the target's own failure")
        return real(args)

    run.values = third_raises
    with pytest.raises(RuntimeError):
        run.samples(u)
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(run.ref_weights, before))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_passes_as_a_non_elementwise_target(dtype):
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 6)) * 3, dtype)
    report = gradcheck.check(tf.nn.softmax, x, elementwise=False)
    assert report.ok, str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_custom_gradient_with_extra_tensor_parameters_passes(dtype):
    x, a, b = grid(dtype), tf.constant(1.3, dtype), tf.constant(-0.4, dtype)
    assert gradcheck.check(sine_activation, x, a, b).ok


def test_custom_gradient_using_a_variable_passes():
    scale = tf.Variable(1.5, dtype=tf.float64)

    @tf.custom_gradient
    def scaled_tanh(x):
        y = scale * tf.tanh(x)

        def grad(dy, variables=None):
            return dy * scale * (1 - tf.tanh(x) ** 2), [tf.reduce_sum(dy * tf.tanh(x))]

        return y, grad

    assert gradcheck.check(scaled_tanh, grid("float64")).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_with_add_weight_passes(dtype):
    report = gradcheck.check(PReLU(dtype=dtype), grid(dtype))
    assert report.ok, str(report)


def test_lambda_layer_and_tf_function_are_targets():
    assert gradcheck.check(keras.layers.Lambda(swish), grid("float32")).ok
    assert gradcheck.check(tf.function(swish), grid("float64")).ok


def test_domain_end_uses_one_sided_differences():
    # sqrt at 1e-7: x - 2h is negative in float64, so central differences are NaN there.
    report = gradcheck.check(tf.sqrt, tf.constant([1e-7, 0.5, 4.0], tf.float64))
    assert report.ok, str(report)


def test_same_seed_gives_the_same_verdict_and_details():
    a = gradcheck.check(wrong_by_two_percent, grid("float32"), seed=3).to_dict()
    b = gradcheck.check(wrong_by_two_percent, grid("float32"), seed=3).to_dict()
    assert a == b


# ---------------------------------------------------------------------------- buggy targets


@tf.custom_gradient
def wrong_by_two_percent(x):
    s = tf.sigmoid(x)

    def grad(dy):
        return dy * s * (1 + x * (1 - s)) * 1.02

    return x * s, grad


@tf.custom_gradient
def wrong_negative_branch(x):
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(x), tf.exp(x) - 1)  # should be exp(x)

    return y, grad


@tf.custom_gradient
def ignores_dy(x):
    s = tf.sigmoid(x)

    def grad(dy):
        return s * (1 + x * (1 - s))

    return x * s, grad


@tf.custom_gradient
def averages_dy(x):
    s = tf.sigmoid(x)

    def grad(dy):
        return tf.reduce_mean(dy) * s * (1 + x * (1 - s))

    return x * s, grad


def where_nan_trap(x):
    return tf.where(x > 0, x, tf.exp(x) - 1)


def l2_norm_over_batch(x):
    return tf.sqrt(tf.reduce_sum(tf.square(x))) * tf.ones((tf.shape(x)[0], 1), x.dtype)


class RawVariablePReLU(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.alpha = tf.Variable(0.1, trainable=True, name="alpha")

    def call(self, x):
        return tf.where(x > 0, x, self.alpha * x)


def float32_cast(x):
    return tf.cast(tf.nn.softplus(tf.cast(x, tf.float32)), tf.float32)


@tf.custom_gradient
def gradient_of_wrong_shape(x):
    def grad(dy):
        return tf.reduce_sum(dy * 2 * x, axis=0)

    return tf.square(x), grad


def naive_softplus(x):
    return tf.math.log(1 + tf.exp(x))


@tf.custom_gradient
def forgets_b(x, a, b):
    y = tf.sin(a * x + b)

    def grad(dy):
        c = tf.cos(a * x + b)
        return dy * a * c, tf.reduce_sum(dy * x * c), None

    return y, grad


def raises(x):
    raise RuntimeError("boom")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", [wrong_by_two_percent, wrong_negative_branch, ignores_dy,
                                averages_dy], ids=lambda f: f.__name__)
def test_wrong_derivatives_are_gradient_mismatches(fn, dtype):
    report = gradcheck.check(fn, grid(dtype))
    assert report.kinds == ["gradient_mismatch"], str(report)
    detail = report.findings[0].details
    if fn is ignores_dy:  # named by the linearity check, before finite differences
        assert detail["cause"] == "not_linear_in_dy"
        assert detail["tolerance"] < abs(detail["dy1"] + detail["dy2"] - detail["sum"])
    else:
        assert detail["bound"] < abs(detail["analytic"] - detail["numerical"])


def test_a_user_tolerance_that_accepts_it_does_not_hide_a_gradient_ignoring_dy():
    # rtol=10 accepts the derivative for dy * derivative; where the derived tolerance did not
    # decide, the linearity check runs after finite differences and still names the cause.
    report = gradcheck.check(ignores_dy, grid("float32"), rtol=10.0)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert report.findings[0].details["cause"] == "not_linear_in_dy"


def test_the_mismatch_message_names_target_index_value_and_both_sides():
    report = gradcheck.check(wrong_negative_branch, tf.constant([1.0, -2.0], tf.float32))
    text = str(report)
    assert "wrong_negative_branch" in text and "index (1,)" in text and "x = -2" in text
    assert "analytic (your grad fn)" in text and "numerical (finite differences" in text
    assert "reproduce: gradcheck.check(wrong_negative_branch" in text


def test_where_nan_trap_beyond_88_in_float32():
    report = gradcheck.check(where_nan_trap, tf.constant([[100.0], [-1.0]], tf.float32))
    assert report.kinds == ["nonfinite_gradient"]
    assert report.findings[0].details["index"] == [0, 0]
    assert gradcheck.check(where_nan_trap, tf.constant([[50.0], [-1.0]], tf.float32)).ok


def test_l2_norm_over_the_whole_batch_is_batch_coupling():
    x = tf.constant(np.arange(1.0, 9.0).reshape(4, 2), tf.float32)
    report = gradcheck.check(l2_norm_over_batch, x, elementwise=False, batch_independent=True)
    assert report.kinds == ["batch_coupling"], str(report)


def test_raw_tf_variable_in_a_keras3_layer_is_untracked():
    report = gradcheck.check(RawVariablePReLU(), grid("float32"))
    assert "untracked_variable" in report.kinds
    assert "add_weight" in report.findings[0].message


def test_hard_coded_float32_cast_under_float64_is_a_dtype_mismatch():
    report = gradcheck.check(float32_cast, grid("float64"))
    assert report.kinds == ["dtype_mismatch"]
    assert gradcheck.check(float32_cast, grid("float32")).ok


def test_custom_gradient_of_the_wrong_shape_is_a_shape_mismatch():
    report = gradcheck.check(gradient_of_wrong_shape, grid("float32"))
    assert report.kinds == ["shape_mismatch"]
    assert report.findings[0].details["found"] == [5]


def test_float16_only_overflow_is_a_nonfinite_output():
    x = tf.constant([1.0, 12.0], tf.float16)
    report = gradcheck.check(naive_softplus, x)
    assert "nonfinite_output" in report.kinds
    assert report.findings[0].details["index"] == [1]
    assert gradcheck.check(naive_softplus, tf.constant([1.0, 12.0], tf.float32)).ok


def naive_sinc(x):
    return tf.sin(x) / x


def x_log_x(x):
    return x * tf.math.log(x)


def nan_between_1_2_and_1_3(x):
    return tf.where((x > 1.2) & (x < 1.3), tf.math.log(-tf.ones_like(x)), tf.tanh(x))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_nan_where_the_function_has_a_finite_limit_is_a_nonfinite_output(dtype):
    # The float64 reference is the same formula, NaN at the same input: sin(x) / x at 0 and
    # x log x at 0 (a declared end) are 0/0 and 0 * -inf, with limits 1 and 0.
    report = gradcheck.check(naive_sinc, tf.constant([0.0, 0.5], dtype), elementwise=True,
                             modes=())
    assert report.kinds == ["nonfinite_output"], str(report)
    assert report.findings[0].details["index"] == [0]
    assert "finite limit" in report.findings[0].message
    report = gradcheck.check(x_log_x, tf.constant([0.0, 0.5], dtype), domain=(0.0, 1.0),
                             elementwise=True, modes=())
    assert report.kinds == ["nonfinite_output"], str(report)
    inside = gradcheck.check(nan_between_1_2_and_1_3, tf.constant([1.25, 0.5], dtype),
                             domain=(-5.0, 5.0), modes=())
    assert inside.kinds == ["nonfinite_output"], str(inside)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_guard_a_nan_outside_the_functions_domain_is_still_not_a_finding(dtype):
    # log at -0.5 has no finite neighbour; x / |x| at 0 has two limits; x log x at 0 with
    # no domain declared has none below 0; a NaN window with no domain declared: not said
    # to be defined there.
    for target, x in ((tf.math.log, [-0.5, 0.5]), (lambda x: x / tf.abs(x), [0.0, 0.5]),
                      (x_log_x, [0.0, 0.5]), (nan_between_1_2_and_1_3, [1.25, 0.5])):
        report = gradcheck.check(target, tf.constant(x, dtype), elementwise=True, modes=())
        assert report.ok and "outside the function's domain" in str(report), str(report)
    # No limit: x / y at (0, 0) is 0 along y and +-inf along x; x / sum(x) on a row of
    # zeros is constant only when every entry moves together.
    zero = tf.constant([0.0, 1.0], dtype)
    assert gradcheck.check(lambda x, y: x / y, zero, zero, modes=()).ok
    assert gradcheck.check(lambda x: x / tf.reduce_sum(x, -1, keepdims=True),
                           tf.constant([[0.0, 0.0], [1.0, 2.0]], dtype), modes=()).ok


@tf.custom_gradient
def pseudo_huber(x):
    """sqrt(1 + x^2) - 1, its gradient x / sqrt(x * x + 1): x * x overflows float16 past
    |x| = 256, and the gradient is 0 there where it should be +-1 (the forward is safe)."""
    big = tf.abs(x) > 100.0
    safe = tf.where(big, tf.zeros_like(x), x)
    far = tf.maximum(tf.abs(x), 1.0)  # |x| - 1 + 1 / (2 |x|), to float64's precision there
    y = tf.where(big, far - 1.0 + 0.5 / far, tf.sqrt(safe * safe + 1.0) - 1.0)
    return y, lambda dy: dy * x / tf.sqrt(x * x + 1.0)


def test_a_float16_gradient_an_overflowing_intermediate_zeroes_is_found():
    # At |x| = 300 float16's allowance for terms as large as x (2.3) exceeds the whole
    # derivative (1); its float64 formula is right. The error is the same at every input
    # nearby, not rounding.
    report = gradcheck.check(pseudo_huber, tf.constant([300.0, -500.0, 2.0], tf.float16))
    assert report.kinds == ["gradient_mismatch"]
    assert report.findings[0].details["mismatched"] == 2
    # Where the same terms do not overflow, float16 passes, and so does the gradient in float32.
    assert gradcheck.check(pseudo_huber, tf.constant([30.0, -50.0, 2.0], tf.float16)).ok
    assert gradcheck.check(pseudo_huber, tf.constant([300.0, -500.0, 2.0], tf.float32)).ok


@tf.custom_gradient
def asinh_squaring(x):
    """asinh, its derivative 1 / sqrt(1 + x * x): x * x overflows float16 past |x| = 256 and
    zeroes a derivative of 1 / |x| (0.0033 at 300), within float16's allowance for rounding
    unit-sized terms."""
    return tf.math.asinh(x), lambda dy: dy / tf.sqrt(1.0 + x * x)


@tf.custom_gradient
def swish_naive_sigmoid(x):
    """silu, its derivative from a naive sigmoid whose exp(-x) overflows float16 past x =
    -11.1: the derivative (at most 1.5e-4 in size there) flushes to 0."""
    def grad(dy):
        s = 1.0 / (1.0 + tf.exp(-x))
        return dy * (s + x * s * (1.0 - s))
    return tf.nn.silu(x), grad


def test_a_small_float16_derivative_an_overflowing_intermediate_zeroes_is_found():
    report = gradcheck.check(asinh_squaring, tf.constant([300.0, -1000.0, 2.0], tf.float16))
    assert report.kinds == ["gradient_mismatch"]
    finding = report.findings[0]
    assert finding.details["mismatched"] == 2
    assert "Inf or NaN" in finding.message and "float16's range" in finding.message
    # The bound it failed by is the derivative's own rounding, not the 1.8 of large terms.
    assert finding.details["bound"] < 1e-3
    assert gradcheck.check(asinh_squaring, tf.constant([30.0, -50.0, 2.0], tf.float16)).ok
    assert gradcheck.check(asinh_squaring, tf.constant([300.0, -1000.0, 2.0], tf.float32)).ok


def test_a_derivative_an_overflow_flushes_below_the_smallest_normals_is_no_finding():
    # An Inf inside, but what it zeroes is within ten times float16's smallest normal.
    x = tf.constant([-11.5, -13.0, -20.0, 2.0], tf.float16)
    assert gradcheck.check(swish_naive_sigmoid, x).ok


def test_true_overflow_is_not_reported():
    # exp(12) = 162755 does not fit in float16: inf is the right answer there, not a bug.
    assert gradcheck.check(tf.exp, tf.constant([1.0, 12.0], tf.float16)).ok


def test_none_gradient_for_a_used_parameter_is_disconnected():
    x, a, b = grid("float64"), tf.constant(1.3, tf.float64), tf.constant(0.2, tf.float64)
    report = gradcheck.check(forgets_b, x, a, b)
    assert report.kinds == ["disconnected_gradient"]
    assert "b" in report.findings[0].message


def test_unused_parameter_with_none_gradient_is_fine():
    def ignores_second(x, unused):
        return tf.sin(x)

    assert gradcheck.check(ignores_second, grid("float64"), tf.constant(2.0, tf.float64)).ok


def test_softmax_declared_elementwise_is_not_elementwise():
    x = tf.constant(np.random.default_rng(1).normal(size=(3, 4)), tf.float64)
    assert gradcheck.check(tf.nn.softmax, x, elementwise=True).kinds == ["not_elementwise"]


def test_reduction_declared_elementwise_is_a_shape_mismatch():
    report = gradcheck.check(lambda x: tf.reduce_sum(x, axis=-1), grid("float32"),
                             elementwise=True)
    assert report.kinds == ["shape_mismatch"]


def test_the_reproducer_carries_the_options_that_decided_the_verdict():
    report = gradcheck.check(l2_norm_over_batch, grid("float64"), elementwise=False,
                             batch_independent=True, seed=7, modes=())
    assert not report.ok
    assert report.reproducer.endswith(", elementwise=False, batch_independent=True, modes=(), "
                                      "seed=7)"), report.reproducer


def test_a_target_that_raises_is_an_error_finding():
    report = gradcheck.check(raises, grid("float32"))
    assert report.kinds == ["error"]
    assert "RuntimeError" in report.findings[0].message and "boom" in str(report)


class BadGradLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.k = self.add_weight(shape=(), initializer="ones", name="k")

    def call(self, x):
        @tf.custom_gradient
        def scaled(x, k):
            def grad(dy):
                return dy * k, tf.reduce_sum(dy) * 0.5  # d/dk of k*x is sum(dy * x), not 0.5
            return k * x, grad
        return scaled(x, tf.convert_to_tensor(self.k))


def test_mismatch_in_a_weight_gradient_is_found():
    report = gradcheck.check(BadGradLayer(dtype="float64"), grid("float64"))
    assert report.kinds == ["gradient_mismatch"]
    assert "weight" in report.findings[0].message


@tf.custom_gradient
def softmax_missing_the_sum_term(x):
    s = tf.nn.softmax(x)

    def grad(dy):
        return dy * s  # the Jacobian is diag(s) - s s^T: the - s * sum(dy * s) term is missing

    return s, grad


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_low_precision_window_keeps_directional_bugs_visible(dtype):
    # The window of inputs a low dtype cannot tell apart must not absorb a wrong Jacobian on
    # the per-row route, nor a wrong weight gradient on the joint route. (bfloat16's 8-ulp
    # allowance on the terms of a row or weight sum is above both bugs, with or without the
    # window: its detection threshold is coarse, see README.)
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 6)), dtype)
    report = gradcheck.check(softmax_missing_the_sum_term, x, elementwise=False)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert "batch row" in report.findings[0].message
    report = gradcheck.check(BadGradLayer(dtype=dtype), grid(dtype), modes=())
    assert report.kinds == ["gradient_mismatch"], str(report)


@pytest.mark.parametrize("seed", [1911372729, 0, 1, 2, 3])
def test_sparsemax_within_float16_rounding_of_a_support_change_passes(seed):
    # x0 - 1 rounds to -1 in float16: the float16 run sees a tie between x0 and the other
    # entries, i.e. the kink where sparsemax's support grows, 6e-5 away along x0. Its Jacobian
    # there is that of the larger support; the float64 reference's is 0 at the exact input.
    x = np.array([[6.103515625e-05, -1.0, -1.0, -1.0]], dtype="float16")
    report = gradcheck.check(keras.activations.sparsemax, x, elementwise=False, seed=seed,
                             modes=())  # its float16 tf.function failure: test_library_activations
    assert report.ok, str(report)


# ---------------------------------------------------------------------------- report and misuse


def test_assert_gradients_raises_an_assertion_error_carrying_the_report():
    with pytest.raises(gradcheck.GradcheckError) as info:
        gradcheck.assert_gradients(ignores_dy, grid("float32"))
    assert isinstance(info.value, AssertionError)
    assert info.value.report.kinds == ["gradient_mismatch"]
    gradcheck.assert_gradients(swish, grid("float32"))


def test_report_is_json_ready():
    report = gradcheck.check(where_nan_trap, tf.constant([100.0, -1.0], tf.float32))
    data = json.loads(json.dumps(report.to_dict()))
    finding = data["findings"][0]
    assert finding["kind"] == "nonfinite_gradient"
    assert finding["inputs"] == {"x": [100.0, -1.0], "dtype": "float32"}


@pytest.mark.parametrize("call, error, words", [
    (lambda: gradcheck.check(42, np.ones(3)), TypeError, "callable"),
    (lambda: gradcheck.check(swish), TypeError, "no inputs"),
    (lambda: gradcheck.check(swish, np.array([1.0, np.nan])), ValueError, "NaN"),
    (lambda: gradcheck.check(swish, np.ones(3), rtol=-1), ValueError, "rtol"),
    (lambda: gradcheck.check(lambda x: (x, x), np.ones(3)), TypeError, "one tensor"),
    (lambda: gradcheck.check(PReLU, np.ones(3)), TypeError, "instance"),
    (lambda: gradcheck.assert_gradients(swish, np.ones(3), tolerance=1), TypeError, "tolerance"),
])
def test_misuse_of_gradcheck_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


class DenseBiasMean(keras.layers.Layer):
    """x @ w + b, the custom gradient for b the batch mean of dy (the sum is right); w's right."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 2), name="w")
        self.b = self.add_weight(shape=(2,), initializer="ones", name="b")

    def call(self, x):
        @tf.custom_gradient
        def dense(x, w, b):
            def grad(dy):
                return (tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True),
                        tf.reduce_mean(dy, axis=0))
            return tf.matmul(x, w) + b, grad
        return dense(x, tf.convert_to_tensor(self.w), tf.convert_to_tensor(self.b))


def test_a_joint_line_that_fails_names_the_weight_that_fails_alone():
    layer = DenseBiasMean(dtype="float64")
    report = gradcheck.check(layer, np.random.default_rng(3).normal(size=(4, 3)), modes=())
    assert report.kinds == ["gradient_mismatch"]
    assert [label.split("/")[-1] for label in report.findings[0].details["params"]] == ["b:0'"]


def test_not_elementwise_prints_the_two_slopes_apart():
    # A coupling of 1e-8: at six digits both slopes print alike (0.713272).
    def nearly_elementwise(x):
        return x + 1e-8 * tf.reduce_sum(x)

    report = gradcheck.check(nearly_elementwise, np.linspace(-1.0, 1.0, 6), elementwise=True,
                             modes=())
    assert report.kinds == ["not_elementwise"]
    seen, predicted = re.search(r"changed it by (\S+) per unit step where a diagonal Jacobian "
                                r"predicts (\S+);", report.findings[0].message).groups()
    assert seen != predicted
