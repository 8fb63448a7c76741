"""gradcheck.plot.derivatives: the figure, and the facts it draws (small grids, few dtypes)."""

import keras
import pytest
import tensorflow as tf

pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402

from gradcheck.plot import derivatives  # noqa: E402


@tf.custom_gradient
def elu_wrong_branch(x):
    """ELU whose derivative forgets the "+ 1" for x <= 0 (returns elu(x), not exp(x))."""
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(y), y)

    return y, grad


@tf.custom_gradient
def elu_right(x):
    y = tf.nn.elu(x)

    def grad(dy):
        return dy * tf.where(x > 0, tf.ones_like(y), y + 1)

    return y, grad


def elu_where_exp(x):
    """The tf.where NaN trap: exp overflows in the branch not taken."""
    return tf.where(x > 0, x, tf.exp(x) - 1)


@tf.custom_gradient
def sin_ignores_dy(x):
    def grad(dy):
        return tf.cos(x)

    return tf.sin(x), grad


@tf.custom_gradient
def scaled_relu_wrong_alpha(x, alpha):
    positive = tf.cast(x > 0, x.dtype)

    def grad(dy):
        return dy * positive * alpha, tf.reduce_sum(dy * positive * alpha)  # should be relu(x)

    return tf.nn.relu(x) * alpha, grad


def row_norm(x):
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True) + 1.0)


class PReLU(keras.layers.Layer):
    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(),
                                     initializer=keras.initializers.Constant(0.25))

    def call(self, inputs):
        return tf.where(inputs > 0, inputs, self.alpha * inputs)


def panel(figure, dtype=None):
    panels = figure.gradcheck["panels"]
    return panels[0] if dtype is None else next(p for p in panels if p["dtype"] == dtype)


# -- the image ---------------------------------------------------------------------------------

def test_a_figure_is_saved_as_a_png_of_its_size_in_pixels_and_is_not_blank(tmp_path):
    path = tmp_path / "elu.png"
    figure = derivatives(elu_wrong_branch, dtypes=("float32",), points=41, path=path, dpi=50)
    assert path.exists()
    image = imread(path)
    width, height = figure.get_size_inches() * 50
    assert image.shape[:2] == (round(height), round(width))
    rgb = image[..., :3]
    non_white = (rgb < 0.95).any(axis=-1).mean()
    assert 0.05 < non_white < 0.9  # drawn on, and not a solid block
    assert rgb.std() > 0.1


def test_the_figure_has_titled_labelled_panels_and_one_legend():
    figure = derivatives(elu_wrong_branch, dtypes=("float16", "float64"), points=21)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 4  # f and f' for each dtype
    titles = [ax.get_title(loc="left") for ax in visible if ax.get_title(loc="left")]
    assert [t.splitlines()[0] for t in titles] == [
        "elu_wrong_branch [float16]", "elu_wrong_branch [float64]"]
    assert {ax.get_ylabel() for ax in visible} == {"f(x)", "f′(x)"}
    assert {ax.get_xlabel() for ax in visible} >= {"x"}
    (legend,) = figure.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:3] == ["f (computed in the column's dtype)",
                          "analytic derivative (autodiff, column's dtype, dy = 1)",
                          "numerical derivative (central differences, float64 unless noted)"]
    assert any(label.startswith("mismatch:") for label in labels)


# -- what is drawn -----------------------------------------------------------------------------

def test_a_wrong_branch_is_shaded_exactly_where_the_branch_is():
    figure = derivatives(elu_wrong_branch, dtypes=("float32", "float64"), points=41,
                         domain=(-4.0, 4.0))
    for dtype in ("float32", "float64"):
        facts = panel(figure, dtype)
        assert facts["points"] == 41
        assert facts["mismatched"] == 21  # x in [-4, 0]: the derivative at 0 is exp(0) = 1
        assert facts["check"] == ["gradient_mismatch"]
        assert facts["nonfinite_f"] == facts["nonfinite_gradient"] == 0


