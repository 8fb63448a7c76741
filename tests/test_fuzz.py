"""Tests for gradcheck.fuzz: correct targets pass, buggy ones are found and shrunk."""

import re
from typing import ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import settings
from hypothesis.database import InMemoryExampleDatabase

import gradcheck
from gradcheck import _declare
from gradcheck._declare import DTYPES, Declaration, Registered
from gradcheck._fuzz import fuzz, fuzz_registered
from shared_targets import tanh_with_noisy_gradient

BLOB = re.compile(r"^@reproduce_failure\('[\d.]+', b'[^']+'\)$")


# -- targets -----------------------------------------------------------------------------------

def safe_elu(x):
    """ELU with the 'double where': the branch not taken never sees exp of a large x."""
    negative = tf.where(x > 0, tf.zeros_like(x), x)
    return tf.where(x > 0, x, tf.exp(negative) - 1)


def trapped_elu(x):
    """ELU with the tf.where NaN trap: exp(x) overflows float32 beyond x = 88."""
    return tf.where(x > 0, x, tf.exp(x) - 1)


ROW_SCALES = tf.constant([[1.0], [2.0], [3.0]])


def row_scaled(x):
    """Scales row i by i + 1 from a (3, 1) parameter: the broadcast breaks at batch size 4."""
    return x * tf.cast(ROW_SCALES[: tf.shape(x)[0]], x.dtype)


def naive_softplus(x):
    """log(1 + exp(x)): exp overflows float16 beyond x = 11, float32 only beyond 88."""
    return tf.math.log(1 + tf.exp(x))


def float32_offset(x):
    """Adds a float32 constant: fails for every other dtype."""
    return x + tf.constant(1.0)


class ParametricSwish(keras.layers.Layer):
    """x * sigmoid(beta * x) with one trainable beta per feature."""

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta_init = beta

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(input_shape[-1],),
                                    initializer=keras.initializers.Constant(self.beta_init))

    def call(self, x):
        return x * tf.sigmoid(self.beta * x)


def entry(target, **options):
    """A registry entry built by hand, so these buggy targets stay out of the real registry."""
    return Registered(target=target, declaration=Declaration(kind="activation", **options),
                      module=__name__, name=target.__name__)


@pytest.fixture
def profile():
    """Load a Hypothesis profile derived from the active one; restore the active one after."""
    previous = settings.get_current_profile_name()

    def load(**options):
        settings.register_profile("gradcheck-test-fuzz", settings.get_profile(previous),
                                  **options)
        settings.load_profile("gradcheck-test-fuzz")

    yield load
    settings.load_profile(previous)


def only_input(report):
    (finding, *_) = report.findings
    return np.asarray(finding.inputs["x"])


# -- correct targets pass ----------------------------------------------------------------------

def test_a_correct_activation_passes_in_every_declared_dtype():
    report = fuzz(safe_elu, kinks=(0.0,), max_examples=25)
    assert report.ok, str(report)
    assert report.meta["dtypes"] == list(DTYPES)
    assert report.meta["examples"] == 25 * len(DTYPES)
    assert report.meta["kinds_seen"] == [] and report.meta["hypothesis_blob"] is None


def test_the_safe_elu_passes_where_the_trapped_one_fails():
    assert fuzz(safe_elu, dtype="float32", kinks=(0.0,), domain=(-100.0, 100.0),
                max_examples=50).ok


def test_a_correct_layer_class_passes_with_a_declared_feature_axis():
    report = fuzz(ParametricSwish, dtype="float32", input_shape=(None, 3), max_examples=10,
                  init={"beta": 1.5}, domain=(-3.0, 3.0))
    assert report.ok, str(report)
    assert report.target.endswith(":ParametricSwish") and report.meta["examples"] == 10


class CountedSwish(ParametricSwish):
    """ParametricSwish that counts its builds and the batch sizes it is called with."""

    builds: ClassVar[list] = []
    batches: ClassVar[set] = set()

    def build(self, input_shape):
        CountedSwish.builds.append(self.dtype)
        super().build(input_shape)

    def call(self, x):
        CountedSwish.batches.add(int(x.shape[0]))
        return super().call(x)


def test_a_layer_is_built_once_per_feature_shape_and_called_with_any_batch_size():
    CountedSwish.builds.clear(), CountedSwish.batches.clear()
    report = fuzz(CountedSwish, dtype="float32", input_shape=(None, 3), max_examples=20)
    assert report.ok, str(report)
    # One layer and one float64 twin (the reference) for the whole run, as in training.
    assert sorted(CountedSwish.builds) == ["float32", "float64"]
    assert len(CountedSwish.batches) >= 2


