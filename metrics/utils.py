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
import sys
import time
from contextlib import nullcontext

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
        keys = np.ravel_multi_index(check_factors(factors, self.factor_sizes).T, self.factor_sizes)
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
        torch = sys.modules.get("torch")          # no autograd graph for a model's codes
        with torch.no_grad() if torch is not None else nullcontext():
            for i in range(0, len(missing), self.chunk_size):
                factors = np.stack(np.unravel_index(missing[i:i + self.chunk_size],
                                                    self.factor_sizes), 1)
                observations = self.data.observations_from_factors(factors, random_state)
                chunks.append(as_codes(self.represent(observations), len(factors),
                                      "represent() must return"))
        new = np.concatenate(chunks)
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


class Sample:
    """A sample of (factors, codes) rows standing in for `Codes` where no sampler exists
    (`metrics.score`): each request for rows takes the next rows of the sample, in an order
    shuffled once, so a metric's training and test sets are disjoint."""

    def __init__(self, codes: np.ndarray, factors: np.ndarray, seed: int):
        order = np.random.RandomState(seed).permutation(len(codes))
        self.codes, self.factors = codes[order], factors[order]
        self.factor_sizes = tuple(int(k) for k in factors.max(axis=0) + 1)
        self.data = None
        self.taken = 0

    def take(self, num_points: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(self.taken, self.taken + num_points)
        if rows.stop > len(self.codes):
            raise ValueError(f"the sample has {len(self.codes)} rows; {rows.stop} are needed")
        self.taken = rows.stop
        return self.codes[rows], self.factors[rows]


def as_codes(values, n: int, source: str) -> np.ndarray:
    """`values` (a numpy array, or a torch tensor on any device, with or without grad) as a
    float array (n, D) of finite codes; otherwise one ValueError (`source`: "represent() must
    return", "codes must be") naming the problem and the fix."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    values = np.asarray(values)
    if values.ndim != 2 or len(values) != n:
        raise ValueError(f"{source} an array (n, D) of codes for n = {n} rows, got shape "
                         f"{values.shape}; flatten each code to one row (codes.reshape(n, -1))")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"{source} real numbers, got dtype {values.dtype}")
    bad = ~np.isfinite(values)
    if bad.any():
        dims = sorted(set(np.nonzero(bad)[1].tolist()))
        raise ValueError(f"{source} finite numbers; got NaN or infinite values "
                         f"({int(bad.sum())} values, in dimensions {dims}); check the "
                         f"encoder's input scaling and weights")
    return values


def check_factors(factors, factor_sizes=None, source: str = "data.sample_factors") -> np.ndarray:
    """`factors` (n, F) as int64 indices 0..size-1 of each factor; otherwise one ValueError
    saying which rule fails and how to fix it (factor values are mapped to their indices)."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or (factor_sizes is not None and factors.shape[1] != len(factor_sizes)):
        width = f"{len(factor_sizes)} factors" if factor_sizes is not None else "F factors"
        raise ValueError(f"{source}: expected factor rows of shape (n, {width}), got shape "
                         f"{factors.shape}")
    if not (np.issubdtype(factors.dtype, np.integer) or np.issubdtype(factors.dtype, np.bool_)):
        whole = np.issubdtype(factors.dtype, np.floating) and np.all(np.mod(factors, 1) == 0)
        if not whole:
            example = factors.flat[np.argmax(np.mod(factors, 1) != 0)] if np.issubdtype(
                factors.dtype, np.floating) else factors.flat[0]
            raise ValueError(f"{source}: expected factor indices (integers 0..size-1), got "
                             f"{factors.dtype} values such as {example}; map each factor's "
                             f"values to their index, e.g. np.unique(values, "
                             f"return_inverse=True)[1]")
    factors = factors.astype(np.int64)
    low = factors.min(axis=0) if len(factors) else np.zeros(factors.shape[1], dtype=np.int64)
    if (low < 0).any():
        raise ValueError(f"{source}: got negative factor indices (factor "
                         f"{int(np.argmax(low < 0))}); indices run from 0 to size-1")
    if factor_sizes is not None and len(factors):
        over = factors.max(axis=0) >= np.asarray(factor_sizes)
        if over.any():
            j = int(np.argmax(over))
            raise ValueError(f"{source}: got index {int(factors[:, j].max())} for factor {j}, "
                             f"whose size is {factor_sizes[j]} "
                             f"(factor_sizes={tuple(factor_sizes)}); "
                             f"indices run from 0 to size-1: give indices, not factor values")
    return factors


def sample_factors(data, num_points: int, random_state, batch_size: int) -> np.ndarray:
    """`num_points` factor rows (n, F) drawn in chunks of `batch_size`, as dlib's
    `generate_batch_factor_code` draws them."""
    chunks = [data.sample_factors(min(num_points - i, batch_size), random_state)
              for i in range(0, num_points, batch_size)]
    return np.concatenate(chunks)


def factor_codes(codes: Codes, num_points: int, random_state, batch_size: int):
    """dlib's `generate_batch_factor_code`: (mus (D, n), ys (F, n)) in dlib's orientation.
    From a `Sample`, its next `num_points` rows (no sampler to draw from)."""
    if isinstance(codes, Sample):
        mus, factors = codes.take(num_points)
        return mus.T, factors.T
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
