"""gradcheck.sweep: every float16/bfloat16 value, dense float32/float64, zero-config domains."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import gradcheck  # noqa: E402
from gradcheck import _sweep_values as values  # noqa: E402
from gradcheck._declare import Declaration  # noqa: E402
# The modules these tests patch, imported before any pytester run in this process: an
# in-process run drops the modules first imported during it from sys.modules, and a later
# import here would patch a fresh copy that the kept modules do not call.
from gradcheck import (_check, _conditioning, _determinism, _reference,  # noqa: E402, F401
                       _routes, _sweep, _sweep_run)

DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Where exp overflows, i.e. where the seed-style ELU's gradient turns NaN.
EXP_OVERFLOW = {"float16": 11.09, "bfloat16": 88.7, "float32": 88.72, "float64": 709.78}


def elu_where(x):
    """The seed articles' ELU: exp is evaluated for every x, the NaN trap."""
    return tf.where(x > 0, x, tf.exp(x) - 1)


def elu_double_where(x):
    """The fix: exp only ever sees min(x, 0)."""
    return tf.where(x > 0, x, tf.exp(tf.minimum(x, 0.0)) - 1)


# -- the values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_16_bit_sweep_holds_every_finite_value_once(dtype):
    swept = values.values(dtype)
    bits = np.arange(1 << 16, dtype=np.uint16).view(values.np_dtype(dtype))
    with np.errstate(invalid="ignore"):
        finite = np.unique(bits.astype(np.float64)[np.isfinite(bits.astype(np.float64))] + 0.0)
    assert np.array_equal(swept, finite)


def test_a_wide_sweep_covers_every_binade_and_the_thresholds_exactly():
    swept = values.values("float32", kinks=())
    info = np.finfo(np.float32)
    assert np.array_equal(swept.astype(np.float32).astype(np.float64), swept)
    for point in (0.0, float(info.tiny), float(info.max), -float(info.max),
                  float(np.nextafter(info.tiny, np.float32(0))), float(info.smallest_subnormal)):
        assert point in swept
    exponents = np.unique(np.floor(np.log2(np.abs(swept[swept != 0]))))
    assert exponents.size == 277  # -149 .. 127: every binade, subnormals included


def test_a_declared_domain_limits_the_sweep_and_kinks_get_neighbourhoods():
    swept = values.values("float64", domain=(-2.0, 3.0), kinks=(0.5,))
    assert swept.min() == -2.0 and swept.max() == 3.0
    assert np.nextafter(0.5, 1.0) in swept and np.nextafter(0.5, 0.0) in swept


# -- verdicts -----------------------------------------------------------------------------------

def test_the_float16_selu_bug_of_tensorflow_is_found_with_no_domain():
    report = gradcheck.sweep(tf.nn.selu, dtype="float16", kinks=(0.0,))
    assert report.kinds == ["gradient_mismatch"]
    finding = report.findings[0]
    low, high = finding.details["interval"]
    assert -2.45e-4 <= low <= high < 0
    assert finding.details["count"] >= 100
    assert "gradient wrong for every float16 value x in" in finding.message
    assert report.meta["swept"] == values.values("float16").size
    assert report.reproducer.startswith("gradcheck.check(selu, tf.constant([")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_seed_elu_nan_trap_is_found_in_every_dtype_with_zero_configuration(dtype):
    report = gradcheck.sweep(elu_where, dtype=dtype)
    assert report.kinds == ["nonfinite_gradient"]
    x = report.findings[0].details["x"]
    assert x == pytest.approx(EXP_OVERFLOW[dtype], rel=0.02)
    reproduced = eval(report.reproducer, {"gradcheck": gradcheck, "tf": tf,  # noqa: S307
                                          "elu_where": elu_where})
    assert "nonfinite_gradient" in reproduced.kinds


