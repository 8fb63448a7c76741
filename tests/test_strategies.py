"""Tests for gradcheck.strategies: dtypes, shapes, tensors and whole inputs."""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from gradcheck._declare import Declaration
from gradcheck.strategies import (edge_values, float_dtypes, inputs_for, shapes,
                                  tensors)

FEW = settings(max_examples=30, deadline=None, database=None)
BF16 = np.dtype(ml_dtypes.bfloat16)
F16_MAX = 65504.0


def largest_at_most(value, dtype):
    """The largest value of ``dtype`` that is <= value (a float64 reference computation)."""
    cast = np.asarray(value).astype(dtype)
    if float(cast) > value:
        cast = np.nextafter(cast, np.asarray(-np.inf).astype(dtype))
    return float(cast)


# -- float_dtypes ------------------------------------------------------------------------------

@FEW
@given(float_dtypes(dtypes=["float16", np.float64, BF16]))
def test_float_dtypes_draws_only_the_names_given(name):
    assert name in ("float16", "float64", "bfloat16")


def test_float_dtypes_shrinks_toward_float32_by_default():
    assert find(float_dtypes(), lambda name: True) == "float32"


@pytest.mark.parametrize("bad", [(), ["int32"], "float32", [np.int8]])
def test_float_dtypes_rejects_what_is_not_a_list_of_float_dtypes(bad):
    with pytest.raises(InvalidArgument, match="dtype"):
        float_dtypes(dtypes=bad)


# -- shapes ------------------------------------------------------------------------------------

@FEW
@given(shapes(min_dims=2, max_dims=3, min_side=2, max_side=3, batch=(1, 5)))
def test_shapes_respect_their_bounds(shape):
    assert 2 <= len(shape) <= 3
    assert 1 <= shape[0] <= 5
    assert all(2 <= side <= 3 for side in shape[1:])


def test_shapes_shrink_to_one_row_of_one():
    assert find(shapes(), lambda s: True) == (1,)
    assert find(shapes(), lambda s: len(s) >= 3) == (1, 1, 1)


def test_a_batch_of_one_is_reachable_even_when_other_sides_are_larger():
    assert find(shapes(min_dims=2, min_side=3), lambda s: s[0] == 1) == (1, 3)


def test_the_batch_axis_reaches_its_maximum():
    assert find(shapes(), lambda s: s[0] == 8) == (8,)


def test_a_fixed_batch_and_rank_zero_are_possible():
    assert find(shapes(batch=4, min_dims=2), lambda s: True) == (4, 1)
    assert find(shapes(min_dims=0, max_dims=0), lambda s: True) == ()


