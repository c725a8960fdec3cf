"""UDR, Unsupervised Disentanglement Ranking (Duan et al., ICLR 2020, arXiv 1905.12614), as
disentanglement_lib's `compute_udr_sklearn` computes it (../shared/udr_oracle/README.md).

UDR scores a *set* of models (the seeds of one setting: same method, hyperparameters and
dataset), not one representation, so it is not in the per-run registry of `metrics.compute`.
Call it on models:

    result = compute_udr(data, [model_a, model_b, model_c], seed=0)  # images -> (mean, logvar)
    result["model_scores"]          # one score per model, in order; higher is more disentangled

or on codes already computed (what evaluation stores per run; bench/udr_setting.py):

    result = udr_from_codes(means, kls)     # means[m] (N, D) posterior means, kls[m] (D,) KL

A model scores high when its active latents correspond one to one with those of the other
models: pairs of models are compared by a latent-by-latent similarity matrix (|Lasso
coefficients| or |Spearman ρ|), scored by how much each row and column is dominated by one
entry, and a model's score is the median of its pair scores.
"""
from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

from . import _int_seed

CORRELATIONS = ("lasso", "spearman")
# dlib zeroes latents with KL <= 0.01 whatever kl_filter_threshold is (hard-coded there).
ZEROING_THRESHOLD = 0.01
LASSO_ALPHA = 0.1


def compute_udr(data, models, seed=0, num_data_points: int = 1000, batch_size: int = 10,
                correlation_matrix: str = "lasso", filter_low_kl: bool = True,
                include_raw_correlations: bool = True,
                kl_filter_threshold: float = 0.01) -> dict:
    """UDR of `models` (callables images -> (mean (B, D), logvar (B, D)), numpy or torch) on
    `num_data_points` observations of `data`, drawn in batches of `batch_size` with
    `RandomState(seed)` (as dlib: every model sees the same observations).

    `data` gives `sample_observations(n, random_state)`, or is a GroundTruthData
    (`sample_factors` then `observations_from_factors`). A model's per-latent KL to N(0, 1) is
    averaged over each batch, then over the batches, as dlib's `evaluate.py` does. Defaults are
    dlib's (`udr.gin`: 1000 points in batches of 10, Lasso, KL filter at 0.01). Returns dlib's
    keys: "model_scores" (one per model), "pairwise_disentanglement_scores" (M x M x 1) and,
    if asked, "raw_correlations" (M x M x D x D); see `udr_from_codes`.
    """
    if not 0 < batch_size <= num_data_points:
        raise ValueError(f"batch_size ({batch_size}) must be at least 1 and at most "
                         f"num_data_points ({num_data_points})")
    if num_data_points % batch_size != 0:
        raise ValueError(f"num_data_points ({num_data_points}) must be a multiple of "
                         f"batch_size ({batch_size}): UDR draws whole batches")
    _check_options(correlation_matrix, len(models))
    random_state = np.random.RandomState(_int_seed(seed))
    means = [[] for _ in models]
    batch_kls = [[] for _ in models]
    for _ in range(num_data_points // batch_size):
        observations = sample_observations(data, batch_size, random_state)
        for m, model in enumerate(models):
            mean, kl = mean_and_kl(*model(observations), name=f"model {m}")
            means[m].append(mean)
            batch_kls[m].append(kl)
    return udr_from_codes([np.concatenate(m) for m in means],
                          [np.mean(k, axis=0) for k in batch_kls],
                          correlation_matrix=correlation_matrix, filter_low_kl=filter_low_kl,
                          include_raw_correlations=include_raw_correlations,
                          kl_filter_threshold=kl_filter_threshold, random_state=random_state)


def sample_observations(data, n: int, random_state):
    """dlib's `sample_observations(n, random_state)`, also for a GroundTruthData."""
    if hasattr(data, "sample_observations"):
        return data.sample_observations(n, random_state)
    return data.observations_from_factors(data.sample_factors(n, random_state), random_state)


def mean_and_kl(mean, logvar, name: str = "model") -> tuple[np.ndarray, np.ndarray]:
    """(mean (B, D) float64, KL (D,)): the KL of N(mean, exp(logvar)) to N(0, 1) per latent,
    averaged over the B rows (dlib's `compute_gaussian_kl`)."""
    mean, logvar = _array(mean), _array(logvar)
    if mean.ndim != 2 or mean.shape != logvar.shape:
        raise ValueError(f"{name} must return (mean, logvar) of one shape (batch, latent_dim); "
                         f"got {mean.shape} and {logvar.shape}")
    kl = 0.5 * (np.square(mean) + np.exp(logvar) - logvar - 1)
    return mean, kl.mean(axis=0)


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):                     # a torch tensor, on any device
        value = value.detach().cpu()
    return np.asarray(value, dtype=np.float64)


