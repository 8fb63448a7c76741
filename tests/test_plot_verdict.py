"""A figure's verdict is ``pytest --gradcheck``'s: the plot checks with every declared option."""

import importlib
import json
import textwrap

import pytest
import tensorflow as tf  # noqa: F401  (imported once: in-process pytester runs reuse it)

import gradcheck._check  # noqa: F401  (kept across pytester's sys.modules snapshots)
import gradcheck._fuzz  # noqa: F401

pytest.importorskip("matplotlib")
import gradcheck.plot  # noqa: E402
from gradcheck._declare import registered_in  # noqa: E402

# A bug only order=2 sees, a bug only the XLA mode sees, and a correct target checked at
# order 2: a plot that dropped order or modes would call the first two "gradients OK".
TARGETS = '''
    import numpy as np
    import tensorflow as tf
    import gradcheck


    @gradcheck.activation(order=2, modes=(), dtypes=("float32",), domain=(-3, 3))
    @tf.custom_gradient
    def stopped_swish(x):
        def grad(dy):
            s = tf.sigmoid(x)
            return dy * tf.stop_gradient(s + x * s * (1 - s))  # right value, no derivative
        return x * tf.sigmoid(x), grad


    @gradcheck.activation(modes=("eager", "function", "xla"), dtypes=("float32",),
                          domain=(-3, 3))
    @tf.custom_gradient
    def numpy_function_tanh(x):
        y = tf.numpy_function(np.tanh, [x], x.dtype)  # no XLA kernel
        y.set_shape(x.shape)
        return y, lambda dy: dy * (1 - y * y)


    @gradcheck.activation(order=2, dtypes=("float32",), domain=(-3, 3))
    def swish(x):
        return x * tf.sigmoid(x)
'''


def test_a_figure_reaches_the_verdict_of_pytest_gradcheck(pytester):
    pytester.makepyfile(verdicts=textwrap.dedent(TARGETS))
    result = pytester.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "3",
                                          "--gradcheck-report", "report.json")
    result.assert_outcomes(passed=1, failed=2)
    items = json.loads((pytester.path / "report.json").read_text())["results"]
    found = {item["target"]: sorted({f["kind"] for f in item["findings"]}) for item in items}
    assert found == {"verdicts:stopped_swish": ["disconnected_gradient"],
                     "verdicts:numpy_function_tanh": ["mode_mismatch"], "verdicts:swish": []}

    pytester.syspathinsert()
    importlib.import_module("verdicts")  # the registry entries, as pytest --gradcheck saw them
    for entry in registered_in("verdicts"):
        figure = gradcheck.plot.derivatives(entry, points=21)
        (panel,) = figure.gradcheck["panels"]
        assert sorted(panel["check"]) == found[entry.qualified], entry.qualified
