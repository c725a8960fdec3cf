"""Dataset registry. Each module in this package registers its loaders with `@register`.

    data = load("dsprites-procedural", data_dir=None)   # -> GroundTruthData
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import DatasetError, GroundTruthData

_LOADERS: dict = {}


def register(name: str):
    """Register `fn(data_dir=None, **options) -> GroundTruthData` under `name`."""
    def wrap(fn):
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} registered twice")
        _LOADERS[name] = fn
        return fn
    return wrap


def available() -> list[str]:
    _import_all()
    return sorted(_LOADERS)


def loader(name: str):
    """The registered `fn(data_dir=None, **options)` of `name` (a worker process that did not
    register it, e.g. a test's in-memory set, is handed this function)."""
    _import_all()
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]


def load(name: str, data_dir=None, **options) -> GroundTruthData:
    return loader(name)(data_dir=data_dir, **options)


def _import_all():
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


__all__ = ["DatasetError", "GroundTruthData", "available", "load", "loader", "register"]
