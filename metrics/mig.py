"""Mutual Information Gap (Chen et al., 2018), as dlib's `mig.compute_mig`."""
import numpy as np

from . import HIGHER, register
from .utils import discrete_entropy, discrete_mutual_info, factor_codes, histogram_discretize


@register("mig", default=dict(num_train=10000, batch_size=16, num_bins=20),
          quick=dict(num_train=2000), directions=dict(discrete_mig=HIGHER))
def mig(codes, seed, num_train, batch_size, num_bins):
    """discrete_mig = mean over factors of (largest - second largest MI of a code with the
    factor) / entropy of the factor; codes in `num_bins` per-dim equal-width bins, nats."""
    mus, ys = factor_codes(codes, num_train, np.random.RandomState(seed), batch_size)
    if mus.shape[0] < 2:
        raise ValueError(f"MIG needs at least 2 code dimensions, got {mus.shape[0]}")
    m = discrete_mutual_info(histogram_discretize(mus, num_bins), ys)
    entropy = discrete_entropy(ys)
    sorted_m = np.sort(m, axis=0)[::-1]
    return {"discrete_mig": float(np.mean((sorted_m[0, :] - sorted_m[1, :]) / entropy))}
