"""Declarations: mark an activation or a layer for fuzzing, and remember where it was marked.

``@gradcheck.activation`` and ``@gradcheck.layer`` validate their options at decoration time,
return the target unchanged and add a :class:`Registered` entry to a process-wide registry.
An entry belongs to the module in which the decorator was *applied* (the caller's
``__name__``), so ``gradcheck.activation(domain=(-5, 5))(other.fn)`` written at module level
registers ``other.fn`` under the applying module. ``pytest --gradcheck`` asks the registry for
the targets of each module it imports (:func:`registered_in`).

Nothing here imports TensorFlow or Keras at import time; Keras is looked up only when a layer
is declared (from ``sys.modules``: a Layer subclass implies Keras is already imported) or built.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from . import _kerases as kerases
from . import _options
from ._intent import KERAS_CALL_ARGUMENTS, check_keras_call_arguments, xfail_option
from ._options import DTYPES, POLICIES, CheckOptions
from ._options import describe as _describe

__all__ = ["DTYPES", "Declaration", "Registered", "activation", "layer", "registry",
           "registered_in"]

_KINDS = ("activation", "layer")


class _DefaultDomain(tuple):
    """(-10, 10), as a type of its own: how a declaration remembers declaring no domain."""


DEFAULT_DOMAIN = _DefaultDomain((-10.0, 10.0))  # Hypothesis's; a sweep covers the whole dtype


@dataclass(frozen=True)
class Declaration:
    """What to fuzz a target with. Built by :func:`activation` and :func:`layer`.

    Values are validated and normalized on construction (tuples of floats, dtype names as
    strings) by the validators of :mod:`gradcheck._options`; an impossible value raises
    ``TypeError`` or ``ValueError`` saying what was given and what is valid. The options
    :func:`gradcheck.check` takes are validated once, as the :class:`CheckOptions` the
    declaration holds (``options``), and read back from it.

    Attributes:
        kind: ``"activation"`` or ``"layer"``.
        domain: ``(low, high)``, finite, ``low < high``: the range inputs are drawn from.
        dtypes: names from :data:`DTYPES` to check the target in.
        elementwise: output ``i`` depends on input ``i`` only.
        batch_independent: rows of the batch (axis 0) do not influence each other.
        input_shape: shape of ``x``; ``None`` entries are drawn, ints are fixed.
        args: extra tensor parameters after ``x``, in call order: ``name -> (low, high)`` for a
            scalar, ``name -> (shape, low, high)`` for a tensor.
        kinks: points inside ``domain`` where the target is not differentiable.
        max_examples: Hypothesis examples per dtype (``None``: the session's setting).
        rtol: relative tolerance of the gradient comparison (``None``: per-dtype default).
        atol: absolute tolerance (``None``: per-dtype default).
        init: keyword arguments for a Layer class (layers only).
        order: 2 also checks the gradient of the gradient (``check(order=2)``).
        modes: execution modes that must agree with eager, from :data:`MODES` (``None``: the
            default of :func:`gradcheck.check`; ``()``: off).
        policies: Keras mixed-precision policies to check a layer under, from
            :data:`POLICIES` (layers only); checked in one dtype item, not in each.
        timeout: seconds the target may fuzz in one dtype before it is stopped and fails
            (``None``: the session's setting; ``0``: no limit).
        gradient: an intended surrogate gradient ``(x, dy, *args) -> expected VJP`` for
            ``x`` (a tuple: also for each arg), compared with the analytic gradient instead
            of finite differences (:mod:`gradcheck._declared_gradient`).
        xfail: a known failure: a reason (every dtype) or ``{dtype: reason}``; such items
            are reported xfailed, or xpassed once fixed (:mod:`gradcheck._xfail`).
        sweep: False skips the first phase of an elementwise target: ``gradcheck.sweep`` over
            the declared domain, or the dtype's whole range when none is declared.
        options: the :class:`CheckOptions` every check of the target gets (fuzzing, the plot,
            the sweep), made from the fields above; its ``domain`` is None where none is
            declared (the default domain is only where Hypothesis draws, and finite-difference
            steps may leave it). Not an argument.
    """

    kind: str
    domain: tuple[float, float] = DEFAULT_DOMAIN
    dtypes: tuple[str, ...] = DTYPES
    elementwise: bool = True
    batch_independent: bool = True
    input_shape: tuple | None = None
    args: Mapping[str, tuple] = field(default_factory=dict, hash=False)
    kinks: tuple[float, ...] = ()
    max_examples: int | None = None
    rtol: float | None = None
    atol: float | None = None
    init: Mapping[str, Any] = field(default_factory=dict, hash=False)
    order: int = 1
    modes: tuple[str, ...] | None = None
    policies: tuple[str, ...] = ()
    timeout: float | None = None
    gradient: Callable | None = field(default=None, compare=False)
    xfail: str | Mapping[str, str] | None = field(default=None, hash=False)
    sweep: bool = True
    options: CheckOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        declared = not isinstance(self.domain, _DefaultDomain)
        for name in ("elementwise", "batch_independent"):
            # A declaration promises its structure: True or False, nothing left to infer.
            _options.flag(name, getattr(self, name))
        # Where inputs are drawn from: a pair, where check()'s domain may also be None.
        domain = _options.interval(self.domain, optional=False) if declared else None
        options = CheckOptions(**{name: getattr(self, name) for name in _options.CHECK_DEFAULTS
                                  if name != "domain"}, domain=domain)
        if options.policies and self.kind != "layer":
            raise TypeError("policies is for @gradcheck.layer (a mixed-precision policy "
                            "changes how a layer casts its inputs and variables); check an "
                            "activation in float16/bfloat16 with dtypes=(...) instead")
        normalized = {
            **{name: getattr(options, name) for name in _options.CHECK_DEFAULTS},
            "domain": domain if declared else self.domain,
            "dtypes": _options.dtypes(self.dtypes),
            "input_shape": _options.input_shape(self.input_shape),
            "args": _options.args(self.args),
            "max_examples": _options.max_examples(self.max_examples),
            "init": _layer_init(self.kind, self.init),
            "timeout": _options.tolerance("timeout", self.timeout),  # seconds
            "xfail": xfail_option(self.xfail, DTYPES),
            "sweep": _options.flag("sweep", self.sweep),
            "options": options,
        }
        normalized["kinks"] = _options.kinks(self.kinks, normalized["domain"])
        for name, value in normalized.items():
            object.__setattr__(self, name, value)

    domain_declared = property(lambda self: not isinstance(self.domain, _DefaultDomain))


#: Option names accepted by the decorators (every Declaration argument but ``kind``).
OPTIONS = tuple(f.name for f in fields(Declaration) if f.init and f.name != "kind")


@dataclass
class Registered:
    """A declared target and where it was declared.

    Attributes:
        target: the decorated function, Layer subclass, or zero-argument layer factory.
        declaration: its :class:`Declaration`.
        module: ``__name__`` of the module where the decorator was applied.
        name: the target's ``__qualname__`` (or ``__name__``).
        path: file of the applying module, if it has one.
        lineno: 1-based line of the target's definition when it is defined in ``path``,
            otherwise the line where the decorator was applied; ``None`` if unknown.
    """

    target: Any
    declaration: Declaration
    module: str
    name: str
    path: str | None = None
    lineno: int | None = None
    # The applying module's globals: tells a re-import (new dict) from a second declaration
    # in the same module (same dict). Not part of equality or repr.
    _namespace: dict | None = field(default=None, repr=False, compare=False)

    @property
    def qualified(self) -> str:
        """``"module:name"``, e.g. ``"acts:custom_elu"``."""
        return f"{self.module}:{self.name}"

    def build(self, dtype: str) -> Any:
        """Return a callable ready for :func:`gradcheck.check` in ``dtype``.

        A function is returned as is; a Layer subclass is instantiated as
        ``cls(**init, dtype=dtype)``; a factory is called with Keras' floatx and dtype policy
        set to ``dtype`` (restored afterwards). Each call builds a fresh layer.

        Raises:
            ValueError: ``dtype`` is not one of :data:`DTYPES`.
            TypeError: a layer factory returned something that is not a Keras Layer.
        """
        if dtype not in DTYPES + POLICIES:  # a mixed-precision policy name builds under it
            raise ValueError(f"{self.qualified}: cannot build for dtype {dtype!r}; "
                             f"expected one of {DTYPES} or a policy from {POLICIES}")
        if self.declaration.kind == "activation":
            return self.target
        if isinstance(self.target, type):
            return self.target(**self.declaration.init, dtype=dtype)
        # A factory's Keras is known once it has built: set the dtype in every Keras imported
        # (importing Keras 3 where none is), and again in the layer's own if the factory was
        # what imported it.
        scoped = kerases.imported()
        if not scoped:
            import keras

            scoped = [keras]
        with kerases.dtype_scope(dtype, scoped):
            built = self.target()
        owner = kerases.keras_of(built)
        if owner is not None and owner not in scoped:
            with kerases.dtype_scope(dtype, [owner]):
                built = self.target()
        if owner is None or isinstance(built, type):
            raise TypeError(f"{self.qualified}: the layer factory returned "
                            f"{type(built).__name__}, expected a keras.layers.Layer instance "
                            "(Keras 3 or tf-keras); a factory passed to @gradcheck.layer must "
                            "build and return a Layer")
        return built


# (module, name) -> Registered, in registration order.
_REGISTRY: dict[tuple[str, str], Registered] = {}


def activation(fn: Callable | None = None, /, **options: Any) -> Any:
    """Declare an activation function for ``pytest --gradcheck`` and :func:`gradcheck.fuzz`.

    Use bare (``@gradcheck.activation``) or with options
    (``@gradcheck.activation(domain=(-20, 20), dtypes=("float32", "float64"))``); the options
    are the fields of :class:`Declaration`. ``elementwise`` defaults to True.

    Returns:
        ``fn`` unchanged (or, with options only, a decorator that returns its argument
        unchanged).

    Raises:
        TypeError: ``fn`` is not callable, an option is unknown or of the wrong type.
        ValueError: an option has an impossible value (e.g. ``domain=(1, 0)``).
    """
    if fn is None:
        return _decorator("activation", options)
    return _declare(fn, "activation", options, _caller())


def layer(cls_or_factory: Any = None, /, **options: Any) -> Any:
    """Declare a Keras layer for ``pytest --gradcheck``: a Layer subclass or a zero-arg factory.

    Options are those of :func:`activation`; ``elementwise`` defaults to False, and
    ``init={...}`` gives the keyword arguments a Layer class is built with (``dtype`` is set
    per checked dtype). A factory is called with Keras' floatx set to the checked dtype.

    Returns:
        The class or factory unchanged (or a decorator, when called with options only).

    Raises:
        TypeError: the target is neither a Layer subclass nor a zero-argument callable, or an
            option is unknown or of the wrong type.
        ValueError: an option has an impossible value.
    """
    options.setdefault("elementwise", False)
    if cls_or_factory is None:
        return _decorator("layer", options)
    return _declare(cls_or_factory, "layer", options, _caller())


def registry() -> list[Registered]:
    """Every registered target, in registration order."""
    return list(_REGISTRY.values())


def registered_in(module_name: str) -> list[Registered]:
    """The targets registered by decorators applied in module ``module_name``, in order."""
    return [entry for entry in _REGISTRY.values() if entry.module == module_name]


# -- registration ------------------------------------------------------------------------------

def _decorator(kind: str, options: dict[str, Any]) -> Callable[[Any], Any]:
    def decorate(target: Any) -> Any:
        return _declare(target, kind, options, _caller())

    decorate.__qualname__ = decorate.__name__ = f"gradcheck.{kind}"
    return decorate


def _caller() -> Any:
    """The frame of whoever called the function that calls this one: where a decorator runs."""
    return sys._getframe(2)


def _declare(target: Any, kind: str, options: dict[str, Any], frame: Any) -> Any:
    name = _name_of(target)
    where = f"@gradcheck.{kind} on {name}"
    _check_target(target, kind, where)
    unknown = [key for key in options if key not in OPTIONS]
    if unknown:
        raise TypeError(f"{where}: unknown option {unknown[0]!r}{_did_you_mean(unknown[0])}; "
                        f"valid options are {', '.join(OPTIONS)}")
    try:
        declaration = Declaration(kind=kind, **options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    _check_signature(target, kind, declaration, where)

    namespace = frame.f_globals
    module = namespace.get("__name__", "__main__")
    path = namespace.get("__file__")
    _add(Registered(target=target, declaration=declaration, module=module, name=name,
                    path=path, lineno=_lineno(target, path, frame.f_lineno),
                    _namespace=namespace))
    return target


def _add(entry: Registered) -> None:
    """Register ``entry``; a new execution of its module replaces that module's old entries."""
    stale = [key for key, old in _REGISTRY.items()
             if old.module == entry.module and old._namespace is not entry._namespace]
    for key in stale:
        del _REGISTRY[key]
    key = (entry.module, entry.name)
    old = _REGISTRY.get(key)
    if old is not None and old.target is not entry.target and old.lineno != entry.lineno:
        raise ValueError(
            f"module {entry.module!r} declares two different targets named {entry.name!r} "
            f"(lines {old.lineno} and {entry.lineno}); each needs its own name to get its own "
            "test id: wrap one in a def with a distinct name")
    if old is not None and old.target is not entry.target \
            and old._namespace is entry._namespace and "<" in entry.name:
        # A factory or a loop declaring one target per call (make.<locals>.act, a <lambda>),
        # all at one line with one __qualname__: each keeps its item (act, act-2, ...; -k
        # reads "-", not "#") rather than the last replacing the others unseen. (A module run
        # again, importlib.reload in the same namespace, replaces its module-level targets;
        # its factory's targets are numbered on.)
        count = 2
        while (entry.module, f"{entry.name}-{count}") in _REGISTRY:
            count += 1
        entry = replace(entry, name=f"{entry.name}-{count}")
        key = (entry.module, entry.name)
    _REGISTRY[key] = entry


def _name_of(target: Any) -> str:
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if not isinstance(name, str):
        wrapped = inspect.unwrap(target) if callable(target) else target
        name = getattr(wrapped, "__qualname__", None) or type(target).__name__
    return name


def _lineno(target: Any, path: str | None, applied_at: int) -> int | None:
    """The definition line when the target is defined in ``path``, else the applying line."""
    try:
        obj = inspect.unwrap(target)
        if inspect.isclass(obj):
            defined_in = inspect.getsourcefile(obj)
            line = inspect.getsourcelines(obj)[1]
        else:
            code = getattr(obj, "__code__", None)
            defined_in, line = code.co_filename, code.co_firstlineno
    except Exception:  # builtins, C functions, objects without source: use the applying line
        return applied_at
    if path is not None and defined_in is not None and _same_file(defined_in, path):
        return line
    return applied_at


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _did_you_mean(option: str) -> str:
    close = difflib.get_close_matches(option, OPTIONS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- target checks -----------------------------------------------------------------------------

def _check_target(target: Any, kind: str, where: str) -> None:
    if kind == "activation":
        if isinstance(target, type) or not callable(target):
            raise TypeError(
                f"{where}: expected a function of tensors, got {_describe(target)}; pass "
                "options by keyword, e.g. @gradcheck.activation(domain=(-5, 5)), and use "
                "@gradcheck.layer for a Keras Layer class")
        return
    if isinstance(target, type):
        if not kerases.is_layer_class(target):
            raise TypeError(f"{where}: expected a keras.layers.Layer subclass or a zero-argument "
                            f"factory returning a Layer, got the class {target.__qualname__}, "
                            "which does not subclass keras.layers.Layer")
        return
    if kerases.is_layer_class(type(target)):  # one instance: every dtype needs its own layer
        raise TypeError(f"{where}: expected a keras.layers.Layer subclass or a zero-argument "
                        f"factory returning a Layer, got a Layer instance; decorate its class "
                        f"(with init={{...}}) or a factory, or check this instance with "
                        f"gradcheck.fuzz(layer) or gradcheck.check(layer, x)")
    if not callable(target) or _required_parameters(target):
        required = _required_parameters(target) if callable(target) else []
        found = (f"a callable with required parameters {', '.join(required)}" if required
                 else _describe(target))
        raise TypeError(f"{where}: expected a keras.layers.Layer subclass or a zero-argument "
                        f"factory returning a Layer, got {found}; give a factory's parameters "
                        "defaults, or decorate the Layer class with init={...}")




def _signature(target: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _required_parameters(target: Any) -> list[str]:
    signature = _signature(target)
    if signature is None:
        return []
    return [p.name for p in signature.parameters.values()
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _positional(signature: inspect.Signature) -> list[inspect.Parameter] | None:
    """Positional parameters, or None if ``*args`` makes the signature inconclusive."""
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _check_signature(target: Any, kind: str, declaration: Declaration, where: str) -> None:
    """Check that ``args`` match the call signature and a Layer class's ``init``."""
    if kind == "layer" and not isinstance(target, type):
        return  # a factory: the layer's signature is known only once built
    call = target.call if kind == "layer" else target
    signature = _signature(call)
    params = _positional(signature) if signature is not None else None
    if params is not None:
        if kind == "layer":
            # self; and Keras' own call arguments: Keras passes training= and mask= itself
            # (gradcheck checks both training=False and training=True), so they are no args.
            params = [p for p in params[1:] if p.name not in KERAS_CALL_ARGUMENTS]
            check_keras_call_arguments(declaration.args, where)
        if not params:
            raise TypeError(f"{where}: the target takes no positional input; expected "
                            "a first parameter for the tensor x")
        declared = list(declaration.args)
        following = [p.name for p in params[1:]]
        if following[: len(declared)] != declared:
            raise TypeError(
                f"{where}: args {tuple(declared)} must name the parameters after "
                f"{params[0].name!r} in call order, which are {tuple(following)}")
        missing = [p.name for p in params[1 + len(declared):] if p.default is p.empty]
        if missing:
            raise TypeError(
                f"{where}: parameters {tuple(missing)} have no default and no args entry; "
                f"declare them, e.g. args={{{missing[0]!r}: (-1.0, 1.0)}}")
    if kind == "layer":
        required = [name for name in _required_parameters(target)
                    if name not in declaration.init]
        if required:
            raise TypeError(f"{where}: {target.__name__}.__init__ requires {tuple(required)}; "
                            f"pass them as init={{{required[0]!r}: ...}}")


# -- which kind of target an option applies to (the values: gradcheck._options) ----------------

def _layer_init(kind: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and value and kind != "layer":
        raise TypeError("init is for @gradcheck.layer (keyword arguments of a Layer class); "
                        "an activation takes no init")
    return _options.init(value)
