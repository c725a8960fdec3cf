"""DCI disentanglement, completeness and informativeness (Eastwood & Williams, 2018), as dlib's
`dci.compute_dci`."""
import numpy as np
import scipy.stats
from sklearn import ensemble

from disentbench.extras import require

from . import HIGHER, register
from .utils import factor_codes

# informativeness is a classification accuracy (METRICS.md §5)
DCI_DIRECTIONS = dict(disentanglement=HIGHER, completeness=HIGHER, informativeness_train=HIGHER,
                      informativeness_test=HIGHER)


@register("dci", default=dict(num_train=10000, num_test=5000, batch_size=16),
          quick=dict(num_train=2000, num_test=1000), directions=DCI_DIRECTIONS)
def dci(codes, seed, num_train, num_test, batch_size):
    """DCI with dlib's booster: one GradientBoostingClassifier() (all defaults) per factor on the
    raw codes; importances = its impurity-based feature_importances_; informativeness =
    classification accuracy (higher is better)."""
    return dci_with(sklearn_fit_predict, codes, seed, num_train, num_test, batch_size)


@register("dci-fast", default=dict(num_train=10000, num_test=5000, batch_size=16),
          quick=dict(num_train=2000, num_test=1000), directions=DCI_DIRECTIONS)
def dci_fast(codes, seed, num_train, num_test, batch_size):
    """DCI with `boosting.fit_predict`, the reference's booster compiled with numba (same model,
    same random feature order, each feature sorted once per fit; see boosting.py): the
    reference mode's values, to the last bit on codes without repeated values (bar exact ties
    that the reference breaks by rounding noise; measured |Δ| in tests/test_dci_fast.py), about
    15 times faster on one core, and it grows a stage's trees on numba's threads."""
    require("numba", "fast", "the metric dci-fast")   # its compiled booster
    from . import boosting                  # compiles with numba: imported where used
    return dci_with(boosting.fit_predict, codes, seed, num_train, num_test, batch_size)


def sklearn_fit_predict(x_train, y_train, x_test, random_state):
    """(importances, train predictions, test predictions) of GradientBoostingClassifier()."""
    model = ensemble.GradientBoostingClassifier(random_state=random_state).fit(x_train, y_train)
    return np.abs(model.feature_importances_), model.predict(x_train), model.predict(x_test)


def dci_with(fit_predict, codes, seed, num_train, num_test, batch_size) -> dict:
    """DCI as dlib computes it, with `fit_predict(x_train, y_train, x_test, random_state)` as
    the booster of each factor."""
    random_state = np.random.RandomState(seed)
    mus_train, ys_train = factor_codes(codes, num_train, random_state, batch_size)
    mus_test, ys_test = factor_codes(codes, num_test, random_state, batch_size)
    # dlib leaves the booster's random_state at None, i.e. numpy's global RNG, seeded with
    # `seed` by the evaluation; a private RandomState(seed) gives the same draws.
    booster_random_state = np.random.RandomState(seed)
    importance = np.zeros([mus_train.shape[0], ys_train.shape[0]])
    train_accuracy, test_accuracy = [], []
    for j in range(ys_train.shape[0]):
        importance[:, j], train_predicted, test_predicted = fit_predict(
            mus_train.T, ys_train[j, :], mus_test.T, booster_random_state)
        train_accuracy.append(np.mean(train_predicted == ys_train[j, :]))
        test_accuracy.append(np.mean(test_predicted == ys_test[j, :]))
    return dci_scores(importance, train_accuracy, test_accuracy)


def dci_scores(importance, train_accuracy, test_accuracy) -> dict:
    """The four DCI values from an importance matrix [codes, factors] and per-factor accuracies."""
    return {"informativeness_train": float(np.mean(train_accuracy)),
            "informativeness_test": float(np.mean(test_accuracy)),
            "disentanglement": disentanglement(importance),
            "completeness": completeness(importance)}


def disentanglement(importance: np.ndarray) -> float:
    """sum_i rho_i (1 - H_F(P_i)), P_i = code i's importances over factors (+1e-11, normalised),
    rho_i = code i's share of the total importance (uniform if all importances are 0)."""
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    code_importance = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * code_importance))


def completeness(importance: np.ndarray) -> float:
    """sum_j w_j (1 - H_D(Q_j)), Q_j = factor j's importances over codes (+1e-11, normalised),
    w_j = factor j's share of the total importance (uniform if all importances are 0)."""
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    factor_importance = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * factor_importance))