@pytest.mark.parametrize("dtype", DTYPES)
def test_correct_targets_pass_and_true_overflow_is_no_finding(dtype):
    assert gradcheck.sweep(elu_double_where, dtype=dtype).ok
    report = gradcheck.sweep(tf.exp, dtype=dtype)  # exp(x) overflows the dtype: not a bug
    assert report.ok, report
    assert report.meta["excluded_overflow"] > 0


def test_a_declared_domain_keeps_the_sweep_inside_it():
    assert gradcheck.sweep(elu_where, dtype="float32", domain=(-10.0, 10.0)).ok


def test_scalar_parameters_are_swept_on_a_grid_including_the_range_ends():
    def scaled(x, a):
        @tf.custom_gradient
        def inner(x):
            def grad(dy):  # wrong only where a is large
                return dy * tf.where(a > 1.9, 2 * a, a)
            return a * x, grad
        return inner(x)

    report = gradcheck.sweep(scaled, dtype="float32", domain=(-5.0, 5.0),
                             args={"a": (0.5, 2.0)})
    assert report.kinds == ["gradient_mismatch"]
    assert report.findings[0].details["a"] == 2.0
    assert [point["a"] for point in report.meta["grid"]] == [0.5, 1.25, 2.0]


def test_bad_options_are_rejected_naming_the_sweep():
    with pytest.raises(TypeError, match="unknown option"):
        gradcheck.sweep(tf.nn.relu, dtype="float32", examples=3)
    with pytest.raises(ValueError, match="dtype"):
        gradcheck.sweep(tf.nn.relu, dtype="int32")
    with pytest.raises(TypeError, match="tensor parameter"):
        gradcheck.sweep(tf.nn.relu, dtype="float32", args={"a": ((4,), 0.0, 1.0)})


# -- declarations -------------------------------------------------------------------------------

def test_a_declaration_remembers_whether_its_domain_was_declared():
    default = Declaration(kind="activation")
    assert not default.domain_declared and default.domain == (-10.0, 10.0)
    assert Declaration(kind="activation", domain=(-10, 10)).domain_declared
    assert not dataclasses.replace(default, kinks=(0.0,)).domain_declared
    assert dataclasses.replace(default, domain=(-1, 1)).domain_declared
    with pytest.raises(TypeError, match="sweep"):
        Declaration(kind="activation", sweep="no")


# -- pytest --gradcheck and the command line ----------------------------------------------------

MODULE = """
import tensorflow as tf
import gradcheck


@gradcheck.activation(dtypes=("float16",), kinks=(0.0,))
def selu(x):
    return tf.nn.selu(x)


@gradcheck.activation
def elu_where(x):
    return tf.where(x > 0, x, tf.exp(x) - 1)


@gradcheck.activation(sweep=False)
def elu_where_unswept(x):
    return tf.where(x > 0, x, tf.exp(x) - 1)
"""


@pytest.fixture
def acts(pytester):
    pytester.makepyfile(sweep_acts=textwrap.dedent(MODULE))
    return pytester


def test_pytest_gradcheck_sweeps_first_and_reports_the_values_swept(acts):
    result = acts.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "3",
                                      "--gradcheck-report", "report.json", "-p", "no:randomly")
    outcomes = {r["nodeid"].split("::")[1]: r
                for r in json.loads((acts.path / "report.json").read_text())["results"]}
    assert outcomes["selu[float16]"]["outcome"] == "failed"
    assert outcomes["selu[float16]"]["findings"][0]["kind"] == "gradient_mismatch"
    for dtype in DTYPES:
        item = outcomes[f"elu_where[{dtype}]"]
        assert item["outcome"] == "failed" and item["swept"] > 10000, item
        assert item["findings"][0]["kind"] == "nonfinite_gradient"
        unswept = outcomes[f"elu_where_unswept[{dtype}]"]
        assert unswept["swept"] == 0 and unswept["outcome"] == "passed"
    result.assert_outcomes(failed=5, passed=4)


