"""README.md opens with the two set-up commands, and CI runs exactly the test-suite one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("\n## ")]
    return re.findall(r"```bash\n(.+?)\n```", head, flags=re.S)


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, test_suite = readme_commands()[:2]
    assert main_job.startswith("python3 -m venv .venv") and "pytest --gradcheck examples/" in main_job
    assert "tensorflow-cpu" in main_job and "tensorflow-cpu" in test_suite


def test_ci_runs_the_readme_test_command_verbatim():
    test_suite = readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_suite


# -- the reference section: every name the code accepts is documented ------------------------

def _reference() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("\n## Reference"):]


def _documented(name: str, text: str) -> bool:
    """Named in code font: `name`, `name=...`, `name VALUE` or `@pytest.mark.name(...)`."""
    return re.search(r"`(@pytest\.mark\.)?" + re.escape(name) + r"[`=( ]", text) is not None


class _Recorder:
    """Stands in for pytest's parser: records the plugin's options and ini keys."""

    def __init__(self):
        self.options, self.ini = [], []

    def getgroup(self, *args, **kwargs):
        return self

    def addoption(self, *names, **kwargs):
        self.options += [n for n in names if n.startswith("--")]

    def addini(self, name, *args, **kwargs):
        self.ini.append(name)


def test_every_declaration_option_is_in_the_reference():
    from gradcheck._declare import OPTIONS

    missing = [name for name in OPTIONS if not _documented(name, _reference())]
    assert not missing, f"declaration options missing from README.md's reference: {missing}"


def test_every_check_option_is_in_the_reference():
    import inspect

    import gradcheck._check

    keywords = [p.name for p in inspect.signature(gradcheck._check.check).parameters.values()
                if p.kind is p.KEYWORD_ONLY or p.default is not p.empty]
    missing = [name for name in keywords if not _documented(name, _reference())]
    assert not missing, f"check() options missing from README.md's reference: {missing}"


def test_every_plugin_option_ini_key_fixture_and_marker_is_in_the_reference():
    import pytest_gradcheck

    recorder = _Recorder()
    pytest_gradcheck.pytest_addoption(recorder)
    assert recorder.options and recorder.ini
    fixtures = [name for name, obj in vars(pytest_gradcheck).items()
                if "fixture" in type(obj).__name__.lower()
                or hasattr(obj, "_pytestfixturefunction")]
    assert "gradcheck_check" in fixtures
    marker = re.match(r"(\w+)\(\*, (.*?)\)", pytest_gradcheck.MARKER)
    marker_options = [part.split("=")[0] for part in marker.group(2).split(", ")]
    names = (recorder.options + recorder.ini + fixtures + [f"@pytest.mark.{marker.group(1)}"]
             + [f"{name}=" for name in marker_options])
    reference = _reference()
    missing = [name for name in names if name not in reference]
    assert not missing, f"pytest --gradcheck names missing from README.md's reference: {missing}"


def test_every_command_line_option_is_in_the_reference():
    import argparse

    from gradcheck._cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    flags = {flag for sub in commands.choices.values() for action in sub._actions
             for flag in action.option_strings if flag not in ("-h", "--help")}
    assert "--domain" in flags and "--option" in flags
    missing = sorted(flag for flag in flags if not _documented(flag, _reference()))
    assert not missing, f"command-line options missing from README.md's reference: {missing}"
