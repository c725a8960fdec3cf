"""BetaVAE score (Higgins et al., 2017), as dlib's `beta_vae.compute_beta_vae_sklearn`."""
import warnings

import numpy as np
from sklearn import linear_model
from sklearn.exceptions import ConvergenceWarning

from . import HIGHER, register


@register("beta-vae", default=dict(num_train=10000, num_eval=5000, batch_size=64),
          quick=dict(num_train=2000, num_eval=1000),
          directions=dict(train_accuracy=HIGHER, eval_accuracy=HIGHER), interventional=True)
def beta_vae(codes, seed, num_train, num_eval, batch_size):
    """Accuracy of a LogisticRegression predicting which factor was held fixed in a pair of
    batches from the mean absolute code difference of the pairs."""
    random_state = np.random.RandomState(seed)
    train_points, train_labels = training_batch(codes, num_train, batch_size, random_state)
    model = linear_model.LogisticRegression(random_state=random_state)
    with warnings.catch_warnings():     # the reference fits the same way
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_points, train_labels)
    train_accuracy = np.mean(model.predict(train_points) == train_labels)
    eval_points, eval_labels = training_batch(codes, num_eval, batch_size, random_state)
    return {"train_accuracy": float(train_accuracy),
            "eval_accuracy": float(model.score(eval_points, eval_labels))}


def training_batch(codes, num_points, batch_size, random_state):
    """`num_points` (feature, label) pairs; for each, dlib draws a factor index, two batches of
    factors, and copies that factor from the first batch into the second. All factors are drawn
    first, in that order, then encoded together."""
    data, num_factors = codes.data, len(codes.factor_sizes)
    labels = np.zeros(num_points, dtype=np.int64)
    pairs = np.zeros((num_points, 2, batch_size, num_factors), dtype=np.int64)
    for i in range(num_points):
        labels[i] = random_state.randint(num_factors)
        pairs[i, 0] = data.sample_factors(batch_size, random_state)
        pairs[i, 1] = data.sample_factors(batch_size, random_state)
        pairs[i, 1, :, labels[i]] = pairs[i, 0, :, labels[i]]
    z = codes(pairs.reshape(-1, num_factors)).reshape(num_points, 2, batch_size, -1)
    return np.mean(np.abs(z[:, 0] - z[:, 1]), axis=1), labels