class ScaledTanh(keras.layers.Layer):
    """scale * tanh(x), scale a weight initialized at 1; ``forgets_scale``: the custom gradient
    for x leaves out the factor scale, which is right at scale = 1 only."""

    def __init__(self, forgets_scale=False, **kwargs):
        super().__init__(**kwargs)
        self.forgets_scale = forgets_scale

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        forgets = self.forgets_scale

        @tf.custom_gradient
        def scaled_tanh(x, scale):
            t = tf.tanh(x)

            def grad(dy):
                dx = dy * (1 - t * t) * (1.0 if forgets else scale)
                return dx, tf.reduce_sum(dy * t)
            return scale * t, grad

        return scaled_tanh(x, tf.convert_to_tensor(self.scale))

    def get_config(self):
        return {**super().get_config(), "forgets_scale": self.forgets_scale}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gradient_right_only_at_the_initial_weights_is_found_with_weights_that_reproduce(
        dtype):
    report = fuzz(ScaledTanh, dtype=dtype, input_shape=(None, 3), max_examples=30,
                  init={"forgets_scale": True}, hypothesis_seed=1)
    assert report.kinds == ["gradient_mismatch"]
    assert "layer.set_weights([np.array(" in report.reproducer
    scale = float(re.search(r"set_weights\(\[np.array\(([-0-9.e]+)\)", report.reproducer)[1])
    assert 1 / 3 <= abs(scale) <= 3 and scale != 1.0  # moved by a factor of at most 3
    namespace = {"gradcheck": gradcheck, "np": np, "ScaledTanh": ScaledTanh}
    exec(report.reproducer.replace("gradcheck.check(", "again = gradcheck.check("), namespace)
    assert namespace["again"].kinds == ["gradient_mismatch"]
    # The same layer as built (scale = 1) passes: the moved weights are what found it.
    assert gradcheck.check(ScaledTanh(forgets_scale=True, dtype=dtype), namespace["x"]).ok


def test_moved_weights_leave_a_correct_layer_passing_and_an_instance_as_it_was():
    layer = ScaledTanh()
    layer(np.zeros((1, 3), np.float32))
    layer.scale.assign(0.75)
    report = fuzz(layer, dtype="float32", input_shape=(None, 3), max_examples=30,
                  hypothesis_seed=1)
    assert report.ok, str(report)
    assert float(layer.scale.numpy()) == 0.75


class FeatureScale(keras.layers.Layer):
    """x w with one weight per feature; ``stale``: the gradient for x forgets w past x = 1."""

    def __init__(self, stale=False, **kwargs):
        super().__init__(**kwargs)
        self.stale = stale

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        stale = self.stale

        @tf.custom_gradient
        def scale(x, w):
            def grad(dy):
                dx = dy * w if not stale else tf.where(x > 1.0, dy, dy * w)
                return dx, tf.reduce_sum(dy * x, axis=0)
            return x * w, grad

        return scale(x, tf.convert_to_tensor(self.w))


class AnyShape(keras.layers.Layer):
    """No weight whose shape comes from the input: it runs at every feature shape."""

    shapes: ClassVar[list] = []

    def call(self, x):
        AnyShape.shapes.append(tuple(x.shape))
        return tf.tanh(x)


@pytest.mark.parametrize("make", [lambda: keras.layers.Dense(3), lambda: FeatureScale()])
def test_a_built_layer_instance_is_fuzzed_at_the_feature_shape_it_was_built_for(make):
    layer = make()
    layer.build((None, 2))
    report = fuzz(layer, dtype="float32", max_examples=30, hypothesis_seed=2)
    assert report.ok, str(report)  # not a shape_mismatch for features it was never built for
    assert report.meta["examples"] >= 20


def test_a_built_instance_with_a_wrong_gradient_is_still_found_at_its_shape():
    layer = FeatureScale(stale=True)
    layer.build((None, 2))
    layer.w.assign([3.0, -0.5])
    report = fuzz(layer, dtype="float32", max_examples=50, hypothesis_seed=3)
    assert report.kinds == ["gradient_mismatch"], str(report)
    assert np.asarray(report.findings[0].inputs["inputs"]).shape[1:] == (2,)


