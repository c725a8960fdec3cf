"""Score a representation you already have: `evaluate` (an encoder and a data object) and
`score` (arrays of codes and factors). Both return {metric: {key: value}} in the reference's keys.

    metrics.evaluate(data, represent, metrics=["mig", "sap"], size="quick", seed=0)
    metrics.score(codes, factors, metrics=["mig", "dci"])

`evaluate` encodes each distinct observation once for all the metrics it runs (one `Codes`
table). `score` runs the metrics that need only a sample of (factors, codes) rows; the
interventional ones (`beta-vae`, `factor-vae`) hold a factor fixed while drawing the others, so
they need `evaluate` and a data object that can draw factors.
"""
from __future__ import annotations

import numpy as np

from . import _int_seed, available, get
from .utils import Codes, Sample, as_codes, check_factors

# rows of a given sample kept for testing by metrics that fit on a training set: the reference's
# study sizes (10,000 training and 5,000 test points) split it 2:1
TEST_FRACTION = 1 / 3
MIN_ROWS = 10


def default_metrics() -> list[str]:
    """Every metric, with one of the two DCIs: `dci-fast` where numba is installed (the same
    values in seconds), else the reference `dci`."""
    try:
        import numba  # noqa: F401
        drop = "dci"
    except ImportError:
        drop = "dci-fast"
    return [name for name in available() if name != drop]


def evaluate(data, represent, metrics="default", size: str = "default", seed=0) -> dict:
    """Values of `metrics` ("default": see `default_metrics`; "all"; or a list of names) for the
    representation `represent(observations) -> (n, D)` codes (numpy array or torch tensor, on any
    device, with or without grad) of `data`'s observations. Every metric draws from
    RandomState(seed) as the reference does; `size` is "default" (the study's sizes) or "quick".

    `data` needs `factor_sizes`, `sample_factors(n, random_state) -> (n, F)` integer indices and
    `observations_from_factors(factors, random_state)` (disentbench/bench/data/base.py)."""
    missing = [a for a in ("factor_sizes", "sample_factors", "observations_from_factors")
               if not hasattr(data, a)]
    if missing:
        raise TypeError(f"data has no {', '.join(missing)}; it needs factor_sizes, "
                        f"sample_factors(n, random_state) and observations_from_factors(factors, "
                        f"random_state) (see disentbench.bench.data.GroundTruthData)")
    if not callable(represent):
        raise TypeError(f"represent must be a function of observations returning codes (n, D), "
                        f"got {type(represent).__name__}")
    names = _names(metrics)
    seed = _int_seed(seed)
    probe = data.sample_factors(2, np.random.RandomState(seed))
    check_factors(probe, tuple(data.factor_sizes), "data.sample_factors")
    codes = Codes(data, represent)
    return {name: get(name).fn(codes, seed, **get(name).params(size)) for name in names}


def score(codes, factors, metrics="default", seed=0) -> dict:
    """Values of `metrics` for a sample of codes (n, D) (numpy array or torch tensor) and the
    ground-truth factors (n, F) of the same n observations, as integer indices 0..size-1.

    Only metrics that need a sample of (factors, codes) rows: mig, sap, sap-continuous,
    modularity-explicitness, dci, dci-fast, irs, unsupervised ("default": those of
    `default_metrics`; "all": every one of them). Metrics with a training and a test set fit on
    2/3 of the rows and test on the other 1/3 (the reference's 10,000 : 5,000); the rows are
    shuffled once with RandomState(seed), which also seeds the metrics."""
    factors = check_factors(factors, source="factors")
    codes = as_codes(codes, len(factors), "codes must be")
    if len(factors) < MIN_ROWS:
        raise ValueError(f"score needs at least {MIN_ROWS} rows of codes and factors, got "
                         f"{len(factors)}; the reference's sizes are 10,000 training and 5,000 "
                         f"test rows")
    single = [j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) < 2]
    if single:
        raise ValueError(f"factors {single} take one value in the whole sample, so no metric "
                         f"can relate a code to them; drop those columns (factors[:, keep])")
    every = isinstance(metrics, str) and metrics in ("default", "all")
    requested = [n for n in _names(metrics) if not (every and get(n).interventional)]
    interventional = [n for n in requested if get(n).interventional]
    if interventional:
        raise ValueError(f"{', '.join(interventional)} cannot score a given sample: they hold one "
                         f"factor fixed while drawing the others, so they need a data object "
                         f"that draws factors; use metrics.evaluate(data, represent, ...)")
    seed = _int_seed(seed)
    return {name: _score_one(name, codes, factors, seed) for name in requested}


def _score_one(name, codes, factors, seed) -> dict:
    metric = get(name)
    params = metric.params()
    if "num_test" in params:
        num_test = max(1, int(len(codes) * TEST_FRACTION))
        params.update(num_train=len(codes) - num_test, num_test=num_test)
    else:
        params.update(num_train=len(codes))
    return metric.fn(Sample(codes, factors, seed), seed, **params)


def _names(metrics) -> list[str]:
    if isinstance(metrics, str) and metrics in ("default", "all"):
        return default_metrics() if metrics == "default" else available()
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [n for n in names if n not in available()]
    if unknown or not names:
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid metrics: {', '.join(available())}, or 'default', 'all'")
    return names