@pytest.mark.parametrize("kwargs, match", [
    ({"min_dims": 3, "max_dims": 2}, "min_dims=3 is greater than max_dims=2"),
    ({"min_side": -1}, "min_side=-1 must be an integer >= 0"),
    ({"max_side": 2.5}, "max_side=2.5 must be an integer"),
    ({"max_dims": 40}, "at most 32"),
    ({"batch": (3, 1)}, r"batch=\(3, 1\) has low > high"),
    ({"batch": "rows"}, "batch='rows' must be None"),
])
def test_shapes_rejects_bad_bounds_saying_what_to_pass(kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        shapes(**kwargs)


# -- tensors: representable, in the domain -----------------------------------------------------

@FEW
@given(st.data(), st.sampled_from(["float16", "bfloat16"]),
       st.sampled_from([(-0.1, 0.1), (1 / 3, 2 / 3), (-1e6, 12.3), (-math.inf, 0.0)]))
def test_low_precision_values_are_in_the_domain_after_the_cast(data, dtype, domain):
    array = data.draw(tensors(shape=shapes(max_dims=2), dtype=dtype, domain=domain))
    assert array.dtype == (BF16 if dtype == "bfloat16" else np.dtype(dtype))
    values = array.astype(np.float64)
    assert np.all(np.isfinite(values))
    assert np.all((values >= domain[0]) & (values <= domain[1])), (domain, values)


@FEW
@given(tensors(shape=(6,), dtype="float32", domain=(0.5, 2.0), kinks=(1.5,)))
def test_a_domain_without_zero_never_yields_zero(array):
    assert array.dtype == np.float32
    assert np.all((array >= 0.5) & (array <= 2.0))


def test_tensors_shrink_to_one_zero():
    array = find(tensors(shape=shapes(), dtype="float32"), lambda a: True)
    assert array.shape == (1,) and array[0] == 0.0


def test_tensors_shrink_to_one_when_zero_is_outside_the_domain():
    assert find(tensors(shape=(2,), dtype="float64", domain=(0.5, 2.0)), lambda a: True).tolist() \
        == [1.0, 1.0]


# -- tensors: edge values are reachable --------------------------------------------------------

@pytest.mark.parametrize("dtype, domain, kinks, wanted", [
    ("float16", (-5.0, 7.3), (), largest_at_most(7.3, np.float16)),   # the domain's end
    ("float16", (-5.0, 7.3), (), -5.0),
    ("float32", (-10.0, 10.0), (), 0.0),
    ("float32", (-10.0, 10.0), (), -1.0),
    ("float16", (-10.0, 10.0), (), -2.0 ** -14),                       # -tiny
    ("bfloat16", (-10.0, 10.0), (), float(ml_dtypes.finfo(BF16).smallest_normal)),
    ("float16", (-1e6, 1e6), (), -F16_MAX),                             # clipped to the dtype
    ("bfloat16", (-math.inf, math.inf), (), float(ml_dtypes.finfo(BF16).max)),
    ("float16", (-10.0, 10.0), (0.1,), largest_at_most(0.1, np.float16)),  # a kink's neighbour
])
def test_edge_values_are_reachable(dtype, domain, kinks, wanted):
    found = find(tensors(shape=(3,), dtype=dtype, domain=domain, kinks=kinks),
                 lambda a: np.any(a.astype(np.float64) == wanted))
    assert wanted in found.astype(np.float64)


def test_edge_values_are_simple_values_then_limits_then_kinks():
    tiny = 2.0 ** -14
    assert edge_values("float16", (-10, 10), kinks=(0.1,)) == (
        0.0, 1.0, -1.0, tiny, -tiny, -10.0, 10.0, 0.0999755859375, 0.10003662109375)


def test_edge_values_leave_out_what_is_outside_the_domain():
    assert edge_values("float32", (0.5, 2.0)) == (1.0, 0.5, 2.0)
    assert edge_values("float16", (-1e9, 0.0)) == (0.0, -1.0, -2.0 ** -14, -F16_MAX)


# -- tensors: bad arguments and reprs ----------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": "int32"}, "dtype='int32' is not a floating dtype"),
    ({"domain": (1.0, 0.0)}, "low > high"),
    ({"domain": "wide"}, "must be a pair of numbers"),
    ({"domain": (0.0, math.nan)}, "must be a pair of numbers"),
    ({"kinks": (math.inf,)}, "every kink must be a finite number"),
    ({"kinks": 0.0}, "must be a sequence of numbers"),
    ({"shape": (2, -1)}, "must be an integer >= 0"),
    ({"shape": "2x3"}, "must be a tuple of sizes"),
    ({"dtype": "float16", "domain": (0.1, 0.1)}, "contains no float16 value"),
])
def test_tensors_rejects_bad_arguments_at_once(kwargs, match):
    arguments = {"shape": (2,), "dtype": "float32", **kwargs}
    with pytest.raises(InvalidArgument, match=match):
        tensors(**arguments)


def test_strategies_have_readable_reprs():
    assert repr(shapes()) == "shapes()"
    assert repr(shapes(max_dims=2, batch=None)) == "shapes(max_dims=2, batch=None)"
    assert repr(float_dtypes(dtypes=["float16"])) == "float_dtypes(dtypes=('float16',))"
    assert repr(tensors(shape=(2,), dtype=np.float16, domain=(-1, 1))) == \
        "tensors(shape=(2,), dtype='float16', domain=(-1.0, 1.0))"
    assert repr(tensors(shape=shapes(), dtype=float_dtypes(), kinks=[0])) == \
        "tensors(shape=shapes(), dtype=float_dtypes(), kinks=(0.0,))"


# -- inputs_for --------------------------------------------------------------------------------

DECLARED = Declaration(kind="activation", domain=(-3.0, 3.0), input_shape=(None, 4),
                       args={"a": (0.5, 2.0), "b": ((4,), -1.0, 1.0)})


@FEW
@given(inputs_for(DECLARED, "bfloat16"))
def test_inputs_for_draws_x_then_each_arg_in_order(inputs):
    x, a, b = inputs
    assert x.ndim == 2 and x.shape[1] == 4 and 1 <= x.shape[0] <= 17
    assert a.shape == () and b.shape == (4,)
    assert all(array.dtype == BF16 for array in inputs)
    assert np.all(np.abs(x.astype(np.float64)) <= 3.0)
    assert 0.5 <= float(a) <= 2.0
    assert np.all(np.abs(b.astype(np.float64)) <= 1.0)


