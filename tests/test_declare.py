"""@gradcheck.activation / @gradcheck.layer: validation, registration and building."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from gradcheck import _declare
from gradcheck._declare import DTYPES, Declaration, activation, layer, registered_in, registry


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch):
    """Each test starts from an empty registry and leaves the real one as it was."""
    monkeypatch.setattr(_declare, "_REGISTRY", {})


def softplus(x):
    return tf.nn.softplus(x)


def scaled(x, a, b=1.0):
    return x * a + b


class Scale(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, x):
        return x * 2.0


def run_as_module(source, name="applying", path="/src/applying.py", **names):
    """Execute ``source`` as a fresh module ``name``: a new namespace, like an import."""
    namespace = {"__name__": name, "__file__": path, **names}
    exec(compile(textwrap.dedent(source), path, "exec"), namespace)
    return namespace


# -- registration ------------------------------------------------------------------------------

def test_bare_decorator_returns_the_target_and_registers_defaults():
    def swish(x):
        return x * tf.sigmoid(x)

    assert activation(swish) is swish
    (entry,) = registry()
    assert entry.target is swish
    assert entry.declaration == Declaration(kind="activation")
    assert entry.declaration.dtypes == DTYPES
    assert (entry.module, entry.name, entry.qualified) == (
        __name__, "test_bare_decorator_returns_the_target_and_registers_defaults.<locals>.swish",
        f"{__name__}:{entry.name}")
    assert entry.path == __file__
    assert entry.lineno == swish.__code__.co_firstlineno


def test_decorator_with_options_normalizes_them():
    decorate = activation(domain=(-2, 3), dtypes="float64", kinks=[0], input_shape=[None, 4],
                          args={"a": ((4,), 0, 1)})
    assert decorate(scaled) is scaled
    declaration = registry()[0].declaration
    assert declaration.domain == (-2.0, 3.0)
    assert declaration.dtypes == ("float64",)
    assert declaration.kinks == (0.0,)
    assert declaration.input_shape == (None, 4)
    assert declaration.args == {"a": ((4,), 0.0, 1.0)}


def test_dtypes_accept_dtype_objects_and_drop_repeats():
    declaration = Declaration(kind="activation", dtypes=(tf.float32, np.dtype("float64"),
                                                         "float32"))
    assert declaration.dtypes == ("float32", "float64")


def test_a_target_is_registered_under_the_module_that_applies_the_decorator():
    run_as_module("""
        import gradcheck._declare as gd

        gd.activation(domain=(-1, 1))(softplus)
    """, softplus=softplus)
    (entry,) = registry()
    assert (entry.module, entry.name, entry.path) == ("applying", "softplus", "/src/applying.py")
    assert entry.lineno == 4  # softplus is defined elsewhere: the line that applied it
    assert registered_in("applying") == [entry]
    assert registered_in(__name__) == []


def test_reexecuting_a_module_replaces_its_registrations():
    source = """
        import gradcheck._declare as gd

        @gd.activation
        def first(x):
            return x

        if not second_time:
            @gd.activation
            def second(x):
                return x
    """
    run_as_module(source, second_time=False)
    run_as_module(source, second_time=True)
    assert [entry.name for entry in registered_in("applying")] == ["first"]


def test_registering_the_same_target_again_keeps_one_entry_in_place():
    activation(softplus)
    layer(init={"units": 2})(Scale)
    activation(domain=(-1, 1))(softplus)
    assert [entry.name for entry in registry()] == ["softplus", "Scale"]
    assert registry()[0].declaration.domain == (-1.0, 1.0)


def test_two_targets_with_one_name_in_one_module_are_refused():
    with pytest.raises(ValueError, match="two different targets named 'relu'"):
        run_as_module("""
            import gradcheck._declare as gd

            gd.activation(tf.nn.relu)
            gd.activation(keras.activations.relu)
        """, tf=tf, keras=keras)


def test_wrapped_functions_keep_their_own_name():
    @activation
    @tf.custom_gradient
    def clipped(x):
        return tf.identity(x), lambda dy: dy

    twice = activation(tf.function(softplus))
    assert [entry.name.rsplit(".", 1)[-1] for entry in registry()] == ["clipped", "softplus"]
    assert registry()[1].target is twice


# -- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "error", "message"), [
    ({"domian": (0, 1)}, TypeError, "unknown option 'domian' (did you mean 'domain'?)"),
    ({"domain": (1, 0)}, ValueError, "domain must have low < high, got (1.0, 0.0)"),
    ({"domain": (0, float("inf"))}, ValueError, "domain bound must be finite"),
    ({"domain": 5}, TypeError, "domain must be a pair (low, high), got int 5"),
    ({"dtypes": ("float32", "float8")}, ValueError, "unknown dtype 'float8'"),
    ({"dtypes": ()}, ValueError, "dtypes must name at least one of"),
    ({"elementwise": "yes"}, TypeError, "elementwise must be True or False"),
    ({"input_shape": (None, 0)}, ValueError, "positive int or None (drawn), got 0"),
    ({"input_shape": ()}, ValueError, "at least one dimension"),
    ({"input_shape": 4}, TypeError, "input_shape must be a tuple such as (None, 4)"),
    ({"args": {"a": (1,)}}, TypeError, "args['a'] must be (low, high) for a scalar or "
                                       "(shape, low, high)"),
    ({"args": {"a": ((0,), 0, 1)}}, ValueError, "args['a'] shape entries must each be a "
                                                "positive int"),
    ({"args": {"a": (2, 1)}}, ValueError, "args['a'] must have low < high"),
    ({"args": [("a", (0, 1))]}, TypeError, "args must be a dict"),
    ({"kinks": (20,)}, ValueError, "kinks 20.0 lies outside domain (-10.0, 10.0)"),
    ({"max_examples": 0}, ValueError, "max_examples must be at least 1, got 0"),
    ({"max_examples": 2.5}, TypeError, "max_examples must be a positive int or None"),
    ({"rtol": -1e-3}, ValueError, "rtol must be >= 0, got -0.001"),
    ({"atol": "small"}, TypeError, "atol must be a real number"),
    ({"init": {"units": 3}}, TypeError, "init is for @gradcheck.layer"),
])
def test_impossible_options_fail_at_decoration_naming_target_and_option(options, error,
                                                                         message):
    with pytest.raises(error) as excinfo:
        activation(**options)(softplus)
    assert str(excinfo.value).startswith("@gradcheck.activation on softplus: ")
    assert message in str(excinfo.value)
    assert registry() == []


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match="valid options are domain, dtypes, elementwise"):
        activation(shape=(None, 4))(softplus)


def test_args_must_name_the_parameters_after_x_in_order():
    with pytest.raises(TypeError, match=r"args \('b', 'a'\) must name the parameters after "
                                        r"'x' in call order, which are \('a', 'b'\)"):
        activation(args={"b": (0, 1), "a": (0, 1)})(scaled)


def test_parameters_without_default_need_an_args_entry():
    with pytest.raises(TypeError, match=r"parameters \('a',\) have no default and no args "
                                        r"entry; declare them, e.g. args=\{'a': "):
        activation(scaled)


def test_activation_rejects_non_callables_and_classes():
    with pytest.raises(TypeError, match=r"expected a function of tensors, got tuple \(-1, 1\); "
                                        r"pass options by keyword"):
        activation((-1, 1))
    with pytest.raises(TypeError, match="use @gradcheck.layer for a Keras Layer class"):
        activation(Scale)


def test_layer_rejects_what_is_neither_a_layer_class_nor_a_zero_arg_factory():
    with pytest.raises(TypeError, match="got the class int, which does not subclass "
                                        "keras.layers.Layer"):
        layer(int)
    with pytest.raises(TypeError, match="got a callable with required parameters x"):
        layer(softplus)
    with pytest.raises(TypeError, match="got int 3"):
        layer(3)


def test_layer_class_needs_its_required_init_arguments():
    with pytest.raises(TypeError, match=r"Scale.__init__ requires \('units',\); pass them as "
                                        r"init=\{'units': ...\}"):
        layer(Scale)
    with pytest.raises(ValueError, match="init must not contain 'dtype'"):
        layer(init={"units": 2, "dtype": "float32"})(Scale)


def test_layer_defaults_to_not_elementwise():
    layer(init={"units": 2})(Scale)
    layer(elementwise=True)(lambda: keras.layers.Activation("tanh"))
    assert [entry.declaration.elementwise for entry in registry()] == [False, True]
    assert registry()[0].declaration.kind == "layer"


# -- building ----------------------------------------------------------------------------------

def test_build_returns_an_activation_itself():
    activation(softplus)
    assert registry()[0].build("float16") is softplus


def test_build_instantiates_a_fresh_layer_in_the_dtype():
    layer(init={"units": 3})(Scale)
    entry = registry()[0]
    built = entry.build("float16")
    assert isinstance(built, Scale)
    assert (built.units, built.dtype_policy.name) == (3, "float16")
    assert entry.build("float16") is not built


def test_build_calls_a_factory_under_floatx_and_restores_it():
    layer(lambda: keras.layers.Dense(2))
    floatx = keras.config.floatx()
    built = registry()[0].build("float64")
    assert built.dtype_policy.name == "float64"
    assert keras.config.floatx() == floatx


def test_build_refuses_a_factory_that_returns_no_layer():
    def not_a_factory():
        return softplus

    layer(not_a_factory)
    with pytest.raises(TypeError, match="the layer factory returned function, expected a "
                                        "keras.layers.Layer instance"):
        registry()[0].build("float32")


def test_build_refuses_an_unknown_dtype():
    activation(softplus)
    with pytest.raises(ValueError, match=r"cannot build for dtype 'int32'; expected one of"):
        registry()[0].build("int32")


def test_importing_declare_does_not_import_tensorflow_or_keras():
    code = ("import sys, gradcheck._declare; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'hypothesis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_declaring_a_layer_instance_is_a_declaration_error_that_says_what_to_do():
    # It was accepted as a factory and failed in every item: "missing a required argument".
    with pytest.raises(TypeError, match="got a Layer instance; decorate its class"):
        layer(input_shape=(None, 3))(keras.layers.Dense(2))
