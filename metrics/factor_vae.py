"""FactorVAE score (Kim & Mnih, 2018), as dlib's `factor_vae.compute_factor_vae`."""
import numpy as np

from . import HIGHER, register


@register("factor-vae", default=dict(num_train=10000, num_eval=5000, num_variance_estimate=10000,
                                     batch_size=64, prune_threshold=0.05),
          quick=dict(num_train=2000, num_eval=1000, num_variance_estimate=2000),
          directions=dict(train_accuracy=HIGHER, eval_accuracy=HIGHER, num_active_dims=None,
                          dlib_num_active_dims=None), interventional=True)
def factor_vae(codes, seed, num_train, num_eval, num_variance_estimate, batch_size,
               prune_threshold):
    """Accuracy of the majority-vote classifier from "code dim of least normalised variance" to
    "factor held fixed", over code dims whose global std is >= `prune_threshold` (dlib's study
    sets 0.05 via `prune_dims.threshold`).

    `num_active_dims` is the number of those dims. dlib reports the number of all code dims
    under that key (0 when none is active); that number is kept as `dlib_num_active_dims`.
    """
    random_state = np.random.RandomState(seed)
    data = codes.data
    global_variances = np.var(codes(data.sample_factors(num_variance_estimate, random_state)),
                              axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0,
                "dlib_num_active_dims": 0}
    train_votes = votes(codes, num_train, batch_size, random_state, global_variances, active)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    eval_votes = votes(codes, num_eval, batch_size, random_state, global_variances, active)
    return {"train_accuracy": float(np.sum(train_votes[classifier, columns]) / np.sum(train_votes)),
            "eval_accuracy": float(np.sum(eval_votes[classifier, columns]) / np.sum(eval_votes)),
            "num_active_dims": int(active.sum()), "dlib_num_active_dims": len(active)}


def votes(codes, num_points, batch_size, random_state, global_variances, active):
    """votes[k, a] = how often fixing factor k made active dim a (index among the active dims,
    as in dlib) the one of least variance relative to its global variance."""
    data, num_factors = codes.data, len(codes.factor_sizes)
    labels = np.zeros(num_points, dtype=np.int64)
    factors = np.zeros((num_points, batch_size, num_factors), dtype=np.int64)
    for i in range(num_points):
        labels[i] = random_state.randint(num_factors)
        factors[i] = data.sample_factors(batch_size, random_state)
        factors[i, :, labels[i]] = factors[i, 0, labels[i]]
    z = codes(factors.reshape(-1, num_factors)).reshape(num_points, batch_size, -1)
    local_variances = np.var(z, axis=1, ddof=1)
    argmins = np.argmin(local_variances[:, active] / global_variances[active], axis=1)
    counts = np.zeros((num_factors, len(global_variances)), dtype=np.int64)
    np.add.at(counts, (labels, argmins), 1)
    return counts
