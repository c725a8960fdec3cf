"""Disentanglement metrics, registered by name, after google-research/disentanglement_lib.

    values = metrics.compute("mig", data, represent, seed=0)            # study default sizes
    values = metrics.compute("mig", data, represent, size="quick")      # smaller sample sizes
    values = metrics.compute("mig", data, represent, num_train=500)     # any size overridden
    table = metrics.evaluate(data, represent, ["mig", "sap"])          # one encoding for all
    table = metrics.score(codes, factors, ["mig", "dci"])              # arrays you already have

`data` provides `factor_sizes`, `sample_factors(n, random_state)` and
`observations_from_factors(factors, random_state)`; `represent(observations) -> array (n, D)`.
Each module in this package registers its metrics with `@register`. Parameters are named as in
the reference's gin files, result keys as the reference's keys (docs/metrics.md).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass

import numpy as np

from .utils import Codes

SIZES = ("default", "quick")
# The direction of a result key: which way is better. None: a count or a by-product, not ranked.
HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class Metric:
    name: str
    fn: object          # fn(codes, seed, **params) -> dict of floats
    default: dict       # disentanglement_lib's study defaults
    quick: dict         # the smaller sample sizes that replace some of them for "quick"
    directions: dict    # result key -> HIGHER, LOWER or None (not ranked)
    interventional: bool = False   # draws its own factor rows (holds one fixed): needs a sampler

    def params(self, size: str = "default", **overrides) -> dict:
        """The parameters used for `size` with `overrides`; bad names or values raise ValueError."""
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; valid sizes: {', '.join(SIZES)}")
        unknown = set(overrides) - set(self.default)
        if unknown:
            raise ValueError(f"metric {self.name!r} has no parameter {', '.join(sorted(unknown))}; "
                             f"valid parameters: {', '.join(sorted(self.default))}")
        params = {**self.default, **(self.quick if size == "quick" else {}), **overrides}
        for key, value in params.items():
            if (key.startswith("num_") or key == "batch_size") and not (
                    isinstance(value, int) and value >= 2):
                raise ValueError(f"metric {self.name!r}: {key} must be an integer of at least 2, "
                                 f"got {value!r}")
        return params


_METRICS: dict[str, Metric] = {}


def register(name: str, default: dict, quick: dict, directions: dict,
             interventional: bool = False):
    """Register `fn(codes, seed, **params) -> dict` under `name` with its default parameters and
    the direction of each result key (HIGHER or LOWER is better, None: not ranked).
    `interventional`: the metric draws factor rows of its own design (it holds a factor fixed),
    so it needs a data object to sample from and cannot score a given sample of codes."""
    def wrap(fn):
        if name in _METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        missing = set(inspect.signature(fn).parameters) - {"codes", "seed"} - set(default)
        if missing or set(quick) - set(default):
            raise ValueError(f"metric {name!r}: defaults do not match the function's parameters")
        if set(directions.values()) - {HIGHER, LOWER, None}:
            raise ValueError(f"metric {name!r}: a direction is {HIGHER!r}, {LOWER!r} or None")
        _METRICS[name] = Metric(name, fn, dict(default), dict(quick), dict(directions),
                                interventional)
        return fn
    return wrap


def available() -> list[str]:
    """Names of all registered metrics."""
    _import_all()
    return sorted(_METRICS)


def get(name: str) -> Metric:
    _import_all()
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


def directions() -> dict[str, str | None]:
    """"metric/key" -> HIGHER, LOWER or None for every registered metric's result keys and for
    evaluation's reconstruction keys (declared in bench/evaluate.py beside their computation)."""
    from disentbench.bench.evaluate import RECONSTRUCTION, RECONSTRUCTION_DIRECTIONS  # imports us
    _import_all()
    found = {f"{m.name}/{key}": d for m in _METRICS.values() for key, d in m.directions.items()}
    return found | {f"{RECONSTRUCTION}/{key}": d for key, d in RECONSTRUCTION_DIRECTIONS.items()}


def compute(name: str, data, represent, seed=0, size: str = "default",
            codes: Codes | None = None, **params) -> dict:
    """Values of metric `name` (the reference's keys) for `represent` on `data`.

    `seed` is an int (the metric draws from `RandomState(seed)`, as the reference does) or a
    seeded `numpy.random.RandomState`/`Generator`, from which one int seed is drawn.

    `codes` lets several metrics share one table of encoded observations (see `utils.Codes`).
    """
    metric = get(name)
    params = metric.params(size, **params)
    seed = _int_seed(seed)
    if codes is None:
        codes = Codes(data, represent)
    elif codes.data is not data or codes.represent is not represent:
        raise ValueError("codes were built for another dataset or representation")
    return metric.fn(codes, seed, **params)


def _int_seed(seed) -> int:
    if isinstance(seed, np.random.RandomState):
        return int(seed.randint(2**31 - 1))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31 - 1))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2**32:
        return int(seed)
    raise ValueError(f"seed must be an int in [0, 2**32) or a numpy RandomState/Generator, "
                     f"got {seed!r}")


# Modules that register no metric: boosting needs numba (the [fast] extra), imported by dci-fast.
_HELPERS = ("boosting", "scoring", "utils")


def _import_all():
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _HELPERS:
            importlib.import_module(f"{__name__}.{module.name}")


from .scoring import default_metrics, evaluate, score  # noqa: E402  (uses the registry above)

__all__ = ["Codes", "HIGHER", "LOWER", "Metric", "SIZES", "available", "compute",
           "default_metrics", "directions", "evaluate", "get", "register", "score"]
