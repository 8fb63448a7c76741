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