def test_an_instance_not_built_yet_keeps_the_feature_shape_of_its_first_input():
    layer = AnyShape()
    AnyShape.shapes.clear()
    assert fuzz(layer, dtype="float32", max_examples=30, hypothesis_seed=4).ok
    assert len({s[0] for s in AnyShape.shapes}) > 1  # batch sizes are still drawn
    assert {s[1:] for s in AnyShape.shapes} == {AnyShape.shapes[0][1:]}


class SoftplusGate(keras.layers.Layer):
    """x softplus(g), g initialized at 0; ``abs_sigmoid``: the gradient for g takes the
    sigmoid of |g| (a "stable" sigmoid that forgot the sign), right for g >= 0 only."""

    def __init__(self, abs_sigmoid=False, **kwargs):
        super().__init__(**kwargs)
        self.abs_sigmoid = abs_sigmoid

    def build(self, input_shape):
        self.g = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="g")

    def call(self, x):
        wrong = self.abs_sigmoid

        @tf.custom_gradient
        def gate(x, g):
            def grad(dy):
                s = tf.sigmoid(tf.abs(g) if wrong else g)
                return dy * tf.nn.softplus(g), tf.reduce_sum(dy * x * s, axis=0)
            return x * tf.nn.softplus(g), grad

        return gate(x, tf.convert_to_tensor(self.g))

    def get_config(self):
        return {**super().get_config(), "abs_sigmoid": self.abs_sigmoid}


class LogTemperature(keras.layers.Layer):
    """x log(t), t initialized at 2: a weight whose sign the layer needs (NaN below 0)."""

    def build(self, input_shape):
        self.t = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.0),
                                 name="t")

    def call(self, x):
        return x * tf.math.log(tf.convert_to_tensor(self.t))


def test_a_gradient_right_only_for_a_weight_of_its_initial_sign_is_found():
    # Training takes a gate initialized at 0 below 0: moves change a weight's sign too.
    report = fuzz(SoftplusGate, dtype="float64", input_shape=(None, 4), max_examples=40,
                  init={"abs_sigmoid": True}, hypothesis_seed=0)
    assert report.kinds == ["gradient_mismatch"]
    assert fuzz(SoftplusGate, dtype="float64", input_shape=(None, 4), max_examples=40,
                hypothesis_seed=0).ok


def test_a_weight_whose_sign_the_layer_needs_keeps_it_when_moved():
    # At t < 0 the output is NaN: those examples move t keeping its sign instead.
    report = fuzz(LogTemperature, dtype="float32", input_shape=(None, 3), max_examples=40,
                  hypothesis_seed=0)
    assert report.ok, str(report)


# -- buggy targets are found with default settings and shrunk ----------------------------------

def test_the_nan_trap_beyond_88_is_found_and_shrunk_to_one_value():
    report = fuzz(trapped_elu, dtype="float32", domain=(-100.0, 100.0), kinks=(0.0,),
                  sweep=False)  # the Hypothesis phase: shrinking
    assert report.kinds == ["nonfinite_gradient"]
    x = only_input(report)
    assert x.size == 1 and x.item() > 88.0
    assert report.dtype == "float32"
    assert set(report.kinds) <= set(report.meta["kinds_seen"])
    assert BLOB.match(report.meta["hypothesis_blob"])
    assert report.meta["examples"] >= 1 and report.meta["duration_s"] >= 0


def test_the_reproducer_reproduces_the_minimal_failure():
    report = fuzz(trapped_elu, dtype="float32", domain=(-100.0, 100.0), sweep=False)
    assert report.reproducer.startswith("gradcheck.check(trapped_elu, np.array([")
    again = eval(report.reproducer, {"gradcheck": gradcheck, "np": np,
                                     "trapped_elu": trapped_elu})
    assert again.kinds == report.kinds


def test_the_nan_trap_stays_hidden_inside_the_default_domain():
    # Hypothesis alone; the sweep phase finds it (tests/test_sweep.py).
    assert fuzz(trapped_elu, dtype="float32", kinks=(0.0,), max_examples=20, sweep=False).ok


def test_a_broadcast_that_breaks_at_batch_four_is_a_shape_mismatch_at_four_rows():
    report = fuzz(row_scaled, dtype="float32", input_shape=(None, None))
    assert report.kinds == ["shape_mismatch"]
    assert only_input(report).shape == (4, 1)
    finding = report.findings[0]
    assert finding.details["reclassified_from"] == "error"
    assert [1, 1] in finding.details["passed_shapes"][0]
    assert "fails for input shapes (4, 1) but runs for" in finding.message


