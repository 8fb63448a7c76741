"""``python -m gradcheck check``: --domain and --option give an undeclared target (or override a
declared one) what a declaration would."""


import pytest
from cli_support import run, write_module

MODULE = """
    import tensorflow as tf


    def sqrt(x):
        return tf.sqrt(x)


    def row_softmax(x):
        return tf.nn.softmax(x, axis=-1)
"""

@pytest.fixture
def acts(tmp_path, monkeypatch):
    """A module of targets in the current directory, under a name no other test uses."""
    return write_module(tmp_path, monkeypatch, "cli_options", MODULE)


SMALL = ("--max-examples", "5", "--hypothesis-seed", "1", "--dtypes", "float64")


def test_domain_keeps_an_undeclared_target_inside_where_it_is_defined(acts):
    status, out, _ = run("check", f"{acts}.py:sqrt", *SMALL)
    assert status == 1, out
    status, out, _ = run("check", f"{acts}.py:sqrt", *SMALL, "--domain", "0.5,4")
    assert status == 0, out


def test_options_declare_an_undeclared_target(acts):
    status, out, _ = run("check", f"{acts}.py:row_softmax", *SMALL)
    assert status == 1 and "not_elementwise" in out
    status, out, _ = run("check", f"{acts}.py:row_softmax", *SMALL, "--option",
                         "elementwise=False", "--option", "input_shape=(None, 4)")
    assert status == 0, out


@pytest.mark.parametrize("argv, message", [
    (("--option", "elementwise"), "expected NAME=VALUE"),
    (("--option", "gradient=lambda x, dy: dy"), "is not a Python literal"),
    (("--option", "dtypes=('float32',)"), "use --dtypes instead"),
    (("--option", "colour=3"), "unknown option 'colour'"),
    (("--domain", "5,1"), "LOW must be below HIGH"),
    (("--domain", "0,inf"), "--domain bound must be finite, got inf"),
])
def test_bad_options_are_usage_errors_that_say_what_to_do(acts, argv, message, capsys):
    status, out, err = run("check", f"{acts}.py:sqrt", *SMALL, *argv)
    err += capsys.readouterr().err  # argparse's own errors go to sys.stderr
    assert status == 2 and message in err, err