@pytest.mark.parametrize("switch", [("--gradcheck-no-sweep",), ("-o", "gradcheck_sweep=false")])
def test_the_sweep_phase_can_be_turned_off(acts, switch):
    result = acts.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "3",
                                      "--gradcheck-dtypes", "float32", *switch,
                                      "-p", "no:randomly")
    result.assert_outcomes(passed=2)  # (-10, 10) never reaches exp's overflow at 88.7


def test_the_command_line_finds_the_trap_in_an_undeclared_function(tmp_path, monkeypatch):
    from gradcheck._cli import main
    import io

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli_sweep_acts.py").write_text(textwrap.dedent("""
        import tensorflow as tf

        def elu(x):
            return tf.where(x > 0, x, tf.exp(x) - 1)
    """))
    out, err = io.StringIO(), io.StringIO()
    status = main(["check", "cli_sweep_acts.py:elu", "--max-examples", "2",
                   "--hypothesis-seed", "1"],
                  stdout=out, stderr=err)
    assert status == 1
    assert "4 of 4 dtype(s) failed" in out.getvalue()
    assert out.getvalue().count("nonfinite_gradient") >= 4


def test_a_kink_within_the_rounding_of_x_is_no_finding_but_a_wrong_branch_next_to_it_is():
    keras = pytest.importorskip("keras")
    # x + 3 rounds to 6 at x = 2.998 in float16: the slope beyond the kink at 3 is all float16
    # can compute there.
    assert gradcheck.sweep(keras.activations.hard_silu, dtype="float16").ok

    @tf.custom_gradient
    def leaky_wrong_near_zero(x):
        def grad(dy):  # the slope of x > 0 picked for x in [-0.1, 0): selu's kind of bug
            return dy * tf.where(x > -0.1, tf.ones_like(x), 0.5 * tf.ones_like(x))
        return tf.nn.leaky_relu(x, 0.5), grad

    report = gradcheck.sweep(leaky_wrong_near_zero, dtype="float16")
    assert report.kinds == ["gradient_mismatch"]
    low, high = report.findings[0].details["interval"]
    assert -0.1 <= low < high < 0


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_formula_a_few_percent_wrong_at_large_x_is_found_by_the_sweep(dtype):
    """At |x| = 40 a low dtype's allowance for terms as large as x (eight roundings of 40)
    exceeds a 2-5% error of a derivative of 6e-4: only the float64 twin tells the formula is
    wrong, and the sweep must ask it about the values that pass on that allowance alone."""

    @tf.custom_gradient
    def softsign(x):
        def grad(dy):  # 1 / (1 + |x|)^2, but held at 1 / 41^2 for 40 < |x| < 41
            window = tf.logical_and(tf.abs(x) > 40.0, tf.abs(x) < 41.0)
            held = tf.fill(tf.shape(x), tf.constant(1.0 / 41.0 ** 2, x.dtype))
            return dy * tf.where(window, held, 1.0 / tf.square(1.0 + tf.abs(x)))
        return x / (1.0 + tf.abs(x)), grad

    report = gradcheck.sweep(softsign, dtype=dtype, domain=(-100.0, 100.0))
    assert report.kinds == ["gradient_mismatch"]
    low, high = report.findings[0].details["interval"]
    assert 40 < min(abs(low), abs(high)) <= max(abs(low), abs(high)) < 41


def test_an_elementwise_layer_is_swept():
    keras = pytest.importorskip("keras")
    report = gradcheck.sweep(keras.layers.Activation("selu", dtype="float16"), dtype="float16")
    assert report.kinds == ["gradient_mismatch"] and report.meta["swept"] > 60000


def test_an_error_only_the_sweep_reaches_is_not_dropped_for_a_passing_hypothesis_phase():
    def raises_far_out(x):  # fine on the Hypothesis domain, raises beyond |x| = 1e4
        tf.debugging.assert_less(tf.abs(x), tf.constant(1e4, x.dtype))
        return x * tf.sigmoid(x)

    report = gradcheck.fuzz(raises_far_out, dtype="float32", max_examples=5)
    assert not report.ok and report.kinds == ["error"], str(report)
    assert report.meta["swept"] > 0 and report.reproducer


# -- what a sweep computes once, or on its suspects only ----------------------------------------

def test_a_second_sweep_reuses_the_hints_trace_and_names_the_same_cause():
    traced = []

    def elu_traced(x):
        if not tf.executing_eagerly():  # only the hint (_hints.py) calls it in a graph
            traced.append(x.shape)
        return elu_where(x)

    first, second = (gradcheck.sweep(elu_traced, dtype="float16") for _ in range(2))
    assert len(traced) == 1
    assert first.findings[0].message == second.findings[0].message
    assert "made by op Exp" in second.findings[0].message
    assert "tf.where NaN trap" in second.findings[0].message


def test_a_kept_trace_is_not_trusted_once_the_function_computes_otherwise():
    unsafe = {"op": tf.exp}

    def elu_of(x):  # reads Python state: a trace keeps the op it saw
        return tf.where(x > 0, x, unsafe["op"](x) - 1)

    x = np.array([100.0, -1.0], np.float32)
    assert "op Exp " in gradcheck.check(elu_of, x, modes=()).findings[0].message
    unsafe["op"] = lambda t: tf.math.pow(tf.constant(2.0, t.dtype), t * 1.5)
    message = gradcheck.check(elu_of, x, modes=()).findings[0].message
    assert "op Pow " in message and "tf.where NaN trap" in message


def test_a_subset_of_a_batch_draws_the_batch_draws_of_its_entries():
    from gradcheck._arrays import _signed
    from gradcheck._conditioning import _draws

    where = np.array([3, 17, 18, 999])
    batch = _signed(np.random.default_rng(5), (1000,))
    subset = _draws(np.random.default_rng(5), (4,), ((1000,), where))
    assert np.array_equal(subset, batch[where])
    assert np.array_equal(_draws(np.random.default_rng(5), (1000,), None), batch)
    # Drawn for the entries' span only, then skipped: successive draws, and what the generator
    # gives afterwards, are the batch's too.
    for where in (np.array([0]), np.array([999]), np.array([40, 41, 500])):
        whole, part = np.random.default_rng(9), np.random.default_rng(9)
        for _ in range(4):
            assert np.array_equal(_draws(part, where.shape, ((1000,), where)),
                                  _signed(whole, (1000,))[where])
        assert part.random() == whole.random()


@pytest.mark.parametrize("target", ["selu", "celu", "softplus"])
def test_the_rules_on_the_suspects_only_give_every_value_the_whole_batchs_verdict(target,
                                                                                  monkeypatch):
    """The sweep runs the core's low-precision rules on the values its finite differences
    reject only (_sweep_run._entries), with the batch's verdict on them rather than judging
    them again; the core's own per-element route judges the whole batch and runs the rules on
    it (_routes.check_diagonal on the run's records, its rejected elements kept)."""
    from gradcheck import _routes, _sweep, _sweep_run

    keras = pytest.importorskip("keras")
    fn = {"selu": tf.nn.selu, "celu": keras.activations.celu,
          "softplus": tf.nn.softplus}[target]
    swept = values.values("float16")

    def codes():
        batch = _sweep._Sweep(lambda: fn, target, "float16", None, (), {}, {}).check_values(
            swept, ())
        return batch.code

    def core_route(run):  # as _routes.compare on x alone, the sweep's samples (no probe)
        run.confirm_elementwise([0])
        run.elementwise_confirmed = True
        _, found = _routes.check_diagonal(run.first_order_record(), run.reference_record(),
                                          run.evaluations(), 0, run.diag[0])
        run.mismatch = np.zeros(run.params[0].value.shape, bool) if found is None else found.bad
        run.kink = _sweep_run.kink_in_window(run)  # the sweep's line rule, on every value

    suspects_only = codes()
    monkeypatch.setattr(_sweep_run.SweepRun, "check_gradients", core_route)
    whole_batch = codes()
    assert np.array_equal(suspects_only, whole_batch)
    found = {"selu": 100, "celu": 1, "softplus": 0}[target]  # what each shows, at least
    assert (whole_batch == _sweep.MISMATCH).sum() >= found


def test_neighbours_in_one_stacked_call_give_the_verdicts_of_separate_calls(monkeypatch):
    """explained_by_rounding evaluates an elementwise target's neighbours, where the float64
    formula stands, in one stacked call per dtype on one tape (_conditioning.
    _stacked_gradients); one call per neighbour and dtype, at every entry, is the reference.
    selu in float16 takes that rule, in a sweep and in a check at values of its bug window."""
    from gradcheck import _conditioning, _sweep

    x = tf.constant(np.linspace(-3e-4, 3e-4, 64), tf.float16)

    def verdicts():
        codes = _sweep._Sweep(lambda: tf.nn.selu, "selu", "float16", None, (), {},
                              {}).check_values(values.values("float16"), ()).code
        report = gradcheck.check(tf.nn.selu, x, modes=())
        return codes, [(f.kind, f.message) for f in report.findings]

    stacked, used = _conditioning._stacked_gradients, []
    monkeypatch.setattr(_conditioning, "_stacked_gradients",
                        lambda *a: used.append(1) or stacked(*a))
    codes, findings = verdicts()
    assert len(used) >= 2 and findings  # both took the rule, and the check shows the bug
    monkeypatch.setattr(_conditioning, "_stacked_gradients", lambda *a: None)
    separate_codes, separate_findings = verdicts()
    assert np.array_equal(codes, separate_codes)
    assert findings == separate_findings


def test_stacked_neighbours_give_the_gradients_of_separate_calls():
    """The neighbours' stacked call gives, part for part, the gradients of a call per
    neighbour, bit for bit, for the target and its float64 twin; a per-feature parameter
    (PReLU's alpha, shape (features,)) broadcasts over the stack as over the input."""
    from gradcheck import _check, _conditioning
    from gradcheck._inputs import as_tensors
    from gradcheck._targets import as_target

    alpha = tf.constant([0.25, 0.5, 2.0], tf.float16)

    def prelu(x):
        return tf.where(x > 0, x, tf.cast(alpha, x.dtype) * x)

    tgt = as_target(prelu, "prelu")
    x = np.array([[1.5, -2.0, -0.5], [-1.0, 0.75, -3.0], [2.0, 1.0, -0.25],
                  [-0.5, -1.5, 0.5]])
    run = _check._Run(tgt, as_tensors(tgt, [tf.constant(x, tf.float16)]), True, True, None,
                      None, 0)
    assert run.forward_backward() and run.choose_reference()
    fb, ref = run.first_order_record(), run.reference_record()
    rng = np.random.default_rng(3)
    neighbours = [_conditioning._neighbour(fb, rng, None) for _ in range(4)]
    there, low = _conditioning._stacked_gradients(fb, ref, neighbours)
    for j, values in enumerate(neighbours):
        args = _conditioning._rounded_args(fb, values)
        alone_low = _conditioning._gradients(fb.target, args, fb.params, fb.v, fb.dtype, [])
        alone_twin = _conditioning._gradients(ref.call, args, fb.params, fb.v, tf.float64, [])
        np.testing.assert_array_equal(low[j][0], alone_low[0])
        np.testing.assert_array_equal(there[j][0], alone_twin[0])


_MASK = np.zeros((4, 4), bool)
_MASK[:, 0] = True  # transposed: row 0 takes selu
_TABLE = np.zeros((4, 64), np.int32)
_TABLE[3] = 1  # every column's maximum is 1: rows 0-2 take selu

# kind -> (x's shape and generator seed, target, its arguments after x): row 0 takes selu's
# branch when the target is called on its whole batch, the other rows mostly x * x.
_BRANCH_ON_BATCH = {
    "per-row label": ((4, 64), 0, lambda x, k: tf.where(
        k > 0, tf.nn.selu(x), tf.cast(k, x.dtype) * x + x * x), ([[1], [0], [0], [0]],)),
    "label reduced over the batch": ((4, 64), 0, lambda x, k: tf.where(
        k < tf.reduce_max(k), tf.nn.selu(x), x * x), ([[0], [0], [0], [1]],)),
    "table reduced over the batch": ((4, 64), 0, lambda x, k: tf.where(
        tf.reduce_max(k, axis=0) - k > 0, tf.nn.selu(x), x * x), (_TABLE,)),
    "transposed mask": ((4, 4), 1, lambda x, m: tf.where(
        tf.transpose(m), tf.nn.selu(x), x * x), (_MASK,)),
    "batch size": ((5, 64), 0, lambda x: tf.where(
        tf.shape(x)[0] >= 5, tf.nn.selu(x), x * x), ()),
}


@pytest.mark.parametrize("kind", ["per-row label", "label reduced over the batch",
                                  "table reduced over the batch", "transposed mask",
                                  "batch size"])
def test_stacked_neighbours_keep_the_branch_a_target_takes_on_its_whole_batch(kind):
    """explained_by_rounding's stacked call holds every row of every neighbour, and unmoved
    arguments of the output's shape repeated whole: a target that takes its branch from an
    argument reduced over the batch, or from its batch size, takes the branch it takes
    alone; an argument it reads otherwise (one label per row, a transposed mask) does not
    broadcast against the stack, and each neighbour is evaluated alone. Stacking only the
    rows asked for made the neighbours take the other, correct branch, and selu's float16
    bug in row 0 passed as rounding."""
    shape, seed, target, args = _BRANCH_ON_BATCH[kind]
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 3, shape)
    x[0] = rng.uniform(-3e-4, 3e-4, shape[1])  # selu's float16 bug window
    inputs = [tf.constant(x, tf.float16)] + [tf.constant(a) for a in args]
    for elementwise in (True, None):
        report = gradcheck.check(target, *inputs, modes=(), elementwise=elementwise)
        assert report.kinds == ["gradient_mismatch"], (elementwise, report)
        assert report.findings[0].details["index"][0] == 0