def udr_from_codes(means, kls, correlation_matrix: str = "lasso", filter_low_kl: bool = True,
                   include_raw_correlations: bool = True, kl_filter_threshold: float = 0.01,
                   random_state=None) -> dict:
    """UDR of M models from their codes: `means[m]` (N, D) posterior means of model m on the
    same N observations, `kls[m]` (D,) its per-latent KL (averaged over batches as dlib does).

    dlib's steps: standardise each latent (population std; a constant one becomes 0), zero the
    latents with KL <= 0.01 (hard-coded, as in dlib), and keep in the comparison those with KL
    > `kl_filter_threshold` (if `filter_low_kl`). For each ordered pair (i, j), R[a, b] is
    |coefficient of latent a of model i predicting latent b of model j| (sklearn
    `Lasso(alpha=0.1)`) or |Spearman ρ| (scipy, average ranks; a constant latent gives NaN).
    The pair score is (mean over columns + mean over rows of max² / sum) / 2, a NaN term
    counting as 0; model i's score is the median over j != i of the (j, i) pair scores (model
    i as the Lasso target). `random_state` goes to Lasso as in dlib (no effect: cyclic).

    Raises ValueError, where dlib asserts, crashes or returns NaN, for: fewer than 2 models,
    latent dims or point counts that differ, non-finite codes, an unknown correlation, and a
    model without any latent above the KL threshold while filtering.
    """
    _check_options(correlation_matrix, len(means))
    means, kls = _checked_codes(means, kls)
    zeroed = [_standardised(z) * (kl > ZEROING_THRESHOLD) for z, kl in zip(means, kls)]
    masks = [kl > kl_filter_threshold for kl in kls]
    if filter_low_kl:
        for m, (mask, kl) in enumerate(zip(masks, kls)):
            if not mask.any():
                raise ValueError(
                    f"model {m} has no active latent: every latent's KL is <= "
                    f"kl_filter_threshold={kl_filter_threshold} (largest {kl.max():.3g} nats), "
                    f"so its posterior has collapsed and UDR cannot compare it; leave it out, "
                    f"or pass filter_low_kl=False to count it as 0")
    num_models, latent_dim = len(means), means[0].shape[1]
    raw = (_spearman_blocks(zeroed) if correlation_matrix == "spearman"
           else _lasso_blocks(zeroed, random_state))
    pairwise = np.zeros((num_models, num_models, 1))
    for (i, j), block in raw.items():
        if filter_low_kl:
            block = block[masks[i]][:, masks[j]]
        pairwise[i, j, 0] = relative_strength(block)
    scores = [float(np.median(np.delete(pairwise[:, i, 0], i))) for i in range(num_models)]
    result = {"pairwise_disentanglement_scores": pairwise.tolist(), "model_scores": scores}
    if include_raw_correlations:
        full = np.zeros((num_models, num_models, latent_dim, latent_dim))
        for (i, j), block in raw.items():
            full[i, j] = block
        result["raw_correlations"] = full.tolist()
    return result


