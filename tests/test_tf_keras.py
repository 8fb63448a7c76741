"""tf-keras (Keras 2): the cases in tests/tf_keras_cases/ pass under TF_USE_LEGACY_KERAS=1, and
which Keras a layer belongs to is read from the layer.

TensorFlow reads TF_USE_LEGACY_KERAS once, when it is imported, so the tf-keras cases run in one
subprocess per session with the variable set (a JUnit XML file gives each case's outcome, one
test here per case, so a failure names its case). Skipped where tf-keras is not installed.
The Keras 3 half of each claim runs here, in this process.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradcheck
from gradcheck import _kerases as kerases

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "tf_keras_cases" / "cases_tf_keras.py"
RUN_TIMEOUT_S = 600
HAS_TF_KERAS = importlib.util.find_spec("tf_keras") is not None


def case_names() -> list[str]:
    tree = ast.parse(CASES.read_text())
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory):
    """The cases' outcomes ({name: "passed" | "failed: ..." | "skipped: ..."}), the output."""
    junit = tmp_path_factory.mktemp("tf_keras") / "junit.xml"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env["TF_USE_LEGACY_KERAS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugin"),
                                         env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", str(CASES), "-q", "-p", "no:randomly",
               "-p", "no:cacheprovider", "--hypothesis-profile=ci", f"--junitxml={junit}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    output = (done.stdout + done.stderr)[-6000:]
    if not junit.exists():
        pytest.fail(f"the tf-keras run wrote no JUnit XML (exit {done.returncode}):\n{output}")
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcomes[case.get("name")] = ("passed" if problem is None else
                                      f"{problem.tag}: {problem.get('message', '')[:2000]}")
    return outcomes, output


@pytest.mark.skipif(not HAS_TF_KERAS, reason="tf-keras is not installed (pip install tf-keras "
                    "matching TensorFlow's version, as the test extra does)")
@pytest.mark.parametrize("case", case_names())
def test_case_passes_under_tf_keras(legacy_run, case):
    outcomes, output = legacy_run
    assert case in outcomes, f"{case} did not run under TF_USE_LEGACY_KERAS=1:\n{output}"
    assert outcomes[case] == "passed", f"{outcomes[case]}\n{output}"


# -- the Keras 3 half, in this process -----------------------------------------------------------

def load_seed_000():
    spec = importlib.util.spec_from_file_location(
        "seed_000_keras3", ROOT / "tests" / "tf_keras_cases" / "seed_000.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_000_tf_variable_is_untracked_under_keras_3():
    layer = load_seed_000().ParametricReLU()
    assert kerases.keras_of(layer) is keras
    report = gradcheck.check(layer, tf.constant(np.linspace(-2.1, 1.9, 12).reshape(4, 3),
                                                tf.float32))
    assert report.kinds == ["untracked_variable"], str(report)


def test_layers_lambdas_and_other_things_are_told_apart():
    dense, wrapped = keras.layers.Dense(2), keras.layers.Lambda(tf.nn.softplus)
    assert kerases.is_layer_class(keras.layers.Dense) and not kerases.is_layer(keras.layers.Dense)
    assert kerases.is_layer(dense) and not kerases.is_layer_class(dense)
    assert kerases.is_lambda(wrapped) and not kerases.is_lambda(dense)
    for other in (int, 3, tf.nn.softplus, None):
        assert kerases.keras_of(other) is None
        assert not (kerases.is_layer(other) or kerases.is_layer_class(other)
                    or kerases.is_lambda(other))


def test_dtype_scope_sets_and_restores_keras_3_globals():
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy().name
    with kerases.dtype_scope("float64", [keras]):
        assert keras.config.floatx() == "float64"
        assert keras.layers.Dense(2).dtype_policy.name == "float64"
    with kerases.dtype_scope("mixed_float16", [keras], set_floatx=False):
        assert keras.config.floatx() == floatx
        assert keras.config.dtype_policy().name == "mixed_float16"
    assert (keras.config.floatx(), keras.config.dtype_policy().name) == (floatx, policy)


def test_a_trace_only_failure_inside_a_keras_3_layer_shows_the_error_not_the_arguments():
    class Float32Zero(keras.layers.Layer):
        def call(self, x):
            return tf.maximum(0.0, x)  # the 0.0 is float32 in a graph

    report = gradcheck.check(Float32Zero(dtype="float64"), tf.constant([[1.0, -2.0]], tf.float64))
    assert report.kinds == ["mode_mismatch"], str(report)
    message = report.findings[0].message
    assert "'Maximum' Op has type float64 that does not match type float32" in message
    assert "received by" not in message and "\x1b" not in message
    assert "tf.zeros_like(x)" in message