def test_the_neighbours_are_evaluated_only_where_the_float64_formula_stands(monkeypatch):
    """A gradient whose formula is wrong in float64 too is no rounding: explained_by_rounding
    evaluates the neighbours only where the formula stands (and the rounding window did not
    accept the value), so a wrong custom gradient does not pay five float64 passes over every
    value for nothing. selu's float16 bug, whose float64 formula is right, takes the rule."""
    from gradcheck import _conditioning

    @tf.custom_gradient
    def wrong_tanh(x):
        return tf.tanh(x), lambda dy: dy * (1 - tf.tanh(x))  # d tanh = 1 - tanh^2

    stacked, calls = _conditioning._stacked_gradients, {}

    def counted(fb, ref, neighbours):
        calls.setdefault(name, []).append(len(neighbours))
        return stacked(fb, ref, neighbours)

    monkeypatch.setattr(_conditioning, "_stacked_gradients", counted)
    for name, fn in (("wrong", wrong_tanh), ("selu", tf.nn.selu)):
        report = gradcheck.sweep(fn, dtype="float16")
        assert report.kinds == ["gradient_mismatch"], report
    assert "wrong" not in calls
    assert calls["selu"] and all(n == _conditioning._NEIGHBOURS for n in calls["selu"])


def _window_calling(frame):
    """The low-precision window (``within_rounding_window`` or ``within_line_window``) on
    the call stack from ``frame`` up, the innermost; None outside both."""
    while frame is not None and frame.f_code.co_name not in (
            "within_rounding_window", "within_line_window"):
        frame = frame.f_back
    return None if frame is None else frame.f_code.co_name


