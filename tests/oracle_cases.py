"""The metric oracle (../shared/oracle/reference_values.json): its synthetic datasets and
representations rebuilt from their stored definitions, and its runs keyed for comparison."""
from __future__ import annotations

import functools
import json
import math

import numpy as np

# oracle metric name -> ours
METRIC_NAMES = {"beta_vae": "beta-vae", "factor_vae": "factor-vae", "mig": "mig",
                "sap_discrete": "sap", "sap_continuous": "sap-continuous", "dci": "dci",
                "modularity_explicitness": "modularity-explicitness", "irs": "irs",
                "unsupervised": "unsupervised"}
# oracle result key -> ours, where they differ (see the metrics' docstrings)
RESULT_KEYS = {"num_active_dims": "dlib_num_active_dims"}


@functools.lru_cache(maxsize=None)
def load(path) -> dict:
    with open(path) as f:
        return json.load(f)


def value(stored):
    """A stored result value as a float ('NaN'/'Infinity' strings; complex -> real part)."""
    if isinstance(stored, dict):
        return float(stored["real"])
    return float(stored)


class SyntheticData:
    """The oracle's dataset protocol: observations are the factor vectors as float64."""

    def __init__(self, factor_sizes):
        self.factor_sizes = tuple(factor_sizes)

    def sample_factors(self, n, random_state):
        factors = np.zeros((n, len(self.factor_sizes)), dtype=np.int64)
        for i, k in enumerate(self.factor_sizes):
            factors[:, i] = random_state.randint(k, size=n)
        return factors

    def observations_from_factors(self, factors, random_state):
        return np.asarray(factors, dtype=np.float64)


class FixedRowsData(SyntheticData):
    """`size == "fixed"`: every call of sample_factors returns the next stored rows in order."""

    def __init__(self, factor_sizes, rows):
        super().__init__(factor_sizes)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.position = 0

    def sample_factors(self, n, random_state):
        if self.position + n > len(self.rows):
            raise ValueError("the fixed rows are used up")
        self.position += n
        return self.rows[self.position - n:self.position].copy()


def splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def representation(dataset: dict, definition: dict):
    """The plain function observations (n, F) -> codes of an oracle representation."""
    center = np.array(definition["normalization_center"])
    scale = np.array(definition["normalization_scale"])
    sizes = dataset["factor_sizes"]
    name = definition["name"]

    def represent(x):
        zn = (x - center) / scale
        if name == "perfect":
            return zn
        if name == "rotated":
            return zn @ np.array(definition["R"]).T
        if name == "duplicated":
            return np.concatenate([zn, 0.5 * zn], axis=1)
        if name == "partial":
            return zn[:, definition["kept_factors"]]
        if name == "perm_scale_nuisance":
            z = np.zeros((len(x), definition["dim"]))
            for i, (j, s) in enumerate(zip(definition["perm"], definition["scale"])):
                z[:, i] = s * zn[:, j]
            return z
        if name == "noisy_hash":
            strides = np.array([math.prod(sizes[i + 1:]) for i in range(len(sizes))])
            flat = (x.astype(np.int64) @ strides).astype(np.uint64)
            dims = np.arange(len(sizes), dtype=np.uint64)
            with np.errstate(over="ignore"):
                bits = splitmix64(np.uint64(16) * flat[:, None] + dims)
            u = (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
            return zn + definition["sigma"] * np.sqrt(3) * (2 * u - 1)
        raise ValueError(f"unknown oracle representation {name!r}")
    return represent


def case(oracle: dict, dataset_name: str, representation_name: str, size: str):
    """(data, represent) for one oracle case; `size` "fixed" replays the fixed rows."""
    dataset = oracle["datasets"][dataset_name]
    represent = representation(dataset, dataset["representations"][representation_name])
    if size == "fixed":
        rows = oracle["fixed_inputs"]["rows"][dataset_name]
        return FixedRowsData(dataset["factor_sizes"], rows), represent
    return SyntheticData(dataset["factor_sizes"]), represent


def runs(oracle: dict, env: str = "modern", **where) -> list[dict]:
    """The oracle's runs of environment `env` whose fields equal `where`."""
    return [r for r in oracle["runs"] if r["env_tag"] == env
            and all(r[k] == v for k, v in where.items())]


def spread(oracle: dict, run: dict, key: str, env: str = "modern") -> float:
    """Range over seeds of `key` for the run's case."""
    for s in oracle["seed_spread"]:
        if s["env_tag"] == env and all(s[k] == run[k] for k in
                                       ("dataset", "representation", "metric", "size")):
            return value(s["values"][key]["range"])
    raise KeyError(run["key"])
