"""Named registries that chapters add to: architectures, trainers, recipe sets.

A method that a later chapter teaches registers itself in the module that teaches it (for
example ``@register_trainer("trades", ...)`` in the robust-training module), so adding a method
never means editing the cache. A :class:`Registry` that is asked for a name it does not hold
imports the package's modules once (that is where registrations happen) and looks again, so a
recipe naming ``"trades"`` works even when nothing imported that module yet.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, Iterator

from ._checks import check_name

__all__ = ["Registry"]

# Modules that register nothing and must not be imported as a side effect of a look-up.
_NOT_DISCOVERED = {"runner", "__main__"}


class Registry(Mapping):
    """A read-only mapping ``name -> object`` with :meth:`register` and lazy discovery.

    Parameters
    ----------
    kind : str
        What the registry holds (``"architecture"``, ``"trainer"``, ...), used in messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._discovered = False

    # -- registration ----------------------------------------------------------------------
    def register(self, name: str, obj: Any, *, replace: bool = False) -> Any:
        """Add ``obj`` under ``name`` (a file-name-safe string); returns ``obj``.

        Registering a name twice is an error unless ``replace`` (or the object is the same),
        so two chapters can never silently fight over one name.
        """
        check_name(name, f"{self.kind} name")
        old = self._items.get(name)
        if old is not None and not replace and not _same_definition(old, obj):
            raise ValueError(f"a {self.kind} named {name!r} is already registered ({_qualname(old)}); "
                             "choose another name, or pass replace=True to replace it on purpose.")
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> Any:
        """Remove ``name`` and return what it held (for tests and throw-away experiments)."""
        if name not in self._items:
            raise KeyError(f"no {self.kind} named {name!r} is registered.")
        return self._items.pop(name)

    # -- look-up ---------------------------------------------------------------------------
    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(__package__)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name in _NOT_DISCOVERED:
                continue
            try:
                importlib.import_module(f"{__package__}.{info.name}")
            except ImportError:  # an optional dependency is missing: that module registers nothing
                continue

    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}.")
        return self._items[name]

    def __contains__(self, name) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._items:
            self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._discover()
        return len(self._items)

    def names(self) -> list[str]:
        """Every registered name, sorted (after discovery)."""
        return list(self)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def _fingerprint(obj):
    """What identifies a definition across a re-import: its name, its code and its settings."""
    fn = getattr(obj, "fn", obj)
    code = getattr(fn, "__code__", None)
    body = (code.co_code, code.co_consts) if code is not None else None
    settings = None
    if hasattr(obj, "fn") and hasattr(obj, "__dict__"):  # a spec such as a Trainer: its other fields count
        settings = {k: (_qualname(v) if callable(v) else v) for k, v in vars(obj).items() if k != "fn"}
    return _qualname(obj), body, repr(settings)


def _same_definition(old, new) -> bool:
    """The same object, or the same definition imported again (a module reload)."""
    if old is new:
        return True
    if "<lambda>" in _qualname(new) or "<locals>" in _qualname(new):
        return False  # anonymous or local definitions are never "the same one again"
    return _fingerprint(old) == _fingerprint(new)


def _qualname(obj) -> str:
    obj = getattr(obj, "fn", obj)  # a registered spec (e.g. a trainer) is named by its function
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
