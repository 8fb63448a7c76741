"""Execution modes: eager vs tf.function vs tf.function(jit_compile=True) (and CPU vs GPU)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from shared_targets import swish

import gradcheck  # noqa: E402
from gradcheck import _modes  # noqa: E402

X = np.linspace(-3.0, 3.0, 10).reshape(2, 5)


def x32(shape=(2, 5)):
    return tf.constant(np.linspace(-3.0, 3.0, int(np.prod(shape))).reshape(shape), tf.float32)


# ---------------------------------------------------------------------------- buggy targets


def logs_its_mean(x):
    """Logging through .numpy(): fine eagerly, impossible on a symbolic tensor."""
    logs_its_mean.seen.append(float(tf.reduce_mean(x).numpy()))
    return x * tf.sigmoid(x)


logs_its_mean.seen = []

TEMPERATURE = {"value": 1.0}


def tempered_tanh(x):
    """Reads a Python value: tf.function freezes it at trace time."""
    return tf.tanh(x / TEMPERATURE["value"])


def debug_branch(x):
    """Takes another path when traced."""
    return tf.sin(x) if tf.executing_eagerly() else tf.cos(x)


@tf.custom_gradient
def numpy_function_tanh(x):
    """tf.numpy_function runs in tf.function, but XLA has no kernel for it."""
    y = tf.numpy_function(np.tanh, [x], x.dtype)
    y.set_shape(x.shape)
    return y, lambda dy: dy * (1 - y * y)


def test_numpy_call_breaks_under_tf_function():
    report = gradcheck.check(logs_its_mean, x32())
    assert report.kinds == ["mode_mismatch"], str(report)
    finding = report.findings[0]
    assert finding.details["mode"] == "function"
    assert finding.details["exception"] == "AttributeError"
    assert "tf.function" in finding.message and "numpy" in finding.message
    assert "test_modes.py" in finding.message  # the user's own line, not TensorFlow's
    assert "traceback_tail" in finding.details


def test_python_value_frozen_at_trace_time_is_a_mode_mismatch():
    x = x32()
    assert gradcheck.check(tempered_tanh, x).ok  # traced with temperature 1, cached
    TEMPERATURE["value"] = 2.0
    try:
        report = gradcheck.check(tempered_tanh, x)
    finally:
        TEMPERATURE["value"] = 1.0
    assert report.kinds == ["mode_mismatch"], str(report)
    details = report.findings[0].details
    assert details["mode"] == "function" and details["difference"] > details["tolerance"]
    assert "output differs" in report.findings[0].message


def test_a_branch_on_executing_eagerly_is_a_mode_mismatch():
    report = gradcheck.check(debug_branch, x32())
    assert report.kinds == ["mode_mismatch"]
    assert "tf.function (mode 'function')" in report.findings[0].message


def test_an_op_without_an_xla_kernel_fails_only_under_xla():
    x = x32()
    assert gradcheck.check(numpy_function_tanh, x).ok  # xla is opt-in
    report = gradcheck.check(numpy_function_tanh, x, modes=("eager", "function", "xla"))
    assert report.kinds == ["mode_mismatch"], str(report)
    assert report.findings[0].details["mode"] == "xla"
    assert "jit_compile=True" in report.findings[0].message


def test_a_gradient_that_disagrees_only_when_traced_is_found():
    @tf.custom_gradient
    def traced_grad_is_wrong(x):
        def grad(dy):
            return dy * (1.0 if tf.executing_eagerly() else 2.0)

        return tf.identity(x), grad

    report = gradcheck.check(traced_grad_is_wrong, x32())
    assert report.kinds == ["mode_mismatch"]
    assert "gradient for input x" in report.findings[0].message


def test_modes_off():
    assert gradcheck.check(logs_its_mean, x32(), modes=()).ok
    assert gradcheck.check(logs_its_mean, x32(), modes=("eager",)).ok


# ---------------------------------------------------------------------------- correct targets


def per_feature_mean(x):
    """Uses the static feature size as a Python number, as Keras layers do."""
    return x - tf.reduce_sum(x, axis=-1, keepdims=True) / float(x.shape[-1])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_correct_targets_agree_in_every_mode(dtype):
    modes = ("eager", "function", "xla")
    x = tf.cast(x32(), dtype)
    for fn in (swish, tf.nn.gelu, tf.nn.softplus):
        report = gradcheck.check(fn, x, modes=modes)
        assert report.ok, str(report)
    layer = keras.layers.Dense(3, activation="tanh", dtype=dtype)
    layer(x)
    report = gradcheck.check(layer, x, elementwise=False, modes=modes)
    assert report.ok, str(report)


def test_a_target_needing_static_shapes_is_traced_with_them():
    assert gradcheck.check(per_feature_mean, x32(), elementwise=False).ok


def test_one_trace_serves_every_shape_of_a_rank():
    # One dynamic trace for every shape, plus one traced as a Keras model would (batch axis
    # None) for the first feature shape seen: two traces in all, whatever the shapes.
    def fresh_swish(x):
        return x * tf.sigmoid(x)

    for shape in [(2, 5), (3, 4), (7, 1), (1, 9), (6, 5)]:
        assert gradcheck.check(fresh_swish, x32(shape)).ok
    traced = [fn for (key, (owner, fn)) in _modes._CACHE.items() if owner is fresh_swish]
    signatures = {key[3] for key, (owner, _) in _modes._CACHE.items() if owner is fresh_swish}
    assert signatures == {((None, 5), (None, 5)), ((None, None), (None, None))}
    assert sum(fn.experimental_get_tracing_count() for fn in traced) == 2


def ranked(x):
    """keras' sparsemax does this: a float16 tf.range has a kernel eagerly, but once the
    feature axis is static the traced graph constant-folds it into a Range[Tidx=DT_HALF] node
    that has none."""
    return x * tf.range(1, tf.shape(x)[-1] + 1, dtype=x.dtype)


def test_a_failure_only_with_static_feature_axes_is_found():
    x = x32((3, 4))
    assert gradcheck.check(ranked, x, elementwise=False).ok
    report = gradcheck.check(ranked, tf.cast(x, tf.float16), elementwise=False)
    assert report.kinds == ["mode_mismatch"], str(report)
    message = report.findings[0].message
    assert "input shape [None, 4] of a Keras model" in message and "Range" in message


def test_modes_are_validated():
    with pytest.raises(ValueError, match="unknown mode 'graph'"):
        gradcheck.check(swish, x32(), modes=("graph",))
    with pytest.raises(ValueError, match="modes"):
        gradcheck.activation(modes=("jit",))(swish)


# ---------------------------------------------------------------------------- CPU vs GPU


def test_cpu_vs_gpu_is_compared_where_a_gpu_is_visible(monkeypatch):
    """No GPU in CI: stand one in with the CPU, and a target whose kernel differs per device
    (a target can tell an explicit device scope, which only the CPU run has)."""
    from tensorflow.python.eager import context

    def device_dependent(x):
        return tf.sin(x) if not context.context().device_name else tf.sin(x) * 1.01

    x = x32()
    assert gradcheck.check(device_dependent, x, modes=("eager", "function")).ok
    monkeypatch.setattr(_modes, "gpu_devices", lambda: ["/GPU:0"])
    report = gradcheck.check(device_dependent, x, modes=("eager", "function"))
    assert report.kinds == ["mode_mismatch"], str(report)
    assert "/CPU:0" in report.findings[0].message and "/GPU:0" in report.findings[0].message
    assert report.findings[0].details["mode"] == "/CPU:0 vs /GPU:0"
    assert gradcheck.check(swish, x).ok


def test_a_mode_that_makes_a_nan_where_eager_is_finite_also_suspects_the_graph_optimizer():
    # A float16 ScaleNorm's gradient is NaN under tf.function with an unknown batch size
    # (TensorFlow's arithmetic optimizer reorders it, an intermediate overflows): the message
    # blamed only the user's Python.
    from gradcheck._modes import _causes

    assert "graph optimizer" in _causes(float("nan")) and "graph optimizer" in _causes(np.inf)
    assert "graph optimizer" not in _causes(0.25)
