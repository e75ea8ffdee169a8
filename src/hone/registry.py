"""One generic registry: name -> "module:Object", imported on first use.

Plugins (passes, runtimes) are discovered by walking their package: a new runtime is one new
file in `hone/runtimes/`, nothing else to edit. Discovery imports the hone module only; every
plugin module keeps its backend import (onnxruntime, openvino, ...) inside functions, which
tests/test_lean_import.py enforces.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Generic, Iterator, TypeVar

from hone.errors import HoneError, InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes that subclass `base` and set a non-empty `name`, found under `packages`."""

    def __init__(self, kind: str, base_path: str, packages: tuple[str, ...]):
        self.kind = kind
        self._base_path = base_path  # "module:Class", resolved lazily to avoid import cycles
        self._packages = packages
        self._paths: dict[str, str] | None = None
        self._loaded: dict[str, type[T]] = {}

    def _base(self) -> type:
        module, _, name = self._base_path.partition(":")
        return getattr(importlib.import_module(module), name)

    def _discover(self) -> dict[str, str]:
        if self._paths is not None:
            return self._paths
        base = self._base()
        paths: dict[str, str] = {}
        for package_name in self._packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
                module = importlib.import_module(info.name)
                for obj_name, obj in vars(module).items():
                    if not (inspect.isclass(obj) and obj.__module__ == module.__name__):
                        continue
                    if not issubclass(obj, base) or not getattr(obj, "name", ""):
                        continue
                    if obj.name in paths:
                        raise HoneError(f"two {self.kind}s named {obj.name!r}: {paths[obj.name]} and {info.name}:{obj_name}")
                    paths[obj.name] = f"{info.name}:{obj_name}"
                    self._loaded[obj.name] = obj
        self._paths = dict(sorted(paths.items()))
        return self._paths

    def register(self, cls: type[T]) -> type[T]:
        """Add a plugin defined outside hone's packages (a user's or a test's). Its module must
        be importable in worker processes (they get the parent's sys.path)."""
        name = getattr(cls, "name", "")
        if not name:
            raise HoneError(f"{cls.__qualname__} has no `name`")
        paths = self._discover()
        path = f"{cls.__module__}:{cls.__qualname__}"
        if paths.get(name, path) != path:
            raise HoneError(f"a {self.kind} named {name!r} exists already: {paths[name]}")
        paths[name] = path
        self._loaded[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove a plugin added with `register` (tests that add one for a while)."""
        self._discover().pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return list(self._discover())

    def path(self, name: str) -> str:
        return self._discover()[name]

    def get(self, name: str) -> type[T]:
        paths = self._discover()
        if name not in paths:
            raise InputError(f"unknown {self.kind} {name!r}", hint=f"known: {', '.join(paths)}")
        if name not in self._loaded:
            module, _, obj = paths[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), obj)
        return self._loaded[name]

    def __iter__(self) -> Iterator[type[T]]:
        return (self.get(name) for name in self.names())


PASSES: Registry = Registry("pass", "hone.passes.base:Pass", ("hone.passes",))
RUNTIMES: Registry = Registry("runtime", "hone.runtimes.base:Runtime", ("hone.runtimes",))