def _check_options(correlation_matrix: str, num_models: int) -> None:
    if correlation_matrix not in CORRELATIONS:
        raise ValueError(f"unknown correlation_matrix {correlation_matrix!r}; valid: "
                         f"{', '.join(CORRELATIONS)}")
    if num_models < 2:
        raise ValueError(f"UDR compares models with each other: got {num_models} model(s), "
                         f"give at least 2 (the seeds of one setting)")


def _checked_codes(means, kls) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(means) != len(kls):
        raise ValueError(f"{len(means)} code tables but {len(kls)} KL vectors: give one of each "
                         f"per model")
    means = [np.asarray(z, dtype=np.float64) for z in means]
    kls = [np.asarray(kl, dtype=np.float64) for kl in kls]
    shape = means[0].shape
    for m, (z, kl) in enumerate(zip(means, kls)):
        if z.ndim != 2 or kl.shape != z.shape[1:]:
            raise ValueError(f"model {m}: means must be (N, D) and its KL (D,); got "
                             f"{z.shape} and {kl.shape}")
        if z.shape[1] != shape[1]:
            raise ValueError(f"models have different latent sizes (model 0: {shape[1]}, model "
                             f"{m}: {z.shape[1]}); UDR compares models of one latent size")
        if z.shape[0] != shape[0]:
            raise ValueError(f"model 0 has codes of {shape[0]} observations, model {m} of "
                             f"{z.shape[0]}; UDR needs every model's codes of the same inputs")
        if not (np.isfinite(z).all() and np.isfinite(kl).all()):
            raise ValueError(f"model {m}'s means or KL hold NaN or infinity (a diverged "
                             f"model?); UDR needs finite codes")
    return means, kls


def _standardised(z: np.ndarray) -> np.ndarray:
    """sklearn's StandardScaler: zero mean, unit population std; a constant column becomes 0."""
    return StandardScaler().fit_transform(z)


def _lasso_blocks(zeroed, random_state) -> dict:
    """{(i, j): |coef| (D, D)}: rows the latents of model i (inputs), columns model j's."""
    blocks = {}
    for i, inputs in enumerate(zeroed):
        for j, targets in enumerate(zeroed):
            if i != j:
                fit = Lasso(alpha=LASSO_ALPHA, random_state=random_state).fit(inputs, targets)
                blocks[i, j] = np.abs(np.atleast_2d(fit.coef_)).T
    return blocks


def _spearman_blocks(zeroed) -> dict:
    """{(i, j): |Spearman ρ| (D, D)} of every pair of latents, NaN where a latent is constant
    (a zeroed one), as dlib's per-pair `spearmanr` gives. One `spearmanr` call over all models'
    varying latents (a matrix call returns NaN everywhere if one of its first two columns is
    constant, so constant latents are left out of it)."""
    latents = np.concatenate(zeroed, axis=1)
    varying = ~np.all(latents == latents[0], axis=0)
    rho = np.full((latents.shape[1], latents.shape[1]), np.nan)
    if varying.sum() >= 2:
        inner = scipy.stats.spearmanr(latents[:, varying]).statistic
        if np.ndim(inner) == 0:                            # two columns: one coefficient
            inner = np.array([[1.0, inner], [inner, 1.0]])
        rho[np.ix_(varying, varying)] = np.abs(inner)
    latent_dim = zeroed[0].shape[1]
    return {(i, j): rho[i * latent_dim:(i + 1) * latent_dim, j * latent_dim:(j + 1) * latent_dim]
            for i in range(len(zeroed)) for j in range(len(zeroed)) if i != j}


def relative_strength(matrix: np.ndarray) -> float:
    """dlib's pair score: (mean_b max_a R² / sum_a R + mean_a max_b R² / sum_b R) / 2; a NaN
    term (an all-zero row or column, or one holding a NaN) counts as 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = np.nan_to_num(matrix.max(axis=0) ** 2 / matrix.sum(axis=0), nan=0.0)
        rows = np.nan_to_num(matrix.max(axis=1) ** 2 / matrix.sum(axis=1), nan=0.0)
    return float((columns.mean() + rows.mean()) / 2)
