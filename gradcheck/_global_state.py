"""The process-wide settings a target may change, put back after each fuzz item.

A target runs user code, and user code sets globals: Keras' dtype policy
(``set_global_policy("mixed_float16")``) or ``floatx``, ``tf.config.run_functions_eagerly``,
XLA's auto-jit, NumPy's error handling (``np.seterr(all="raise")``), TensorFlow's
``enable_check_numerics``, the working directory, warning filters, or a patched
``tf.function``. Left set, they change the verdicts of every later item of the session: a
correct float32 layer built after a mixed policy was set computes in float16 and fails as a
``dtype_mismatch``; NumPy raising on underflow fails gradcheck's own arithmetic. So each item
starts from the settings the session had before it (:func:`restored_global_state`), and the
item that changed them answers for itself only. Random seeds are not restored: fuzzing seeds
what it draws itself.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

__all__ = ["exit_zero_fails", "restored_global_state"]

#: Module attributes a target might replace (a "no-op" tf.function), by module.
_PATCHABLE = {tf: ("function", "GradientTape", "custom_gradient", "constant",
                   "convert_to_tensor", "cast", "where", "Variable"),
              np: ("asarray", "array", "float64", "isfinite")}


@contextmanager
def restored_global_state() -> Iterator[None]:
    """Run the block, then put the settings of the module docstring back as they were.
    Within it, ``os._exit(0)`` exits with status 1 (:func:`exit_zero_fails`)."""
    saved = _snapshot()
    try:
        with exit_zero_fails():
            yield
    finally:
        _restore(saved)


@contextmanager
def exit_zero_fails() -> Iterator[None]:
    """Within the block, ``os._exit(0)`` exits with status 1: a run that a target (or the
    import of its module) cut short must not read as a success to CI."""
    real_exit, pid = os._exit, os.getpid()
    # A child the target forks (multiprocessing) exits as it says.
    os._exit = lambda status: real_exit(status or int(os.getpid() == pid))
    try:
        yield
    finally:
        os._exit = real_exit


def _snapshot() -> dict[str, Any]:
    saved: dict[str, Any] = {
        "cwd": _try(os.getcwd),
        "seterr": np.geterr(),
        "warnings": list(warnings.filters),
        "eagerly": tf.config.functions_run_eagerly(),
        "jit": _try(tf.config.optimizer.get_jit),
        "callbacks": list(_op_callbacks()),
        "attributes": {(module, name): getattr(module, name)
                       for module, names in _PATCHABLE.items() for name in names},
        "kerases": {name: (_try(lambda k=sys.modules[name]: k.mixed_precision.global_policy()
                                .name), _try(sys.modules[name].backend.floatx))
                    for name in ("keras", "tf_keras") if name in sys.modules},
    }
    return saved


def _restore(saved: dict[str, Any]) -> None:
    for (module, name), value in saved["attributes"].items():
        if getattr(module, name, None) is not value:
            setattr(module, name, value)
    np.seterr(**saved["seterr"])
    warnings.filters[:] = saved["warnings"]
    if tf.config.functions_run_eagerly() != saved["eagerly"]:
        tf.config.run_functions_eagerly(saved["eagerly"])
    if saved["jit"] is not None and _try(tf.config.optimizer.get_jit) != saved["jit"]:
        _try(lambda: tf.config.optimizer.set_jit(saved["jit"]))
    for callback in _op_callbacks():
        if all(callback is not kept for kept in saved["callbacks"]):
            _try(lambda c=callback: _remove_op_callback(c))
    for name, (policy, floatx) in saved["kerases"].items():
        keras = sys.modules[name]
        if policy is not None and _try(lambda k=keras: k.mixed_precision.global_policy()
                                       .name) != policy:
            _try(lambda k=keras, p=policy: k.mixed_precision.set_global_policy(p))
        if floatx is not None and _try(keras.backend.floatx) != floatx:
            _try(lambda k=keras, f=floatx: k.backend.set_floatx(f))
    if saved["cwd"] is not None and _try(os.getcwd) != saved["cwd"]:
        _try(lambda: os.chdir(saved["cwd"]))


def _op_callbacks() -> list:
    """TensorFlow's op callbacks (``enable_check_numerics`` adds one): private API, so
    none where it is not there."""
    try:
        from tensorflow.python.eager import context
        return list(context.context().op_callbacks)
    except Exception:  # noqa: BLE001
        return []


def _remove_op_callback(callback: Any) -> None:
    from tensorflow.python.framework import op_callbacks
    op_callbacks.remove_op_callback(callback)


def _try(call: Any) -> Any:
    """``call()``, or None where it raises (a setting this TensorFlow or Keras lacks)."""
    try:
        return call()
    except Exception:  # noqa: BLE001
        return None