def test_inputs_for_without_input_shape_draws_rank_one_to_four_with_a_batch_axis():
    plain = Declaration(kind="activation")
    assert find(inputs_for(plain, "float32"), lambda i: True)[0].shape == (1,)
    assert find(inputs_for(plain, "float32"), lambda i: i[0].ndim == 4)[0].shape == (1, 1, 1, 1)
    assert find(inputs_for(plain, "float32"), lambda i: i[0].shape[0] == 8)[0].shape == (8,)
    with pytest.raises(NoSuchExample):
        find(inputs_for(plain, "float32"), lambda i: i[0].ndim > 4,
             settings=settings(max_examples=50, database=None))


def test_inputs_for_sometimes_draws_a_batch_past_8_and_a_last_axis_past_4_each_alone():
    """A top-k with k = 5 or a backward pass in chunks of 8 rows changes only past the
    default sizes; each wide axis shrinks to just past them, the others stay narrow."""
    layer = Declaration(kind="layer")
    assert find(inputs_for(layer, "float32"), lambda i: i[0].shape[-1] > 4)[0].shape == (1, 5)
    assert find(inputs_for(layer, "float32"), lambda i: i[0].shape[0] > 8)[0].shape == (9, 1)
    assert find(inputs_for(Declaration(kind="activation"), "float32"),
                lambda i: i[0].shape[0] > 8)[0].shape == (9,)
    assert find(inputs_for(DECLARED, "float32"), lambda i: i[0].shape[0] > 8)[0].shape == (9, 4)
    drawn = [s for s in _shapes_of(layer, 400) if max(s[0] > 8, s[-1] > 4)]
    assert 0.05 < len(drawn) / 400 < 0.5  # about 1 - (7/8)^2 of the examples, not most
    assert max(s[0] for s in drawn) <= 17 and max(s[-1] for s in drawn) <= 16
    assert all(side <= 4 for s in drawn for side in s[1:-1])


def _shapes_of(declaration, count):
    drawn = []

    @settings(max_examples=count, database=None, phases=[Phase.generate])
    @given(inputs_for(declaration, "float32"))
    def collect(inputs):
        drawn.append(inputs[0].shape)

    collect()
    return drawn


def test_inputs_for_rejects_a_bad_dtype():
    with pytest.raises(InvalidArgument, match="pass one of"):
        inputs_for(DECLARED, "int8")


def test_magnitudes_are_also_drawn_log_uniformly_down_to_the_smallest_normal():
    from hypothesis import given, settings
    from gradcheck.strategies import tensors

    seen = []

    @settings(max_examples=200, derandomize=True, database=None)
    @given(tensors(shape=(8,), dtype="float32", domain=(-1e4, 1e4)))
    def draw(x):
        assert (np.abs(x) <= 1e4).all()
        seen.extend(np.abs(x[x != 0]).tolist())

    draw()
    decades = {int(np.floor(np.log10(v))) for v in seen}
    assert min(decades) < -20 and max(decades) >= 3  # tiny and large magnitudes both reached


# -- tensors: a few drawn values laid out by one draw --------------------------------------------

def test_an_array_can_hold_many_distinct_values_in_any_order():
    found = find(tensors(shape=(4, 4), dtype="float32"),
                 lambda a: len(set(a.ravel().tolist())) >= 8 and a[0, 0] > a[0, 1])
    assert len(set(found.ravel().tolist())) >= 8


def test_rows_can_differ_in_sign_and_magnitude():
    found = find(tensors(shape=(3, 2), dtype="float32", domain=(-1e4, 1e4)),
                 lambda a: (a[0] > 100).any() and (a[1] < -100).any())
    assert (found[0] > 100).any() and (found[1] < -100).any()


def test_a_failing_value_shrinks_to_one_entry_of_a_simple_value():
    # what fuzz reports: the smallest shape, every other choice back at its simplest
    found = find(tensors(shape=shapes(), dtype="float32", domain=(-100, 100)),
                 lambda a: (a > 5).any())
    assert found.shape == (1,) and found[0] in (6.0, 100.0)  # just past 5, or the domain's end
    found = find(tensors(shape=shapes(), dtype="float32", domain=(-100, 100)),
                 lambda a: a.ndim == 2 and (np.abs(a) > 50).any())
    assert found.shape == (1, 1) and abs(found[0, 0]) in (51.0, 100.0)


def test_inputs_for_rejects_a_negative_input_shape_entry_when_the_strategy_is_built():
    # A Declaration refuses it itself; inputs_for takes anything with its fields.
    from types import SimpleNamespace

    bad = SimpleNamespace(kind="activation", input_shape=(None, -3), domain=(-1.0, 1.0))
    with pytest.raises(InvalidArgument, match="input_shape entry"):
        inputs_for(bad, "float32")