def _selu_sweep_codes():
    """The verdict code of every float16 value in selu's sweep (its bug window takes both
    low-precision windows)."""
    from gradcheck import _sweep

    return _sweep._Sweep(lambda: tf.nn.selu, "selu", "float16", None, (), {},
                         {}).check_values(values.values("float16"), ()).code


def test_window_evaluations_in_one_stacked_call_give_the_verdicts_of_separate_calls(
        monkeypatch):
    """The rounding window's two evaluations and the line window's four (per element: a
    sweep's kink_in_window) come from one stacked call where the route allows it: the
    suspects' first call takes the line window's along (SweepRun.stacked), and its request
    is served from it. Separate calls are the reference. selu's float16 sweep takes both
    rules."""
    import sys

    from gradcheck import _reference, _sweep

    stacked, calls = _reference.ReferenceCalls.stacked_points, []

    def watched(self, points, separate=False):
        window = _window_calling(sys._getframe(1))
        if window is not None:
            calls.append((window, len(points)))
            if separate:
                return None
        return stacked(self, points)

    monkeypatch.setattr(_reference.ReferenceCalls, "stacked_points", watched)
    together = _selu_sweep_codes()
    assert calls == [("within_rounding_window", 6)]  # 2 + the line window's 4, then served
    monkeypatch.setattr(_reference.ReferenceCalls, "stacked_points",
                        lambda self, points: watched(self, points, separate=True))
    calls.clear()
    assert np.array_equal(together, _selu_sweep_codes())
    assert {caller for caller, _ in calls} == {"within_rounding_window", "within_line_window"}
    assert (together == _sweep.MISMATCH).sum() >= 100