def test_a_correct_custom_gradient_shows_no_mismatch_in_any_dtype():
    figure = derivatives(elu_right, points=61, domain=(-20.0, 20.0))
    assert [p["dtype"] for p in figure.gradcheck["panels"]] == [
        "float16", "bfloat16", "float32", "float64"]
    for facts in figure.gradcheck["panels"]:
        assert (facts["mismatched"], facts["check"], facts["error"]) == (0, [], None)


def test_the_where_exp_trap_marks_nan_gradients_where_exp_overflows():
    figure = derivatives(elu_where_exp, dtypes=("float32",), points=41, domain=(-100, 100))
    facts = panel(figure)
    assert facts["nonfinite_f"] == 0
    assert facts["nonfinite_gradient"] == 3  # x = 90, 95, 100: exp(x) > float32 max (88.7)
    assert facts["check"] == ["nonfinite_gradient"]


def test_a_gradient_that_ignores_dy_shows_with_a_random_dy():
    figure = derivatives(sin_ignores_dy, dtypes=("float64",), points=21)
    facts = panel(figure)
    assert facts["mismatched"] == 0  # with dy = 1 the curves agree...
    assert facts["random_dy_differs"] > 15  # ...a random dy does not
    assert facts["check"] == ["gradient_mismatch"]


def test_kinks_are_found_between_grid_points_and_on_them():
    figure = derivatives(lambda x: tf.abs(x - 0.3), dtypes=("float64",), points=20,
                         domain=(-2.0, 2.0))
    (kink,) = panel(figure)["kinks"]
    assert kink == pytest.approx(0.3, abs=1e-3)
    figure = derivatives(tf.nn.relu, dtypes=("float32",), points=21, domain=(-2.0, 2.0))
    assert panel(figure)["kinks"] == [0.0]


def test_a_layer_gets_a_panel_for_its_scalar_weight():
    figure = derivatives(PReLU, dtypes=("float32",), points=21, elementwise=True, kinks=(0.0,))
    facts = panel(figure)
    assert facts["parameters"] == {"alpha": 0}
    assert facts["kinks"] == [0.0]
    assert facts["mismatched"] == 0
    labels = [ax.get_ylabel() for ax in figure.axes if ax.get_visible()]
    assert labels == ["f(x)", "f′(x)", "∂f/∂alpha"]


def test_a_wrong_parameter_gradient_is_shaded_in_its_panel():
    figure = derivatives(scaled_relu_wrong_alpha, dtypes=("float64",), points=21,
                         domain=(-2.0, 2.0), args={"alpha": (0.5, 1.5)}, kinks=(0.0,))
    facts = panel(figure)
    assert facts["mismatched"] == 0  # d/dx is right
    assert facts["parameters"]["alpha"] == 9  # d/dalpha = relu(x), wrong for x > 0 but x = 1


def test_a_non_elementwise_target_is_drawn_along_a_random_line():
    figure = derivatives(row_norm, dtypes=("float32",), points=31, elementwise=False,
                         input_shape=(None, 3))
    assert figure.gradcheck["abscissa"] == "t"
    facts = panel(figure)
    assert facts["points"] == 32  # 31 and t = 0, the random base point
    assert (facts["mismatched"], facts["check"]) == (0, [])
    assert "t (x = x0 + t·u)" in [ax.get_xlabel() for ax in figure.axes]


def test_a_dtype_the_target_cannot_run_in_is_drawn_as_its_error():
    def hard_coded_float32(x):
        return x * tf.constant(2.0, tf.float32)

    figure = derivatives(hard_coded_float32, dtypes=("float16", "float32"), points=11)
    assert "InvalidArgumentError" in panel(figure, "float16")["error"]
    assert panel(figure, "float32")["error"] is None


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"points": 3}, ValueError, "points must be an integer >= 5"),
    ({"dtypes": ("float8",)}, ValueError, "expected names from float16"),
    ({"domian": (0, 1)}, TypeError, "unknown option 'domian'"),
])
def test_bad_arguments_say_what_is_valid(options, error, message):
    with pytest.raises(error, match=message):
        derivatives(elu_right, **options)
