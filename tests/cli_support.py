"""What the command-line tests share: a module of targets on the path, and an in-process run."""

import io
import itertools
import textwrap

from gradcheck._cli import main

_names = itertools.count()


def write_module(tmp_path, monkeypatch, prefix: str, source: str) -> str:
    """``source`` as a module in the current directory, under a name no other test uses."""
    monkeypatch.chdir(tmp_path)
    name = f"{prefix}_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def run(*argv):
    """``python -m gradcheck ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()