def test_riders_too_large_for_one_call_are_dropped_not_the_request(monkeypatch):
    """Where the suspects' first call with the line window's evaluations along would exceed
    the stack's size limit (a heap not kept: 1 MiB), the request is still stacked alone and
    the line window makes its own stacked call, once (no rider added twice); the verdicts
    are those of an unlimited stack."""
    import sys

    from gradcheck import _reference

    stacked, calls = _reference.ReferenceCalls.stacked_points, []

    def limited(self, points, limit):
        window = _window_calling(sys._getframe(1))
        if window is None:
            return stacked(self, points)
        found = None if len(points) > limit else stacked(self, points)
        calls.append((window, len(points), found is not None))
        return found

    def codes(limit):
        monkeypatch.setattr(_reference.ReferenceCalls, "stacked_points",
                            lambda self, points: limited(self, points, limit))
        calls.clear()
        return _selu_sweep_codes()

    unlimited = codes(limit=6)
    assert calls == [("within_rounding_window", 6, True)]
    assert np.array_equal(codes(limit=4), unlimited)
    assert calls == [("within_rounding_window", 6, False), ("within_rounding_window", 2, True),
                     ("within_line_window", 4, True)]


def test_a_one_element_check_skips_the_elementwise_probe(monkeypatch):
    """With one output element each param's Jacobian is one entry, which its own samples
    measure: the probe along a random direction is not taken, and a wrong derivative is
    still found."""
    from gradcheck import _routes

    @tf.custom_gradient
    def wrong(x):
        return tf.sin(x), lambda dy: dy * tf.sin(x)

    probed = []
    probe = _routes._probe
    monkeypatch.setattr(_routes, "_probe", lambda *a: probed.append(1) or probe(*a))
    one = gradcheck.check(wrong, tf.constant([0.7], tf.float64), modes=())
    assert "gradient_mismatch" in one.kinds and not probed
    two = gradcheck.check(wrong, tf.constant([0.7, -0.2], tf.float64), modes=())
    assert "gradient_mismatch" in two.kinds and probed


