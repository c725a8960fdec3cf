"""Modularity and explicitness (Ridgeway & Mozer, 2018), as dlib's
`modularity_explicitness.compute_modularity_explicitness`."""
import warnings

import numpy as np
from sklearn import linear_model, metrics, preprocessing
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from . import HIGHER, register
from .utils import discrete_mutual_info, factor_codes, histogram_discretize, normalize_data


@register("modularity-explicitness",
          default=dict(num_train=10000, num_test=5000, batch_size=16, num_bins=20),
          quick=dict(num_train=2000, num_test=1000),
          directions=dict(modularity_score=HIGHER, explicitness_score_train=HIGHER,
                          explicitness_score_test=HIGHER))
def modularity_explicitness(codes, seed, num_train, num_test, batch_size, num_bins):
    """modularity_score from the MI of discretised codes and factors (dead codes count 0);
    explicitness_score_train/_test = mean over factors of the macro one-vs-rest ROC AUC of a
    LogisticRegression() on the codes standardised with the train mean/std.

    A constant code dim makes dlib divide by a zero std and crash; here the explicitness scores
    are NaN with a warning instead, and modularity is still reported.
    """
    random_state = np.random.RandomState(seed)
    mus_train, ys_train = factor_codes(codes, num_train, random_state, batch_size)
    mus_test, ys_test = factor_codes(codes, num_test, random_state, batch_size)
    mi = discrete_mutual_info(histogram_discretize(mus_train, num_bins), ys_train)
    scores = {"modularity_score": modularity(mi)}
    stddev = np.std(mus_train, axis=1)
    if np.any(stddev == 0):
        warnings.warn(f"code dims {np.flatnonzero(stddev == 0).tolist()} are constant: "
                      f"explicitness is undefined (dlib crashes here), reported as NaN",
                      RuntimeWarning, stacklevel=2)
        return {**scores, "explicitness_score_train": float("nan"),
                "explicitness_score_test": float("nan")}
    mus_train_norm, mean, _ = normalize_data(mus_train, stddev=stddev)
    mus_test_norm, _, _ = normalize_data(mus_test, mean, stddev)
    # One BLAS/OpenMP thread: these small fits make hundreds of tiny BLAS calls, which run
    # several times slower when handed out to threads (the results are the same).
    with threadpool_limits(1):
        per_factor = np.array([explicitness_per_factor(mus_train_norm, ys_train[j, :],
                                                       mus_test_norm, ys_test[j, :])
                               for j in range(ys_train.shape[0])])
    return {**scores, "explicitness_score_train": float(np.mean(per_factor[:, 0])),
            "explicitness_score_test": float(np.mean(per_factor[:, 1]))}


def modularity(mutual_information: np.ndarray) -> float:
    """Mean over codes of 1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)); 0 for a
    code with no information."""
    squared = np.square(mutual_information)
    max_squared = np.max(squared, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.sum(squared, axis=1) - max_squared) / (max_squared * (squared.shape[1] - 1.0))
    score = 1.0 - delta
    score[max_squared == 0.0] = 0.0
    return float(np.mean(score))


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    """(train AUC, test AUC) of LogisticRegression() predicting one factor from all codes."""
    with warnings.catch_warnings():     # the reference fits the same way
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = linear_model.LogisticRegression().fit(mus_train.T, y_train)
    binarizer = preprocessing.MultiLabelBinarizer()
    roc_train = metrics.roc_auc_score(binarizer.fit_transform(y_train[:, np.newaxis]),
                                      classifier.predict_proba(mus_train.T))
    roc_test = metrics.roc_auc_score(binarizer.fit_transform(y_test[:, np.newaxis]),
                                     classifier.predict_proba(mus_test.T))
    return roc_train, roc_test
