"""Hand-written activations and custom gradients with real bugs: every target here must FAIL.

Each bug was reproduced with plain TensorFlow 2.21 before being written down; the comment on
each target names the bug and the finding that catches it. ``EXPECTED`` maps each target to
the finding kind(s) ``pytest --gradcheck`` must report for it: the first kind must be reported
in at least one declared dtype, and every declared dtype must fail with one of the listed kinds.
The correct versions are in ``examples/custom_gradients.py``.
"""

import tensorflow as tf

import gradcheck

EXPECTED = {
    "elu_where_exp": "nonfinite_gradient",
    "softplus_where_threshold": ("nonfinite_gradient", "nonfinite_output"),
    "softplus_naive": "nonfinite_output",
    "softplus_relu_abs": "gradient_mismatch",
    "sin_ignores_dy": "gradient_mismatch",
    "swish_grad_off_by_2_percent": "gradient_mismatch",
    "elu_grad_wrong_branch": "gradient_mismatch",
    "swish_grad_float32_cast": "dtype_mismatch",
    "custom_elu_with_grad": "mode_mismatch",
}


# BUG: the tf.where NaN trap. exp(x) overflows to inf for x > 88.7 (float32, bfloat16),
# x > 11.1 (float16) or x > 709.8 (float64) in the branch *not* taken, and where's gradient
# sends 0 * inf = NaN back through it: the output is finite, the gradient is NaN.
# Plain TF: the gradient at x = 100 (float32) is nan. The domain is wide enough that the trap
# is reachable in every dtype, float64 included.
# Caught by: nonfinite_gradient. Fix: custom_gradients.elu_double_where.
@gradcheck.activation(domain=(-1000.0, 1000.0))
def elu_where_exp(x):
    return tf.where(x > 0, x, tf.exp(x) - 1)


# BUG: the "stable" softplus that switches to x above a threshold still evaluates
# log1p(exp(x)) for every x; above the overflow point of exp its gradient inf / inf = NaN
# leaks through the branch not taken. In float16 exp already overflows at 11.1, below the
# threshold, so there the *value* is inf as well.
# Caught by: nonfinite_gradient (nonfinite_output in float16).
# Fix: custom_gradients.softplus_double_where.
@gradcheck.activation(domain=(-1000.0, 1000.0))
def softplus_where_threshold(x):
    return tf.where(x > 20.0, x, tf.math.log1p(tf.exp(x)))


# BUG: naive log(1 + exp(x)). Fine on (-20, 20) in float32 and float64, but under mixed
# precision (float16) exp overflows above x = 11.1 and the activation returns inf for an input
# whose softplus (12.0) is perfectly representable. Declared for float16, the dtype the bug
# lives in (the wider dtypes are correct on this domain).
# Caught by: nonfinite_output. Fix: tf.nn.softplus or custom_gradients.softplus_double_where.
@gradcheck.activation(domain=(-20.0, 20.0), dtypes=("float16",))
def softplus_naive(x):
    return tf.math.log(1 + tf.exp(x))


# BUG: the popular stable one-liner relu(x) + log1p(exp(-|x|)) has the right values but the
# wrong gradient at exactly x = 0: relu'(0) = 0 and |x|'(0) = sign(0) = 0, so autodiff
# returns 0 where softplus'(0) = sigmoid(0) = 0.5 (TensorFlow's tf.maximum(x, 0) variant gives
# 1.0). softplus is smooth at 0, so this is not a kink: no subgradient excuse.
# Plain TF: gradient at x = 0.0 is 0.0 (expected 0.5).
# Caught by: gradient_mismatch (at x = 0). Fix: custom_gradients.softplus_custom_gradient.
@gradcheck.activation
def softplus_relu_abs(x):
    return tf.nn.relu(x) + tf.math.log1p(tf.exp(-tf.math.abs(x)))


# BUG: the custom gradient ignores the upstream gradient dy and returns the local derivative
# cos(x) alone. It looks right when dy is all ones (a plain tape.gradient of the activation
# itself), and is wrong as soon as anything follows the activation (3 * f(x): 1x instead of 3x).
# Caught by: gradient_mismatch (gradcheck uses a random, signed cotangent).
@gradcheck.activation
@tf.custom_gradient
def sin_ignores_dy(x):
    def grad(dy):
        return tf.math.cos(x)

    return tf.math.sin(x), grad


# BUG: a derivative off by 2% (a mistyped constant). Training still "works", just on the
# wrong gradient. Caught by: gradient_mismatch.
# Declared for float32 and float64 only: gradcheck allows a low-precision gradient 8 roundings of
# its terms (intermediates as large as max(1, |x|, |f|)), which at float16's ulp of 0.1% is
# 1-3% around |x| ~ 1 - the measured float16 detection threshold (bench/detection.py) - and
# bfloat16's is 8 times coarser. A 2% error there is within rounding; float32/64 catch it.
@gradcheck.activation(dtypes=("float32", "float64"))
@tf.custom_gradient
def swish_grad_off_by_2_percent(x):
    s = tf.math.sigmoid(x)
    y = x * s

    def grad(dy):
        return dy * 1.02 * (s + y * (1 - s))

    return y, grad


# BUG: derivative wrong in one branch: for x <= 0, ELU's derivative is elu(x) + 1 = exp(x);
# this returns elu(x) (the "+ 1" forgotten). Right for x > 0, wrong for every x <= 0.
# Caught by: gradient_mismatch.
@gradcheck.activation
@tf.custom_gradient
def elu_grad_wrong_branch(x):
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(y), y)

    return y, grad


# BUG: a hard-coded float32 cast in the custom gradient. The tape accepts the float32
# gradient for a float16/bfloat16/float64 input without complaint; it fails later, far from the
# cause (an AddN dtype error when the input is used twice). Declared for the dtypes where the
# cast is wrong; in float32 it is a no-op.
# Plain TF: tape.gradient(swish_grad_float32_cast(x), x) is float32 for a float64 x.
# Caught by: dtype_mismatch.
@gradcheck.activation(dtypes=("float16", "bfloat16", "float64"))
@tf.custom_gradient
def swish_grad_float32_cast(x):
    s = tf.math.sigmoid(x)
    y = x * s

    def grad(dy):
        return tf.cast(dy * (s + y * (1 - s)), tf.float32)

    return y, grad


# BUG: seed 004, example 3, as published. ``tf.where(x > 0, 1.0, tf.exp(x))`` converts the
# Python float 1.0 to match x eagerly, but under tf.function, which is how model.fit runs a
# model, it becomes a float32 constant: for float16 (mixed precision), bfloat16 and float64
# inputs the gradient raises "TypeError: Input 'e' of 'SelectV2' Op has type float16 that does
# not match type float32 of argument 't'". Plain TF: eager works in every dtype; the same
# tape.gradient inside @tf.function fails in those three, and so does model.fit under
# keras.mixed_precision.set_global_policy("mixed_float16"). Declared for the dtypes it breaks
# in (in float32 it is correct).
# Caught by: mode_mismatch (eager and tf.function disagree).
# Fix: custom_gradients.custom_elu_with_grad (tf.ones_like(x) instead of 1.0).
@gradcheck.activation(domain=(-1000.0, 1000.0), dtypes=("float16", "bfloat16", "float64"))
@tf.custom_gradient
def custom_elu_with_grad(x):
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, 1.0, tf.exp(x))

    return y, grad
