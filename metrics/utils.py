"""Machinery shared by the metrics, after disentanglement_lib's `evaluation/metrics/utils.py`.

Sampling follows the reference exactly: one `numpy.random.RandomState(seed)` per metric, factors
drawn in chunks of `batch_size` by `data.sample_factors(n, random_state)`. Codes come from a
`Codes` table that encodes each distinct factor row once, in large chunks, whatever order and
multiplicity the metric asks for them in. This assumes what all our datasets (and the reference's
noise-free ones) satisfy: an observation is a function of its factors and draws no randomness, so
drawing every factor first and encoding afterwards gives the reference's sample.
"""
from __future__ import annotations

import math
import time

import numpy as np
from sklearn.metrics import mutual_info_score


class Codes:
    """Representation of `data`'s observations, looked up by factor row and encoded once per row.

    `represent(observations) -> array (n, D)` is called on chunks of at most `chunk_size` distinct
    rows in grid order. `seconds` (time spent building observations and encoding), `requested`
    (rows asked for) and `encoded` (distinct rows encoded) accumulate over the table's life, so
    metrics that share a table share their codes. Rows are found through a dense index with one
    entry per point of the factor grid (one int per stored observation of a dataset); grids of
    more than `DENSE_LIMIT` points (synthetic ones) use a sorted index of the encoded points.
    """

    DENSE_LIMIT = 1 << 26

    def __init__(self, data, represent, chunk_size: int = 4096):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.data = data
        self.represent = represent
        self.chunk_size = chunk_size
        self.factor_sizes = tuple(int(k) for k in data.factor_sizes)
        grid = math.prod(self.factor_sizes)
        self._row = np.full(grid, -1, dtype=np.int64) if grid <= self.DENSE_LIMIT else None
        self._keys = np.zeros(0, dtype=np.int64)        # sparse index: encoded points, sorted,
        self._sparse_rows = np.zeros(0, dtype=np.int64) # and their rows
        self._values = None                             # codes of the encoded rows, in order
        self.seconds = 0.0
        self.requested = 0
        self.encoded = 0

    def __call__(self, factors) -> np.ndarray:
        """Codes (n, D) of the factor rows `factors` (n, F)."""
        keys = np.ravel_multi_index(np.asarray(factors).T, self.factor_sizes)
        rows = self._rows(keys)
        missing = rows < 0
        if missing.any():
            new = np.sort(keys[missing])            # unique by sorting: np.unique is slower
            self._encode(new[np.r_[True, new[1:] != new[:-1]]])
            rows = self._rows(keys)
        self.requested += len(keys)
        return self._values[rows]

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each grid point in `keys` among the encoded codes, -1 where not encoded."""
        if self._row is not None:
            return self._row[keys]
        if len(self._keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[pos] == keys, self._sparse_rows[pos], -1)

    def _encode(self, missing: np.ndarray) -> None:
        """Encode the grid points `missing` (flat indices, increasing)."""
        start = time.perf_counter()
        # Observations are a function of the factors; this state only fills the protocol's slot.
        random_state = np.random.RandomState(0)
        chunks = []
        for i in range(0, len(missing), self.chunk_size):
            factors = np.stack(np.unravel_index(missing[i:i + self.chunk_size], self.factor_sizes), 1)
            observations = self.data.observations_from_factors(factors, random_state)
            chunks.append(np.asarray(self.represent(observations)))
        new = np.concatenate(chunks)
        if new.ndim != 2 or len(new) != len(missing):
            raise ValueError(f"represent() must return an array (n, D) for n observations; "
                             f"got shape {new.shape} for {len(missing)} observations")
        self.seconds += time.perf_counter() - start
        rows = np.arange(self.encoded, self.encoded + len(missing))
        if self._row is not None:
            self._row[missing] = rows
        else:
            keys = np.concatenate([self._keys, missing])
            order = np.argsort(keys, kind="stable")
            self._keys = keys[order]
            self._sparse_rows = np.concatenate([self._sparse_rows, rows])[order]
        self._values = new if self._values is None else np.concatenate([self._values, new])
        self.encoded += len(missing)


def sample_factors(data, num_points: int, random_state, batch_size: int) -> np.ndarray:
    """`num_points` factor rows (n, F) drawn in chunks of `batch_size`, as dlib's
    `generate_batch_factor_code` draws them."""
    chunks = [data.sample_factors(min(num_points - i, batch_size), random_state)
              for i in range(0, num_points, batch_size)]
    return np.concatenate(chunks)


def factor_codes(codes: Codes, num_points: int, random_state, batch_size: int):
    """dlib's `generate_batch_factor_code`: (mus (D, n), ys (F, n)) in dlib's orientation."""
    factors = sample_factors(codes.data, num_points, random_state, batch_size)
    return codes(factors).T, factors.T


def histogram_discretize(target: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per row: `np.digitize` into `num_bins` equal-width bins over the row's own range (ids
    1..num_bins, input dtype kept), as dlib's `_histogram_discretize`."""
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        edges = np.histogram(target[i, :], num_bins)[1]
        discretized[i, :] = np.digitize(target[i, :], edges[:-1])
    return discretized


def discrete_mutual_info(mus: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """m[i, j] = plug-in mutual information (nats) of discrete rows mus[i] and ys[j]."""
    m = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = mutual_info_score(ys[j, :], mus[i, :])
    return m


def discrete_entropy(ys: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of each discrete row of ys."""
    return np.array([mutual_info_score(ys[j, :], ys[j, :]) for j in range(ys.shape[0])])


def normalize_data(data: np.ndarray, mean=None, stddev=None):
    """Standardise rows (ddof 0) with the given or the data's own mean and std."""
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
    return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev
