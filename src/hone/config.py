"""Config objects: frozen dataclasses that validate themselves and round-trip to dicts.

Every pass and runtime takes one. The store saves `to_dict()` so a recipe can be rebuilt
exactly (`Config.from_dict`), and `_version` lets a later hone read an older run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from hone.errors import InputError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every pass/runtime config. Subclasses add fields and override `validate()`."""

    VERSION: ClassVar[int] = 1
    # Fields added after recipes were stored, left out of `to_dict` at their default: a recipe's
    # key hashes its configs, so the recipes stored before keep their keys (resume, history).
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError when a field is out of range; called on construction."""

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if not (f.name in self.OMIT_AT_DEFAULT and getattr(self, f.name) == f.default)}
        return {"_type": type(self).__qualname__, "_version": self.VERSION, **fields}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        data = dict(data)
        data.pop("_type", None)
        version = data.pop("_version", cls.VERSION)
        if version > cls.VERSION:
            raise InputError(f"{cls.__qualname__} version {version} is newer than this hone ({cls.VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"{cls.__qualname__} has no field(s) {sorted(unknown)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class NoConfig(Config):
    """For passes and runtimes that have nothing to configure."""
