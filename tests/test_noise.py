"""Noise: gradcheck's own tracing raises no retracing warning, Keras' ANSI escapes do not reach
findings, and the workflow's claim about TF_CPP_MIN_LOG_LEVEL is true."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import gradcheck
from gradcheck._quiet import RETRACING

ROOT = Path(__file__).resolve().parents[1]


def test_checking_many_targets_logs_no_retracing_warning_for_gradchecks_tracing(caplog):
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for n in range(1, 9):  # the mode check traces each target: TensorFlow warns from
            # the 5th trace of its function in 10 calls
            assert gradcheck.check(lambda x, n=n: tf.tanh(x) * n, np.linspace(-1, 1, 3)).ok
    assert not [r for r in caplog.records if RETRACING in r.getMessage()]


def test_the_users_own_retracing_outside_checks_is_still_logged(caplog):
    @tf.function
    def users_own(x):
        return x * 2

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for n in range(1, 9):
            users_own(tf.ones(n))
    assert [r for r in caplog.records if RETRACING in r.getMessage()]


def test_ansi_escapes_are_stripped_from_finding_messages_and_details():
    finding = gradcheck.Finding("error", "raised \x1b[1mValueError\x1b[0m: bad",
                                details={"traceback_tail": "\x1b[31mred\x1b[0m"})
    assert finding.message == "raised ValueError: bad"
    assert finding.to_dict()["details"]["traceback_tail"] == "red"


def test_a_keras_error_with_escapes_reaches_the_report_plain():
    import keras

    class ReshapesWrongly(keras.layers.Layer):
        def call(self, x):
            return tf.reshape(x, (7,))  # Keras wraps the error in bold: \x1b[1m...\x1b[0m

    report = gradcheck.check(ReshapesWrongly(), np.ones(3, np.float32), elementwise=False)
    assert report.kinds == ["error"] and "Input to reshape" in str(report)
    assert "\x1b" not in str(report) and "\x1b" not in str(report.to_dict())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX environment handling")
def test_the_workflow_says_what_tf_cpp_min_log_level_hides():
    workflow = (ROOT / "examples" / "github_workflow.yml").read_text()
    assert 'TF_CPP_MIN_LOG_LEVEL: "2"' in workflow
    assert "start-up lines printed before" in workflow  # the ones it cannot hide
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.constant(1.0)"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert "cpu_feature_guard" not in done.stderr  # the C++ INFO logging it does hide
