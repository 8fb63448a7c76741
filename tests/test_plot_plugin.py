"""``pytest --gradcheck --gradcheck-plots DIR --gradcheck-html PATH`` on a generated project."""

import base64
import importlib.util
import json
import re
import textwrap

import pytest
import tensorflow as tf  # noqa: F401  (imported once: in-process pytester runs reuse it)

import gradcheck._check  # noqa: F401  (kept across pytester's sys.modules snapshots)
import gradcheck._fuzz  # noqa: F401

pytest.importorskip("matplotlib")
import gradcheck.plot  # noqa: E402,F401

# One correct activation and one whose gradient forgets dy, in two dtypes each.
ACTS = """
    import tensorflow as tf
    import gradcheck


    @gradcheck.activation(dtypes=("float32", "float64"), domain=(-3, 3))
    def softplus(x):
        return tf.nn.softplus(x)


    @gradcheck.activation(dtypes=("float32", "float64"), domain=(-3, 3))
    @tf.custom_gradient
    def forgets_dy(x):
        def grad(dy):
            return tf.sigmoid(x)  # should be dy * tf.sigmoid(x)
        return tf.nn.softplus(x), grad
"""

IDS = ["plotacts.py::softplus[float32]", "plotacts.py::softplus[float64]",
       "plotacts.py::forgets_dy[float32]", "plotacts.py::forgets_dy[float64]"]
FAILING = IDS[2:]
OPTIONS = ("--gradcheck", "--gradcheck-max-examples", "3", "--gradcheck-plots", "figs",
           "--gradcheck-html", "out/report.html")


@pytest.fixture
def acts(pytester):
    pytester.makepyfile(plotacts=textwrap.dedent(ACTS))
    return pytester


def check_outputs(path):
    """One PNG per failing item; one self-contained page naming every item."""
    pngs = sorted(p.name for p in (path / "figs").iterdir())
    assert pngs == ["plotacts.py__forgets_dy-float32.png", "plotacts.py__forgets_dy-float64.png"]
    for name in pngs:
        assert (path / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (path / "out" / "report.html").read_text()
    for nodeid in IDS:
        assert nodeid in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FAILING)
    assert all(base64.b64decode(image)[:4] == b"\x89PNG" for image in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # nothing to fetch
    assert "gradient_mismatch" in page and "reproduce:" in page
    return page


def test_failing_items_get_a_png_each_and_every_item_a_line_in_the_html_page(acts):
    result = acts.runpytest_inprocess(*OPTIONS, "--gradcheck-report", "report.json",
                                      "--junitxml", "junit.xml")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["gradcheck: 2 figures of failing items written to *figs",
                                 "gradcheck: HTML report written to *out/report.html"])
    check_outputs(acts.path)
    results = json.loads((acts.path / "report.json").read_text())["results"]
    figures = {r["nodeid"]: r.get("figure") for r in results}
    assert [n for n, f in figures.items() if f] == FAILING
    assert "gradcheck_figure" not in (acts.path / "junit.xml").read_text()  # no base64 there


def test_the_html_page_alone_needs_no_plots_folder(acts):
    result = acts.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "2",
                                      "--gradcheck-dtypes", "float64", "-k", "softplus",
                                      "--gradcheck-html", "page.html")
    result.assert_outcomes(passed=1)
    page = (acts.path / "page.html").read_text()
    assert "plotacts.py::softplus[float64]" in page and "data:image/png" not in page
    assert not (acts.path / "figs").exists()


def test_under_xdist_the_controller_writes_the_figures_and_the_page_once(acts):
    result = acts.runpytest_subprocess(*OPTIONS, "-n", "2")
    result.assert_outcomes(passed=2, failed=2)
    check_outputs(acts.path)


def test_plots_without_matplotlib_is_a_usage_error(acts, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = acts.runpytest_inprocess("--gradcheck", "--gradcheck-plots", "figs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gradcheck-plots needs matplotlib*pip install "
                                 "'gradcheck[[]plot[]]'*"])


def test_the_html_page_without_matplotlib_says_why_it_has_no_figures(acts, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = acts.runpytest_inprocess("--gradcheck", "--gradcheck-max-examples", "2",
                                      "--gradcheck-html", "page.html")
    result.assert_outcomes(passed=2, failed=2)
    assert "data:image/png" not in (acts.path / "page.html").read_text()
    result.stdout.fnmatch_lines([("gradcheck: the HTML report has no figures: matplotlib is "
                                  "not installed (pip install 'gradcheck[[]plot[]]')")])


def test_the_options_are_documented(pytester):
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*--gradcheck-plots=DIR*", "*--gradcheck-html=PATH*",
                                 "*gradcheck_plots (string):*", "*gradcheck_html (string):*"])
