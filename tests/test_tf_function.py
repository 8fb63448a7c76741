"""tf.function targets: the user's decorated function is what is checked, traced once per
dtypes and ranks (not per drawn shape), and called the same way by every part of a check."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from shared_targets import swish  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck._targets import FunctionTarget, as_target  # noqa: E402


def fuzzed(target, dtype="float32", examples=25, **options):
    return gradcheck.fuzz(target, dtype=dtype, max_examples=examples, hypothesis_seed=3,
                          **options)


def test_a_tf_function_target_is_the_users_function():
    f = tf.function(swish)
    target = as_target(f)
    assert isinstance(target, FunctionTarget) and target.fn is f
    assert target.name == "swish" and target.arg_names == ["x"]


def test_taped_and_untaped_calls_agree_bit_for_bit():
    # Without a tape, TensorFlow may run another graph of the same tf.function (x * sigmoid(x)
    # fused into one kernel); a check compares calls and must not see that as noise.
    f = tf.function(swish)
    x = tf.constant(np.random.default_rng(0).normal(size=(40, 30)) * 3, tf.float32)
    target = as_target(f)
    untaped = target([x]).numpy()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        taped = target([x])
    np.testing.assert_array_equal(untaped, taped.numpy())


@pytest.mark.parametrize("x", [[1.25], [0.5, -2.0, 7.0]])
def test_a_correct_tf_function_passes(x):
    report = gradcheck.check(tf.function(swish), np.array(x, np.float32))
    assert report.ok, str(report)


def test_fuzzing_traces_once_per_dtype_and_rank():
    f = tf.function(swish)
    report = fuzzed(f, examples=40, domain=(-100.0, 100.0))
    assert report.ok, str(report)
    # Per rank (1 to 4): one float32 trace with the first input's shapes, one with None
    # dimensions (the mode check's too), one float64 trace with None dimensions for the
    # reference: 12 at most, however many shapes were drawn (one per new shape and dtype
    # before: about 25 here).
    assert f.experimental_get_tracing_count() <= 12


def per_feature_mean(x):
    """Needs the static feature size as a Python number: its trace fails with None dims."""
    return x - tf.reduce_sum(x, axis=-1, keepdims=True) / float(x.shape[-1])


def test_a_tf_function_that_needs_static_shapes_is_called_as_it_is():
    f = tf.function(per_feature_mean)
    x = tf.constant(np.linspace(-3.0, 3.0, 10).reshape(2, 5), tf.float32)
    assert gradcheck.check(f, x, elementwise=False).ok
    assert fuzzed(f, examples=10, input_shape=(None, 3), elementwise=False).ok


def test_a_graph_that_only_static_shapes_break_is_found():
    @tf.function
    def static_only(x):
        if x.shape[-1] is not None:  # e.g. constant folding with a static shape
            raise ValueError("no kernel for this static shape")
        return x * tf.sigmoid(x)

    x = np.linspace(-3.0, 3.0, 10).reshape(2, 5).astype(np.float32)
    report = gradcheck.check(static_only, x)
    assert report.kinds == ["error"], str(report)
    assert "no kernel for this static shape" in report.findings[0].message


def test_a_tf_function_with_an_input_signature_is_called_as_it_is():
    f = tf.function(swish, input_signature=[tf.TensorSpec([None, 5], tf.float32)])
    x = np.linspace(-3.0, 3.0, 10).reshape(2, 5).astype(np.float32)
    assert gradcheck.check(f, x).ok
    assert f.experimental_get_tracing_count() == 1


def test_a_wrong_gradient_that_exists_only_when_traced_is_found():
    @tf.function
    @tf.custom_gradient
    def traced_grad_is_wrong(x):
        def grad(dy):
            return dy * (1.0 if tf.executing_eagerly() else 2.0)

        return tf.identity(x), grad

    report = gradcheck.check(traced_grad_is_wrong, np.linspace(-1.0, 1.0, 6, dtype=np.float32))
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert fuzzed(traced_grad_is_wrong, examples=10).kinds == ["gradient_mismatch"]


def test_a_tf_function_that_cannot_trace_is_an_error():
    @tf.function
    def logs_its_mean(x):
        print(float(tf.reduce_mean(x).numpy()))  # no .numpy() on a symbolic tensor
        return x * tf.sigmoid(x)

    report = gradcheck.check(logs_its_mean, np.linspace(-1.0, 1.0, 6, dtype=np.float32))
    assert report.kinds == ["error"], str(report)
    assert "numpy" in report.findings[0].message


def test_the_float64_reference_is_the_python_code_where_it_matches():
    x = [tf.constant(np.linspace(-3.0, 3.0, 6), tf.float32)]
    reference, _, y = as_target(tf.function(swish)).float64_reference(x, [])
    assert not isinstance(reference, FunctionTarget) and y.dtype == tf.float64


def test_the_reference_is_compared_with_the_output_the_caller_already_has():
    # check() passes the core's output: the eager float64 code is matched against it, not
    # against a second call of the tf.function (~1 ms each)
    f = tf.function(swish)
    x = [tf.constant(np.linspace(-3.0, 3.0, 6), tf.float32)]
    own = f(x[0])
    reference, _, _ = as_target(f).float64_reference(x, [], own=own)
    assert not isinstance(reference, FunctionTarget)
    reference, _, _ = as_target(f).float64_reference(x, [], own=tf.cos(x[0]))  # other values
    assert isinstance(reference, FunctionTarget)  # so it was what the comparison used


def debug_branch(x):
    """Runs another formula eagerly than traced; as a tf.function it only ever runs traced."""
    return tf.sin(x) if tf.executing_eagerly() else tf.cos(x)


def test_python_code_that_differs_eagerly_is_not_the_reference():
    f = tf.function(debug_branch)
    x = [tf.constant(np.linspace(-3.0, 3.0, 6), tf.float32)]
    reference, _, _ = as_target(f).float64_reference(x, [])
    assert isinstance(reference, FunctionTarget)  # the traced twin: cos, like the target
    report = gradcheck.check(f, x[0].numpy())
    assert report.ok and report.reference_dtype == "float64", str(report)
