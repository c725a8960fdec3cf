"""Separated Attribute Predictability (Kumar et al., 2018), as dlib's `sap_score.compute_sap`."""
import warnings

import numpy as np
from sklearn import svm
from sklearn.exceptions import ConvergenceWarning

from . import HIGHER, register
from .utils import factor_codes


@register("sap", default=dict(num_train=10000, num_test=5000, batch_size=16),
          quick=dict(num_train=2000, num_test=1000), directions=dict(SAP_score=HIGHER))
def sap(codes, seed, num_train, num_test, batch_size):
    """SAP with discrete factors (the study default): S[i, j] = test accuracy of a 1-D
    LinearSVC(C=0.01, class_weight="balanced") predicting factor j from code i;
    SAP_score = mean over factors of the gap between the two best codes."""
    random_state = np.random.RandomState(seed)
    mus, ys = factor_codes(codes, num_train, random_state, batch_size)
    mus_test, ys_test = factor_codes(codes, num_test, random_state, batch_size)
    # dlib leaves LinearSVC's random_state at None, i.e. numpy's global RNG, seeded with `seed`
    # by the evaluation; a private RandomState(seed) gives the same draws without touching it.
    svm_random_state = np.random.RandomState(seed)
    scores = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            classifier = svm.LinearSVC(C=0.01, class_weight="balanced",
                                       random_state=svm_random_state)
            with warnings.catch_warnings():     # the reference fits these the same way
                warnings.simplefilter("ignore", ConvergenceWarning)
                classifier.fit(mus[i, :, np.newaxis], ys[j, :])
            scores[i, j] = np.mean(classifier.predict(mus_test[i, :, np.newaxis]) == ys_test[j, :])
    return {"SAP_score": top_two_gap(scores)}


@register("sap-continuous", default=dict(num_train=10000, batch_size=16),
          quick=dict(num_train=2000), directions=dict(SAP_score=HIGHER))
def sap_continuous(codes, seed, num_train, batch_size):
    """SAP with continuous factors (dlib's `continuous_factors=True`): S[i, j] = squared Pearson
    correlation of code i and factor j on the train sample (0 if the code's variance is
    <= 1e-12). dlib also draws a test sample after the train sample but never uses it."""
    mus, ys = factor_codes(codes, num_train, np.random.RandomState(seed), batch_size)
    scores = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            cov = np.cov(mus[i, :], ys[j, :], ddof=1)
            if cov[0, 0] > 1e-12:
                scores[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    return {"SAP_score": top_two_gap(scores)}


def top_two_gap(scores: np.ndarray) -> float:
    """Mean over columns of (largest - second largest entry)."""
    if scores.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 code dimensions, got {scores.shape[0]}")
    sorted_scores = np.sort(scores, axis=0)
    return float(np.mean(sorted_scores[-1, :] - sorted_scores[-2, :]))
