"""One name per option: ``max_examples`` everywhere, ``seed`` for gradcheck's own random draws,
``hypothesis_seed`` for Hypothesis's; the old spellings still work for one release and warn."""

from __future__ import annotations

import io
import warnings

import pytest

import gradcheck
from gradcheck._cli import build_parser, main

SETTINGS_TEST = """
    def test_session(gradcheck_settings):
        assert gradcheck_settings.max_examples == {expected}
"""


def test_the_new_plugin_option_sets_max_examples(pytester):
    pytester.makepyfile(test_settings=SETTINGS_TEST.format(expected=4))
    result = pytester.runpytest_inprocess("--gradcheck-max-examples", "4")
    result.assert_outcomes(passed=1)
    assert "deprecated" not in result.stdout.str()


def test_the_new_ini_key_sets_max_examples(pytester):
    pytester.makeini("[pytest]\ngradcheck_max_examples = 6\n")
    pytester.makepyfile(test_settings=SETTINGS_TEST.format(expected=6))
    result = pytester.runpytest_inprocess("--strict-config")
    result.assert_outcomes(passed=1)
    assert "deprecated" not in result.stdout.str()


def test_the_old_plugin_option_still_works_and_warns_naming_the_new_one(pytester):
    pytester.makepyfile(test_settings=SETTINGS_TEST.format(expected=5))
    result = pytester.runpytest_inprocess("--gradcheck-examples", "5")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*PytestDeprecationWarning: gradcheck: the command line option "
                                 "--gradcheck-examples is deprecated*use "
                                 "--gradcheck-max-examples instead"])


def test_the_old_ini_key_still_works_and_warns_naming_the_new_one(pytester):
    pytester.makeini("[pytest]\ngradcheck_examples = 3\n")
    pytester.makepyfile(test_settings=SETTINGS_TEST.format(expected=3))
    result = pytester.runpytest_inprocess("--strict-config")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*PytestDeprecationWarning: gradcheck: the ini option "
                                 "gradcheck_examples is deprecated*use gradcheck_max_examples "
                                 "instead"])


def test_the_new_spelling_beats_the_old_one_where_both_are_given(pytester):
    pytester.makeini("[pytest]\ngradcheck_max_examples = 8\ngradcheck_examples = 3\n")
    pytester.makepyfile(test_settings=SETTINGS_TEST.format(expected=8))
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1)


def test_a_bad_value_for_the_old_option_names_the_old_option(pytester):
    result = pytester.runpytest_inprocess("--gradcheck", "--gradcheck-examples", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value '0' for command line option "
                                 "--gradcheck-examples: expected a positive integer*"])


@pytest.mark.parametrize(("new", "old"), [("--max-examples", "--examples"),
                                          ("--hypothesis-seed", "--seed")])
def test_the_old_cli_spellings_set_the_new_option_and_say_so_on_stderr(new, old):
    dest = new.lstrip("-").replace("-", "_")
    parsed_new = build_parser().parse_args(["check", "x:y", new, "3"])
    parsed_old = build_parser().parse_args(["check", "x:y", old, "3"])
    assert getattr(parsed_new, dest) == getattr(parsed_old, dest) == 3
    assert not hasattr(parsed_new, "deprecated")
    err = io.StringIO()
    # a target that does not load: the deprecation line comes first, then the usage error
    assert main(["check", "no_such_module_here:f", old, "3"], stdout=io.StringIO(),
                stderr=err) == 2
    assert (f"gradcheck: {old} is deprecated and will be removed in the next release; use "
            f"{new} instead") in err.getvalue()


def test_the_plot_command_keeps_seed_for_its_own_random_line():
    assert build_parser().parse_args(["plot", "x:y", "-o", "f.png", "--seed", "4"]).seed == 4


def test_fuzz_takes_hypothesis_seed_and_the_old_seed_still_works_with_a_warning():
    def square(x):
        return x * x

    new = gradcheck.fuzz(square, dtype="float64", max_examples=3, hypothesis_seed=5)
    with pytest.warns(DeprecationWarning, match=r"fuzz\(seed=\.\.\.\) is deprecated.*"
                                                r"hypothesis_seed="):
        old = gradcheck.fuzz(square, dtype="float64", max_examples=3, seed=5)
    assert new.ok and old.ok
    assert new.meta["seed"] == old.meta["seed"] == 5
    assert new.meta["examples"] == old.meta["examples"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradcheck.fuzz(square, dtype="float64", max_examples=2, hypothesis_seed=5)


def test_the_settings_fixture_keeps_its_old_attribute_names_with_a_warning(pytester):
    pytester.makepyfile(test_settings="""
        import pytest

        def test_old_names(gradcheck_settings):
            with pytest.warns(pytest.PytestDeprecationWarning, match="use .*max_examples"):
                assert gradcheck_settings.examples == gradcheck_settings.max_examples == 4
            with pytest.warns(pytest.PytestDeprecationWarning, match="use .*hypothesis_seed"):
                assert gradcheck_settings.seed == gradcheck_settings.hypothesis_seed == 9
    """)
    result = pytester.runpytest_inprocess("--gradcheck-max-examples", "4",
                                          "--hypothesis-seed", "9")
    result.assert_outcomes(passed=1)
