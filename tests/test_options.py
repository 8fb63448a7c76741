"""Options are named, defaulted and validated in one place (gradcheck/_options.py)."""

import dataclasses
import inspect

import numpy as np
import pytest
import tensorflow as tf

import gradcheck
from gradcheck._declare import Declaration
from gradcheck._options import CHECK_DEFAULTS, DTYPES, check_call, check_options

X = np.linspace(-2.0, 2.0, 5)


def tanh_(x):
    return tf.tanh(x)


@pytest.mark.parametrize("option, value, error, text", [
    ("rtol", -1e-3, ValueError, "rtol must be >= 0, got -0.001"),
    ("atol", "small", TypeError, "atol must be a real number, got str 'small'"),
    ("order", 3, ValueError, "order must be 1 .gradients. or 2"),
    ("modes", ("graph",), ValueError, "unknown mode 'graph' in modes=\\('graph',\\)"),
    ("modes", 3, TypeError, "modes must be a tuple of names from"),
    ("policies", ("float16",), ValueError, "unknown policy 'float16'"),
])
def test_check_and_a_declaration_reject_a_bad_option_with_the_same_words(option, value, error,
                                                                         text):
    with pytest.raises(error, match=f"^gradcheck: {text}"):
        gradcheck.check(tf.tanh, X, **{option: value})
    with pytest.raises(error, match=f"^@gradcheck.activation on tanh_: {text}"):
        gradcheck.activation(**{option: value})(tanh_)


def test_the_options_a_declaration_passes_on_are_check_keywords_with_checks_defaults():
    parameters = inspect.signature(gradcheck.check).parameters
    declared = {f.name: f.default for f in dataclasses.fields(Declaration)}
    for name, default in CHECK_DEFAULTS.items():
        assert parameters[name].default == default or (name == "policies" and default == ())
        # A declared activation promises elementwise and batch-independent rows (check()
        # infers them when nothing is passed), and its default domain is where Hypothesis
        # draws, not a bound on the steps.
        if name not in ("elementwise", "batch_independent", "domain"):
            assert declared[name] == default, name


def test_check_options_are_the_declarations_own():
    declaration = Declaration(kind="activation", elementwise=False, rtol=0.1, order=2,
                              modes=("eager",), domain=(-1, 1))
    assert check_options(declaration) == {"elementwise": False, "batch_independent": True,
                                          "rtol": 0.1, "atol": None, "order": 2,
                                          "modes": ("eager",), "policies": (),
                                          "domain": (-1.0, 1.0), "gradient": None}


def test_one_table_of_dtype_names():
    from gradcheck import _cli, _declare, _html, _kerases, strategies

    assert DTYPES == ("float16", "bfloat16", "float32", "float64")
    assert _declare.DTYPES is _html.DTYPES is _cli.DTYPE_NAMES is strategies.FLOAT_DTYPES is DTYPES
    assert _kerases.FLOAT_DTYPES is DTYPES


def test_a_reproducer_writes_only_the_options_that_differ_from_checks_defaults_seed_last():
    options = {"seed": 3, "elementwise": None, "modes": None, "order": 2, "policies": ()}
    assert check_call("f", ["x", "y"], options) == "gradcheck.check(f, x, y, order=2, seed=3)"
    assert check_call("f", ["x"], {"seed": 0}) == "gradcheck.check(f, x)"


def test_assert_gradients_accepts_exactly_checks_keywords():
    keywords = {name for name, p in inspect.signature(gradcheck.check).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    from gradcheck._check import _OPTIONS

    assert _OPTIONS == keywords


def test_check_options_are_one_frozen_validated_object():
    from gradcheck._options import CheckOptions

    options = CheckOptions(rtol=1, domain=[0, 5], modes="function")
    assert (options.rtol, options.domain, options.modes) == (1.0, (0.0, 5.0), ("function",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.rtol = 2.0
    for bad, error in (({"elementwise": "yes"}, TypeError), ({"domain": (5, 0)}, ValueError),
                       ({"order": 2, "gradient": lambda x, dy: dy}, ValueError),
                       ({"modes": ("graph",)}, ValueError)):
        with pytest.raises(error):
            CheckOptions(**bad)
    # A declaration without a domain bounds no step: (-10, 10) is only where Hypothesis draws.
    assert CheckOptions.of(Declaration(kind="activation")).domain is None
    assert CheckOptions.of(Declaration(kind="activation", domain=(0, 1))).domain == (0.0, 1.0)


def test_a_declaration_holds_the_check_options_it_was_validated_as():
    from gradcheck._declare import OPTIONS
    from gradcheck._options import CheckOptions

    declaration = Declaration(kind="activation", rtol=1, modes="function", domain=[0, 5])
    assert CheckOptions.of(declaration) is declaration.options
    assert declaration.options == CheckOptions(elementwise=True, batch_independent=True,
                                               rtol=1.0, modes=("function",), domain=(0.0, 5.0))
    assert (declaration.rtol, declaration.modes, declaration.domain) == (
        1.0, ("function",), (0.0, 5.0))
    assert "options" not in OPTIONS  # made from the other fields, not given
    with pytest.raises(TypeError):
        Declaration(kind="activation", options=CheckOptions())


def test_the_declarations_validate_with_the_options_validators_not_their_own():
    from gradcheck import _declare, _options

    def functions(module):
        return {name.lstrip("_") for name, f in vars(module).items()
                if inspect.isfunction(f) and f.__module__ == module.__name__}

    assert functions(_declare) & functions(_options) == set()