def test_an_overflow_only_in_float16_is_found_in_float16_and_shrunk():
    report = fuzz(naive_softplus, dtype="float16", domain=(-20.0, 20.0))
    assert "nonfinite_output" in report.kinds
    x = only_input(report)
    assert x.size == 1 and x.item() > 11.0
    assert fuzz(naive_softplus, dtype="float32", domain=(-20.0, 20.0)).ok


def test_an_error_in_one_dtype_only_is_a_dtype_mismatch():
    report = fuzz(float32_offset, dtype="float16")
    assert report.kinds == ["dtype_mismatch"]
    assert report.findings[0].details["works_in"] == "float32"
    assert only_input(report).shape == (1,)


def test_without_a_dtype_fuzzing_stops_at_the_first_failing_dtype():
    report = fuzz(float32_offset, dtypes=("float32", "float64", "float16"))
    assert report.dtype == "float64" and report.kinds == ["dtype_mismatch"]


# -- declarations, registry and the example database --------------------------------------------

def test_fuzz_uses_the_declaration_a_target_was_registered_with(monkeypatch):
    monkeypatch.setattr(_declare, "_REGISTRY", {})  # keep the trap out of the real registry
    _declare.activation(domain=(-100.0, 100.0), dtypes=("float32",), sweep=False)(trapped_elu)
    report = fuzz(trapped_elu)
    assert report.kinds == ["nonfinite_gradient"] and report.dtype == "float32"
    assert fuzz(trapped_elu, domain=(-10.0, 10.0), kinks=(0.0,), max_examples=10).ok


def test_fuzz_registered_keys_the_example_database_per_item(profile, request):
    if request.config.getoption("hypothesis_seed", None) is not None:
        pytest.skip("--hypothesis-seed turns Hypothesis's example database off")
    database = InMemoryExampleDatabase()
    profile(database=database, derandomize=False)
    # Every input fails (exp overflows float32 past 88.7): with (-100, 100) a run at times
    # drew no x past 88.7 and saved nothing under its key (the test failed ~1 in 20).
    item = entry(trapped_elu, domain=(89.0, 100.0), sweep=False)
    first = fuzz_registered(item, "float32", database_key=b"item-a")
    keys = set(database.data)
    assert keys, "the failure was not saved"
    replayed = fuzz_registered(item, "float32", database_key=b"item-a")
    assert replayed.kinds == first.kinds and replayed.meta["examples"] <= 3
    assert set(database.data) == keys  # same key: nothing new
    fuzz_registered(item, "float32", database_key=b"item-b")
    assert set(database.data) > keys


def test_an_explicit_seed_makes_a_run_repeatable(profile):
    profile(database=None, derandomize=False)
    runs = [fuzz(trapped_elu, dtype="float32", domain=(-100.0, 100.0), hypothesis_seed=1234)
            for _ in range(2)]
    assert [r.meta["seed"] for r in runs] == [1234, 1234]
    assert runs[0].meta["examples"] == runs[1].meta["examples"]
    assert runs[0].meta["hypothesis_blob"] == runs[1].meta["hypothesis_blob"]


def test_the_declaration_beats_the_sessions_max_examples_in_fuzz_registered():
    item = entry(safe_elu, kinks=(0.0,), max_examples=7)
    assert fuzz_registered(item, "float64", max_examples=50).meta["examples"] == 7
    item = entry(safe_elu, kinks=(0.0,))
    assert fuzz_registered(item, "float64", max_examples=6).meta["examples"] == 6


def test_an_input_that_passed_is_not_checked_again(profile, monkeypatch):
    """Hypothesis draws the same arrays again from other choice sequences; a check is a
    function of its input, so a repeat of one that passed is counted, not checked: checks
    made = examples - repeated, and there is at least one repeat in 60 examples at input
    shape (1,) here."""
    from gradcheck import _fuzz

    profile(database=None, derandomize=True)
    checked = []
    real = _fuzz._Fuzz.check
    monkeypatch.setattr(_fuzz._Fuzz, "check",
                        lambda self, inputs, *a, **k: checked.append(inputs) or real(
                            self, inputs, *a, **k))
    report = fuzz_registered(entry(safe_elu, kinks=(0.0,), input_shape=(1,), sweep=False),
                             "float32", max_examples=60)
    assert report.ok and report.meta["repeated"] >= 1
    assert len(checked) == report.meta["examples"] - report.meta["repeated"]
    digests = [_fuzz._digest(x) for x in checked]
    assert len(set(digests)) == len(digests)  # no input checked twice