def test_a_reproducer_skips_the_determinism_calls_only_where_a_second_call_repeated_the_gradients(
        monkeypatch):
    """check()'s calls that look for noise (one before its own call, more before a finding
    stands) are left out of a sweep's one-value reproducer where the batch's second call gave
    the same outputs and gradients everywhere; a target whose gradient alone is random is not
    swept at all (its values say nothing): no reproducer runs."""
    from gradcheck import _determinism, _sweep

    @tf.custom_gradient
    def noisy_gradient(x):
        y = tf.tanh(x)
        return y, lambda dy: dy * (1 - y * y) * (1 + 0.5 * tf.random.uniform(tf.shape(x), dtype=x.dtype))

    @tf.custom_gradient
    def wrong_gradient(x):
        y = tf.tanh(x)
        return y, lambda dy: dy * (1 - y)

    probing, first_calls = [], []
    check_with, first_call = _sweep.check_with, _determinism.first_call

    def spy(*args, **kwargs):
        probing.append(kwargs["probe_determinism"])
        return check_with(*args, **kwargs)

    monkeypatch.setattr(_sweep, "check_with", spy)
    monkeypatch.setattr(_determinism, "first_call",
                        lambda *a: first_calls.append(1) or first_call(*a))
    assert not gradcheck.sweep(wrong_gradient, dtype="float16").ok
    assert probing and not any(probing) and not first_calls
    probing.clear()
    report = gradcheck.sweep(noisy_gradient, dtype="float16")
    assert report.meta["skipped"] == "two calls at the same values differ" and not probing


