"""Method registry: one file per method in this package, each registered with `@register`.

    method = methods.create("beta-vae", beta=4.0)
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Method

_REGISTRY: dict[str, type[Method]] = {}
_IN_ALL: set[str] = set()

# The order of `--methods all` and of report tables: the paper's comparison, then the rest.
TABLE_ORDER = ["vae", "beta-vae", "factor-vae", "beta-tcvae", "dip-vae-i", "dip-vae-ii",
               "control-vae", "dynamic-vae", "sigma-vae", "l-vae"]


def register(name: str, in_all: bool = True):
    """Class decorator: register a Method subclass under `name`.

    `in_all=False` keeps a variant out of `--methods all` (it is still run by name).
    """
    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        if in_all:
            _IN_ALL.add(name)
        return cls
    return wrap


def _import_all():
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


def available() -> list[str]:
    """Every registered method name."""
    _import_all()
    return sorted(_REGISTRY)


def all_methods() -> list[str]:
    """The names `--methods all` expands to, in table order."""
    _import_all()
    rank = {name: i for i, name in enumerate(TABLE_ORDER)}
    return sorted(_IN_ALL, key=lambda n: (rank.get(n, len(rank)), n))


def get(name: str) -> type[Method]:
    _import_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, **params) -> Method:
    return get(name)(**params)


def parse_value(method: str, key: str, text: str):
    """Parse `text` into the type of `method`'s parameter `key` (raises ValueError)."""
    cls = get(method)
    if key not in cls.params:
        raise cls.unknown_parameters({key})
    default = cls.params[key]
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{method}.{key} expects true/false, got {text!r}")
    try:
        value = type(default)(text) if default is not None else text
    except ValueError:
        raise ValueError(f"{method}.{key} expects a {type(default).__name__}, got {text!r}") from None
    cls.check_range(key, value)
    return cls(**{key: value}).hparams[key]     # the method's own checks (e.g. L-VAE's sigma_lr)


def non_default(method: str, params: dict) -> dict:
    """`params` without those equal to `method`'s defaults (a run is named by the rest)."""
    defaults = get(method).params
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


__all__ = ["Method", "all_methods", "available", "create", "get", "non_default", "parse_value", "register"]
