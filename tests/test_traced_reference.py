"""A layer's finite-difference values through its traced graph (``_traced_reference.py``).

From its second check on, a float64 twin whose graph computes with several ops is called
through one concrete function for its values, where its traced output at the input is its
eager one. What must hold: the same verdicts (a right layer passes, a wrong derivative is
found, at every check), the eager calls that remain, and the guard: a layer whose trace
computes another formula is called eagerly, so finite differences never mix two formulas.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck


class DenseSoftsign(keras.layers.Layer):
    """softsign(x @ W + b), the softsign by a custom gradient whose derivative is scaled by
    ``factor`` (1: right). Counts the Python executions of ``call`` (eager calls; a traced
    graph runs none)."""

    def __init__(self, factor=1.0, traced_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.traced_scale, self.calls = factor, traced_scale, 0

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 3),
                                 initializer=keras.initializers.RandomUniform(-1, 1, seed=3))
        self.b = self.add_weight(name="b", shape=(3,),
                                 initializer=keras.initializers.Constant(0.1))

    def call(self, x):
        self.calls += 1
        factor = self.factor

        @tf.custom_gradient
        def softsign(z):
            def grad(dy):
                return dy * factor / tf.square(1 + tf.abs(z))

            return z / (1 + tf.abs(z)), grad

        y = softsign(tf.matmul(x, self.w) + self.b)
        if not tf.executing_eagerly():  # another formula when traced (the guard's case)
            y = y * self.traced_scale
        return y

    def get_config(self):
        return {**super().get_config(), "factor": self.factor,
                "traced_scale": self.traced_scale}


class Scaled(keras.layers.Layer):
    """x * a: one op, too few for a trace to pay."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(), initializer=keras.initializers.Constant(1.5))

    def call(self, x):
        self.calls += 1
        return x * self.a


def _cached_builder(make):
    """A reference builder as fuzzing has one: each dtype's layer built once, then reused."""
    built = {}

    def build(dtype):
        if dtype not in built:
            built[dtype] = make(dtype)
        return built[dtype]

    return build, built


def _checks(make, dtype="float32", count=3, **options):
    """``count`` checks of one layer at different inputs with one cached float64 twin: their
    reports, and the twin's eager calls in each."""
    build, built = _cached_builder(make)
    layer = make(dtype)
    rng = np.random.default_rng(5)
    reports, calls = [], []
    for _ in range(count):
        x = rng.uniform(-3, 3, (4, 2)).astype(dtype)
        before = built["float64"].calls if "float64" in built else 0
        reports.append(gradcheck.check(layer, x, reference=build, **options))
        calls.append(built["float64"].calls - before)
    return reports, calls


def test_a_reused_twin_is_called_through_its_trace():
    reports, calls = _checks(lambda d: DenseSoftsign(dtype=d))
    assert all(r.ok for r in reports), [str(r) for r in reports]
    assert reports[0].reference_dtype == "float64"
    # First check: every value is an eager call (the input, the probes, 4 samples a route);
    # later: the reference's own call at the input and one at an input nearby, which the
    # trace is held to, and only those (the trace itself runs call once, in the second).
    assert calls[0] >= 8
    assert calls[2] == 2


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_wrong_derivative_is_found_at_every_check(dtype):
    reports, calls = _checks(lambda d: DenseSoftsign(factor=1.3, dtype=d), dtype=dtype)
    assert calls[2] <= 4  # traced (the twin's gradients may be asked for: the low dtype's rules)
    for report in reports:
        assert "gradient_mismatch" in report.kinds, str(report)


def test_a_layer_whose_trace_computes_another_formula_stays_eager():
    # Traced, its output is 1.5 times the eager one: the trace does not stand for the eager
    # calls, so finite differences keep calling it eagerly and the check passes with modes
    # off. (With modes on, the difference itself is the mode check's finding.)
    reports, calls = _checks(lambda d: DenseSoftsign(traced_scale=1.5, dtype=d), modes=())
    assert all(r.ok for r in reports), [str(r) for r in reports]
    assert calls[2] >= 8
    moded, _ = _checks(lambda d: DenseSoftsign(traced_scale=1.5, dtype=d), count=2)
    assert moded[1].kinds == ["mode_mismatch"], str(moded[1])


def test_a_layer_of_few_ops_stays_eager():
    reports, calls = _checks(lambda d: Scaled(dtype=d))
    assert all(r.ok for r in reports)
    assert calls[0] >= calls[2] >= 8  # the first check also builds it


def test_a_twin_built_per_check_is_not_traced():
    layer = DenseSoftsign()
    x = np.linspace(-2, 2, 8).reshape(4, 2).astype(np.float32)
    twins = []

    def build(dtype):
        twins.append(DenseSoftsign(dtype=dtype))
        return twins[-1]

    for _ in range(2):
        assert gradcheck.check(layer, x, reference=build).ok
    fresh = [t for t in twins if t.dtype == "float64"]
    assert len(fresh) == 2 and all(t.calls >= 8 for t in fresh)


class SlopedTanh(keras.layers.Layer):
    """tanh(z) cos(z) + slope z, z = x @ W, ``slope`` a Python attribute the caller changes
    between checks. ``stale=True``: the custom gradient uses the slope of build time (a
    bug once it changes); else autodiff (right)."""

    def __init__(self, slope=0.1, stale=False, **kwargs):
        super().__init__(**kwargs)
        self.slope, self.stale = slope, stale

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 3),
                                 initializer=keras.initializers.RandomUniform(-1, 1, seed=4))
        self.built_slope = self.slope

    def call(self, x):
        z = tf.matmul(x, self.w)
        slope, built = self.slope, self.built_slope
        if not self.stale:
            return tf.tanh(z) * tf.cos(z) + slope * z

        @tf.custom_gradient
        def act(z):
            def grad(dy):
                t = tf.tanh(z)
                return dy * ((1 - t * t) * tf.cos(z) - t * tf.sin(z) + built)

            return tf.tanh(z) * tf.cos(z) + slope * z, grad

        return act(z)

    def get_config(self):
        return {**super().get_config(), "slope": self.slope, "stale": self.stale}


@pytest.mark.parametrize("stale", [False, True])
def test_a_python_value_changed_after_the_trace_is_not_read_from_it(stale):
    """Review: the trace freezes ``slope`` at the second check; at x = 0 every ``k z``
    agrees with it, so a trace held to the input alone gave finite differences the old
    slope. A right layer then failed, and one whose gradient keeps the old slope (a bug)
    passed. The trace is also held to an input nearby, where they part."""
    layer = SlopedTanh(stale=stale)
    twins = {}

    def build(dtype):
        twins.setdefault(dtype, SlopedTanh(stale=stale, dtype=dtype)).slope = layer.slope
        return twins[dtype]

    x = np.zeros((2, 4), np.float32)
    reports = []
    for slope in (0.1, 0.1, 0.5):
        layer.slope = slope
        reports.append(gradcheck.check(layer, x, reference=build, modes=()))
    assert [r.kinds for r in reports[:2]] == [[], []], [str(r) for r in reports]
    assert reports[2].kinds == (["gradient_mismatch"] if stale else []), str(reports[2])
