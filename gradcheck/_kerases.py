"""Which Keras a layer belongs to: Keras 3 (``keras``) or Keras 2 (``tf_keras``).

With ``tf-keras`` installed and ``TF_USE_LEGACY_KERAS=1``, ``tf.keras`` is Keras 2 while
``import keras`` is still Keras 3, and one program may hold layers of both. Each follows its own
rules (its own global dtype policy, its own variable tracking), so the Keras is read from the
layer itself, its class's base classes, never guessed from the environment.

TensorFlow-free and cheap: only modules already imported are looked at (a Layer of some Keras
implies that Keras is imported), so ``@gradcheck.layer`` stays light.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any, Iterable, Iterator

from ._options import DTYPES

__all__ = ["imported", "keras_of", "is_layer", "is_layer_class", "is_lambda", "autocasts",
           "built_feature_shape", "dtype_scope", "seed_generators"]

#: The top-level modules of the Kerases gradcheck knows: Keras 3, then Keras 2 (tf-keras).
MODULES = ("keras", "tf_keras")

FLOAT_DTYPES = DTYPES  # the one table of dtype names


def imported() -> list[ModuleType]:
    """The Keras modules of :data:`MODULES` that this process has imported and that have Layers."""
    found = []
    for name in MODULES:
        module = sys.modules.get(name)
        if module is not None and _layer_base(module) is not None:
            found.append(module)
    return found


def keras_of(obj: Any) -> ModuleType | None:
    """The Keras module (``keras`` or ``tf_keras``) whose ``layers.Layer`` the layer instance
    or class ``obj`` derives from; None for anything else."""
    cls = obj if isinstance(obj, type) else type(obj)
    for module in imported():
        if issubclass(cls, _layer_base(module)):
            return module
    return None


def is_layer_class(obj: Any) -> bool:
    """A Layer subclass of Keras 3 or of tf-keras."""
    return isinstance(obj, type) and keras_of(obj) is not None


def is_layer(obj: Any) -> bool:
    """A Layer instance of Keras 3 or of tf-keras."""
    return not isinstance(obj, type) and keras_of(obj) is not None


def is_lambda(obj: Any) -> bool:
    """A ``layers.Lambda`` instance of its own Keras (checked like the function it wraps)."""
    module = keras_of(obj)
    lambda_type = getattr(getattr(module, "layers", None), "Lambda", None)
    return isinstance(lambda_type, type) and isinstance(obj, lambda_type)


def built_feature_shape(layer: Any) -> tuple[int | None, ...] | None:
    """The feature axes (all but the batch axis) of the one input a built layer was built
    for: Keras 3 keeps its build's shapes by argument name, tf-keras its input shape. None
    where the layer is not built, took several inputs, or its Keras does not say."""
    if not getattr(layer, "built", False):
        return None
    shapes = getattr(layer, "_build_shapes_dict", None)  # Keras 3
    if isinstance(shapes, dict):
        shape = next(iter(shapes.values())) if len(shapes) == 1 else None
    else:
        shape = getattr(layer, "_build_input_shape", None)  # tf-keras
        shape = shape.as_list() if hasattr(shape, "as_list") and shape.rank is not None \
            else shape
    if not isinstance(shape, (tuple, list)) or len(shape) < 2 \
            or not all(s is None or isinstance(s, int) for s in shape):
        return None
    return tuple(shape[1:])


def seed_generators(layer: Any) -> list[Any]:
    """The Keras 3 ``SeedGenerator``s of a layer and of every layer it holds (Dropout's,
    GaussianNoise's, a ``keras.random`` call's ``seed=``): each one's ``state`` variable says
    which random numbers the next call draws, and moves on at every draw. Empty for tf-keras,
    whose random ops follow TensorFlow's global seed."""
    try:
        layers = list(layer._flatten_layers())
    except Exception:  # noqa: BLE001 - not a Keras 3 layer: nothing of its own to restore
        return []
    found: list[Any] = []
    for sub in layers:
        for generator in getattr(sub, "_seed_generators", None) or []:
            if hasattr(generator, "state") and all(generator is not g for g in found):
                found.append(generator)
    return found


def autocasts(layer: Any) -> bool:
    """Whether Keras casts ``layer``'s floating inputs, and reads its variables, in the
    compute dtype when it is called: Keras 3's ``autocast`` (False for its
    LayerNormalization), tf-keras' ``_autocast``; True where neither says."""
    for name in ("autocast", "_autocast"):
        value = getattr(layer, name, None)
        if isinstance(value, bool):
            return value
    return True


@contextmanager
def dtype_scope(name: str, modules: Iterable[ModuleType], set_floatx: bool = True
                ) -> Iterator[None]:
    """Set each Keras in ``modules``' global dtype policy to ``name`` (a dtype or a
    mixed-precision policy name), and its floatx to ``name`` (``float32`` for a policy) unless
    ``set_floatx`` is False, for the block; always restored. Layers built inside without a
    ``dtype`` (a factory's, sublayers) then follow it, as under an application's own setting."""
    with ExitStack() as stack:
        for module in modules:
            stack.enter_context(_scope(module, name, set_floatx))
        yield


@contextmanager
def _scope(module: ModuleType, name: str, set_floatx: bool) -> Iterator[None]:
    floatx = name if name in FLOAT_DTYPES else "float32"
    config = getattr(module, "config", None)
    if hasattr(config, "set_dtype_policy"):  # Keras 3
        # Keras 3 fixes its global dtype policy the first time it is read, after which
        # set_floatx no longer changes what new layers use: set the policy itself.
        previous_floatx, previous_policy = config.floatx(), config.dtype_policy()
        if set_floatx:
            config.set_floatx(floatx)
        config.set_dtype_policy(name)
        try:
            yield
        finally:
            config.set_dtype_policy(previous_policy)
            config.set_floatx(previous_floatx)
        return
    # Keras 2: backend.floatx and mixed_precision's global policy. An unset policy follows
    # floatx; restore it unset (None) rather than pinning the policy read here.
    backend, mixed = module.backend, module.mixed_precision
    previous_floatx = backend.floatx()
    policy_module = sys.modules.get(f"{module.__name__}.src.mixed_precision.policy")
    previous_policy = getattr(policy_module, "_global_policy", mixed.global_policy())
    if set_floatx:
        backend.set_floatx(floatx)
    mixed.set_global_policy(name)
    try:
        yield
    finally:
        mixed.set_global_policy(previous_policy)
        backend.set_floatx(previous_floatx)


def _layer_base(module: ModuleType) -> type | None:
    base = getattr(getattr(module, "layers", None), "Layer", None)
    return base if isinstance(base, type) else None