def test_an_interval_whose_ends_print_alike_at_six_digits_is_printed_with_more():
    # A window refined to a few ulps in float64 printed as "[-1.42858, -1.42858]".
    from gradcheck._report import distinct_texts

    low, high = distinct_texts(-1.4285799, -1.4285714285714286)
    assert low != high and float(low) == pytest.approx(-1.4285799)
    assert distinct_texts(-0.5, 2.0) == ("-0.5", "2")
    assert distinct_texts(0.434705026, 0.4347050264, 9) == ("0.434705026", "0.4347050264")


def _guarded_sinc(x):
    small = tf.abs(x) < 1e-3
    safe = tf.where(small, tf.ones_like(x), x)
    return tf.where(small, 1.0 - tf.square(x) / 6.0, tf.sin(safe) / safe)


def test_a_value_no_check_alone_shows_at_four_cotangents_is_a_note_not_a_finding():
    # bfloat16 at 0.0067: the gradient's 1 / x terms cancel, and for the sweep's own dy there
    # the rounding passed no rule; a check at that value alone passes at any dy.
    report = gradcheck.sweep(_guarded_sinc, dtype="bfloat16", domain=(-20.0, 20.0))
    assert report.ok, str(report)
    assert "no check at them alone shows" in report.meta["not_reported"][0]
    assert "no finding; not checked: 1 swept value(s)" in str(report)


def test_a_random_targets_sweep_says_why_it_stopped_in_words():
    report = gradcheck.sweep(lambda x: x * tf.random.uniform(tf.shape(x), dtype=x.dtype),
                             dtype="float16")
    assert str(report).endswith("not checked: two calls at the same values differ")


@tf.custom_gradient
def _tanh_noisy_gradient(x):
    y = tf.tanh(x)

    def grad(dy):
        return dy * (1 - y * y) * (1.0 + 0.05 * tf.random.uniform(tf.shape(x), dtype=x.dtype))
    return y, grad


def test_a_gradient_whose_noise_the_sweep_sees_is_nondeterministic_not_a_swept_mismatch():
    # The sweep's second call repeats the outputs, not the gradients: values of a random
    # gradient say nothing (it was a gradient_mismatch at 1 in 3 swept values, "a check at one
    # of these values alone does not show it"); fuzzing's probe names the noise.
    report = gradcheck.sweep(_tanh_noisy_gradient, dtype="float32", domain=(-5.0, 5.0))
    assert report.meta["skipped"] == "two calls at the same values differ", str(report)
    report = gradcheck.fuzz(_tanh_noisy_gradient, dtype="float32", max_examples=10)
    assert report.kinds == ["nondeterministic"], str(report)
    assert report.findings[0].details["cause"] == "backward_varies"