def test_a_repeat_is_checked_again_where_modes_are_compared_now_and_were_not_then(monkeypatch):
    """A repeat is skipped only after a check at least as thorough: one that passed without
    comparing execution modes does not stand for one that compares them (after a failure,
    every example compares them)."""
    from gradcheck import _fuzz

    fz = _fuzz._Fuzz(entry(safe_elu, kinks=(0.0,)), "float32", 10, 0, None)
    wanted, checked = [False, False, True, True, False], []
    monkeypatch.setattr(fz.modes, "wanted", lambda inputs: wanted.pop(0))
    real = fz.check
    monkeypatch.setattr(fz, "check", lambda inputs, modes=True: checked.append(modes) or real(
        inputs, modes=modes))
    x = (np.array([0.5, -2.0], np.float32),)
    for _ in range(4):
        fz.example(x)
    assert checked == [False, True] and fz.repeated == 2
    fz.example((np.array([0.5, -0.0], np.float32),))  # -0.0 is another input than 0.0 or -2
    assert len(checked) == 3


@pytest.fixture
def noise_probes(monkeypatch):
    """The determinism probe's first calls (one per check that looks for noise), recorded."""
    from gradcheck import _determinism

    made, real = [], _determinism.first_call
    monkeypatch.setattr(_determinism, "first_call",
                        lambda target, args: made.append(target) or real(target, args))
    return made


def test_after_a_sweep_that_repeated_the_examples_make_no_calls_looking_for_noise(noise_probes):
    """The sweep called the activation twice at every value and got the same outputs and
    gradients: each example's check leaves the determinism probe out (its calls)."""
    report = fuzz(lambda x: x * tf.sigmoid(x), dtype="float32", max_examples=10)
    assert report.ok and report.meta["swept"] > 0 and noise_probes == []
    report = fuzz(lambda x: x * tf.sigmoid(x), dtype="float32", max_examples=10, sweep=False)
    assert report.ok and len(noise_probes) >= 10


@pytest.mark.parametrize("declared", ["activation", "layer"])
def test_noise_the_sweep_shows_or_cannot_see_is_still_probed_in_every_example(noise_probes,
                                                                               declared):
    """A gradient with fresh noise in its backward (the sweep's second gradient differs) and a
    swept layer (its training=True call is not what the sweep called: Dropout draws there)."""
    if declared == "activation":
        report = fuzz(tanh_with_noisy_gradient, dtype="float32", max_examples=10)
        assert report.kinds == ["nondeterministic"], str(report)
    else:
        report = fuzz(keras.layers.Activation, init={"activation": "tanh"}, elementwise=True,
                      dtype="float32", max_examples=10)
        assert report.ok and report.meta["swept"] > 0
    assert noise_probes



# -- misuse ends the run at once ---------------------------------------------------------------

def test_a_target_returning_no_tensor_is_a_finding_at_once_instead_of_shrinking():
    calls = []

    def returns_a_pair(x):
        calls.append(x.shape)
        return x, x

    report = fuzz(returns_a_pair, dtype="float32")
    assert report.kinds == ["error"] and "must return one tensor" in report.findings[0].message
    assert report.findings[0].inputs["x"] == [0.0] and report.reproducer
    # the sweep's one batched call, then one example: the determinism probe's, the core's
    assert len(calls) == 3


@pytest.mark.parametrize("options, error, match", [
    ({"domian": (0, 1)}, TypeError, "unknown option 'domian'"),
    ({"domain": (1, 0)}, ValueError, r"gradcheck.fuzz\(safe_elu\): domain must have low < high"),
    ({"dtype": "int32"}, ValueError, "dtype='int32' is not a floating dtype"),
])
def test_bad_options_raise_saying_what_is_valid(options, error, match):
    with pytest.raises(error, match=match):
        fuzz(safe_elu, **options)


def raises_above_5(x):
    if float(tf.reduce_max(x)) > 5.0:
        raise RuntimeError("too big")
    return tf.tanh(x)


def test_an_error_at_some_values_of_shapes_that_ran_is_an_error_not_a_shape_mismatch():
    # It read "fails for input shapes (1,) but runs for (1,), ...".
    report = fuzz(raises_above_5, dtype="float32", max_examples=50, hypothesis_seed=1,
                  sweep=False, modes=())
    assert report.kinds == ["error"], str(report)
    assert "too big" in report.findings[0].message
