"""The predictor registry: predictors register themselves; modules are discovered.

A new predictor is one module anywhere under ``napbench/zoo/`` (a sub-package too) whose
class is decorated with :func:`register_predictor`. The first read of the registry imports
every public module of the package (names not starting with ``_``), as
``napbench/datasets/families/`` does, so nothing here names a subclass. Lazy registrations
(e.g. one ``zc:<proxy>`` per proxy) use :func:`register_plugin`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napbench.errors import InvalidArgumentError, UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    from napbench.zoo._interface import Predictor

__all__ = ["get_predictor", "list_predictors", "predictor_class", "register_plugin", "register_predictor"]

_REGISTRY: dict[str, tuple[type[Predictor], dict[str, Any]]] = {}
_PLUGINS: list[Callable[[], None]] = []
_LOADED = False


def register_predictor(name: str, cls: type[Predictor] | None = None, **fixed: Any) -> Any:
    """Register a predictor class under ``name`` (decorator or direct call).

    ``fixed`` are init arguments bound to the name (e.g. ``register_predictor("zc:snip",
    ZeroCost, proxy="snip")``). Registering a taken name with another class fails.
    """
    from napbench.zoo._interface import Predictor

    def _add(c: type[Predictor]) -> type[Predictor]:
        if not (isinstance(c, type) and issubclass(c, Predictor)):
            raise InvalidArgumentError(f"{c!r} is not a Predictor subclass; expected one to register as {name!r}")
        prev = _REGISTRY.get(name)
        if prev is not None and (prev[0].__qualname__ != c.__qualname__ or prev[1] != fixed):
            raise InvalidArgumentError(f"predictor {name!r} is already registered to {prev[0].__name__}; expected a new name")
        if not c.__dict__.get("name"):
            c.name = name
        _REGISTRY[name] = (c, dict(fixed))
        return c

    return _add if cls is None else _add(cls)


def register_plugin(hook: Callable[[], None]) -> None:
    """Run ``hook`` once before the registry is first read (lazy registrations, e.g. zc:<proxy>)."""
    _PLUGINS.append(hook)
    if _LOADED:
        hook()


def _discover() -> None:
    """Import every public module under ``napbench.zoo`` (each registers what it defines)."""
    import napbench.zoo as pkg

    for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        if any(part.startswith("_") for part in m.name.split(".")[2:]):
            continue
        importlib.import_module(m.name)


_LOAD_LOCK = threading.RLock()
_READY = threading.Event()


def _ensure_loaded() -> None:
    """Discover and register every predictor once; other threads wait until the registry is complete."""
    global _LOADED
    if _READY.is_set():
        return
    with _LOAD_LOCK:
        if _LOADED:  # this thread is already loading (a hook read the registry)
            return
        _LOADED = True
        try:
            _discover()
            for hook in list(_PLUGINS):
                hook()
        except BaseException:
            _LOADED = False
            raise
        _READY.set()


def list_predictors() -> list[str]:
    """Names of every registered predictor, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def predictor_class(name: str) -> type[Predictor]:
    """The class registered under ``name``; unknown names list the valid ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name][0]
    except (KeyError, TypeError):
        raise UnknownNameError("predictor", str(name), list(_REGISTRY)) from None


def predictor_fixed_args(name: str) -> dict[str, Any]:
    """The init arguments bound to ``name`` at registration."""
    _ensure_loaded()
    try:
        return dict(_REGISTRY[name][1])
    except (KeyError, TypeError):
        raise UnknownNameError("predictor", str(name), list(_REGISTRY)) from None


def get_predictor(name: str, **kwargs: Any) -> Predictor:
    """A fresh predictor ``name`` built with ``kwargs`` (plus the name's fixed arguments)."""
    _ensure_loaded()
    try:
        cls, fixed = _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError("predictor", str(name), list(_REGISTRY)) from None
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise InvalidArgumentError(f"predictor {name!r} fixes {clash}; expected other keyword arguments")
    try:
        return cls(**fixed, **kwargs)
    except TypeError as exc:
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self" and p not in fixed]
        raise InvalidArgumentError(f"predictor {name!r}: {exc}; expected keyword arguments among {valid}") from None
