"""Fuzzing compares execution modes on the examples that can show something new (new shapes,
new value classes, everything once one failed), and still finds and shrinks mode bugs."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from shared_targets import swish  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck._mode_sample import ModeSample, value_classes  # noqa: E402


def a(*values, shape=None):
    x = np.array(values, np.float32)
    return (x.reshape(shape) if shape else x,)


# -- the sample ------------------------------------------------------------------------------

def test_value_classes_are_sign_and_binade_per_input():
    classes = value_classes((np.array([1.0, 1.5, -1.0, 0.0, -0.0, 3.0]), np.array(2.0)))
    # 1 and 1.5 share a binade, -1 has the other sign, 3 the next binade, 0 and -0 their own;
    # the second input's classes are its own.
    assert len([c for c in classes if c[0] == 0]) == 5
    assert len([c for c in classes if c[0] == 1]) == 1


def test_new_shapes_and_new_classes_compare_and_repeats_do_not():
    sample = ModeSample()
    first = a(1.0, -2.0)
    assert sample.wanted(first)
    sample.record(first, compared=True, ok=True)
    assert not sample.wanted(a(1.5, -3.0))  # same shapes, same signs and binades
    assert sample.wanted(a(1.5, -300.0))  # a new binade
    assert sample.wanted(a(1.0, 0.0))  # zero
    assert sample.wanted(a(1.0, -2.0, shape=(1, 2)))  # new shapes
    assert sample.wanted(a(1.0, 1e-40))  # a float32 subnormal: its own binade


def test_classes_count_as_compared_only_after_a_comparison_passed():
    sample = ModeSample()
    x = a(1.0, -2.0)
    sample.record(x, compared=False, ok=True)
    assert sample.wanted(x)
    sample.record(x, compared=True, ok=True)
    assert not sample.wanted(x)


def test_every_example_compares_once_one_failed():
    # Hypothesis shrinks and replays a failure: those inputs meet the full check, and a replay
    # the same check as the first time.
    sample = ModeSample()
    x = a(1.0, -2.0)
    sample.record(x, compared=True, ok=True)
    sample.record(a(5.0), compared=False, ok=False)
    assert sample.wanted(x)
    assert sample.count == 1


# -- fuzzing -------------------------------------------------------------------------------------

def fuzzed(target, examples=60, **options):
    return gradcheck.fuzz(target, dtype="float32", max_examples=examples, hypothesis_seed=5,
                          **options)


def test_a_correct_target_compares_modes_on_fewer_examples():
    report = fuzzed(swish, domain=(-4.0, 4.0))
    assert report.ok, str(report)
    assert 1 <= report.meta["modes_compared"] < report.meta["examples"]


def negative_differs_when_traced(x):
    """Eager and traced differ for negative x only: a value-dependent mode bug."""
    slope = 1.0 if tf.executing_eagerly() else 1.5
    return tf.where(x < 0, x * tf.cast(slope, x.dtype), x)


def large_differs_when_traced(x):
    """Eager and traced differ beyond |x| = 64 only (e.g. an overflow guard kept when traced)."""
    if tf.executing_eagerly():
        return x * tf.sigmoid(x)
    return tf.where(tf.abs(x) > 64, tf.zeros_like(x), x * tf.sigmoid(x))


@pytest.mark.parametrize("target", [negative_differs_when_traced, large_differs_when_traced])
def test_a_mode_bug_in_a_range_of_values_is_found_and_shrunk(target):
    report = fuzzed(target, examples=100, domain=(-100.0, 100.0))
    assert report.kinds == ["mode_mismatch"], str(report)
    x = np.asarray(report.findings[0].inputs["x"])
    assert x.size <= 2  # shrunk to a minimal input, compared where it was shrunk


def float32_constant_when_traced(x):
    """tf.where with a Python float: a float32 constant when traced, wrong for float16."""
    return tf.where(x > 0, 1.0, tf.exp(x)) * x


def test_a_mode_bug_at_trace_time_is_found_at_once():
    report = gradcheck.fuzz(float32_constant_when_traced, dtype="float16", max_examples=30,
                            hypothesis_seed=5, domain=(-10.0, 10.0))
    assert "mode_mismatch" in report.kinds, str(report)
