"""A histogram version of scikit-learn's GradientBoostingClassifier() for the fast DCI mode.

Same model as the reference's default booster: log-loss, init = log prior (log-odds for two
classes), 100 stages of one regression tree per class (one in all for two classes) fitted to
the negative gradient, depth 3, least-squares (friedman_mse) splits, Newton leaf values
(x (K-1)/K for K > 2 classes), learning rate 0.1; importances = impurity decrease of the
splits, summed over all trees and normalised; exact ties between features are broken at random,
as the reference's random feature order does. Differences: split candidates are the boundaries
of at most 256 bins per feature (the exact candidates when a feature has at most 256 distinct
values, quantile bins otherwise), and all trees of a stage are grown together, level by level,
in numpy.
"""
from __future__ import annotations

import numpy as np

MAX_BINS = 256


def bin_features(x_train: np.ndarray):
    """Bin ids (n, D) of the train codes and per-feature (lowest, highest) train value per bin."""
    bins = np.zeros(x_train.shape, dtype=np.int64)
    lowest, highest = [], []
    for f in range(x_train.shape[1]):
        values = np.unique(x_train[:, f])
        if len(values) > MAX_BINS:
            edges = np.unique(np.quantile(values, np.linspace(0, 1, MAX_BINS + 1)[1:-1]))
            bins[:, f] = np.searchsorted(edges, x_train[:, f], side="left")
            of_value = np.searchsorted(edges, values, side="left")
            starts = np.flatnonzero(np.r_[True, np.diff(of_value) > 0])
            values_low, values_high = values[starts], values[np.r_[starts[1:], len(values)] - 1]
            low = np.full(MAX_BINS, np.inf)
            high = np.full(MAX_BINS, -np.inf)
            low[of_value[starts]], high[of_value[starts]] = values_low, values_high
        else:
            bins[:, f] = np.searchsorted(values, x_train[:, f])
            low = np.full(MAX_BINS, np.inf)
            high = np.full(MAX_BINS, -np.inf)
            low[:len(values)] = high[:len(values)] = values
        lowest.append(low)
        highest.append(high)
    return bins, np.array(lowest), np.array(highest)


def fit_predict(x_train, y_train, x_test, random_state, n_stages=100, learning_rate=0.1,
                max_depth=3):
    """Fit on (x_train, y_train); return (importances (D,), train predictions, test predictions).
    `random_state` breaks exact ties between features."""
    classes, y = np.unique(y_train, return_inverse=True)
    n, num_features = x_train.shape
    num_classes = len(classes)
    if num_classes < 2:
        raise ValueError("the booster needs at least 2 classes in a factor's train sample")
    bins, lowest, highest = bin_features(x_train)
    num_bins = int(bins.max()) + 1            # bins in use
    bin_keys = np.arange(num_features) * num_bins + bins
    prior = np.bincount(y, minlength=num_classes) / n
    if num_classes == 2:
        targets = y[:, None].astype(np.float64)
        init = np.array([np.log(prior[1] / prior[0])])
    else:
        targets = np.eye(num_classes)[y]
        init = np.log(prior)
    trees = len(init)
    raw = np.tile(init, (n, 1))
    raw_test = np.tile(init, (len(x_test), 1))
    importances = np.zeros(num_features)
    for _ in range(n_stages):
        if num_classes == 2:
            prob = 1.0 / (1.0 + np.exp(-raw))
        else:
            prob = np.exp(raw - raw.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
        residual = targets - prob
        node, node_test = _grow(bins, bin_keys, num_bins, residual, x_test, lowest, highest,
                                max_depth, importances, random_state)
        leaves = 2 ** max_depth
        keys = np.arange(trees) * leaves + node                       # (n, trees)
        numerator = np.bincount(keys.ravel(), residual.ravel(), trees * leaves)
        denominator = np.bincount(keys.ravel(), (prob * (1 - prob)).ravel(), trees * leaves)
        if num_classes > 2:
            numerator *= (num_classes - 1) / num_classes
        safe = np.abs(denominator) >= 1e-150
        values = np.zeros(trees * leaves)
        values[safe] = numerator[safe] / denominator[safe]
        raw += learning_rate * values[keys]
        raw_test += learning_rate * values[np.arange(trees) * leaves + node_test]
    total = importances.sum()
    return (importances / total if total > 0 else importances,
            classes[_decide(raw)], classes[_decide(raw_test)])


def _decide(raw):
    return (raw[:, 0] > 0).astype(np.int64) if raw.shape[1] == 1 else np.argmax(raw, axis=1)


def _grow(bins, bin_keys, num_bins, residual, x_test, lowest, highest, max_depth, importances,
          random_state):
    """Grow one tree per residual column, all at once, level by level. Adds the trees' impurity
    decreases to `importances`; returns the leaf of every train and test sample per tree (leaf
    ids in 0..2**max_depth, a node that stops early keeps its samples in its leftmost
    descendant)."""
    n, trees = residual.shape
    num_features = bins.shape[1]
    node = np.zeros((n, trees), dtype=np.int64)
    node_test = np.zeros((len(x_test), trees), dtype=np.int64)
    splittable = np.ones((trees, 1), dtype=bool)
    tree_ids = np.arange(trees)
    for depth in range(max_depth):
        width = 2 ** depth
        group = tree_ids * width + node                               # (n, trees)
        keys = ((group * num_features * num_bins)[:, :, None] + bin_keys[:, None, :]).ravel()
        size = trees * width * num_features * num_bins
        weights = np.broadcast_to(residual[:, :, None], (n, trees, num_features)).ravel()
        sums = np.bincount(keys, weights, size).reshape(trees, width, num_features, num_bins)
        counts = np.bincount(keys, None, size).reshape(trees, width, num_features, num_bins)
        node_sum = sums[:, :, 0].sum(-1)                              # (trees, width)
        node_count = counts[:, :, 0].sum(-1)
        node_square = np.bincount(group.ravel(), (residual ** 2).ravel(), trees * width)
        node_square = node_square.reshape(trees, width)
        with np.errstate(divide="ignore", invalid="ignore"):
            impurity = node_square / node_count - (node_sum / node_count) ** 2
        left_sum = np.cumsum(sums, axis=-1)[..., :-1]
        left_count = np.cumsum(counts, axis=-1)[..., :-1]
        right_sum = node_sum[:, :, None, None] - left_sum
        right_count = node_count[:, :, None, None] - left_count
        valid = (left_count > 0) & (right_count > 0) & (counts[..., :-1] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):       # scikit-learn's proxy
            proxy = np.where(valid, (right_count * left_sum - left_count * right_sum) ** 2
                             / (left_count * right_count), -np.inf)
        position = np.argmax(proxy, axis=-1)                        # first best per feature
        feature_proxy = np.take_along_axis(proxy, position[..., None], -1)[..., 0]
        best_proxy = feature_proxy.max(axis=-1)
        tied = feature_proxy == best_proxy[..., None]
        feature = np.argmax(np.where(tied, random_state.random_sample(tied.shape), -1.0), -1)
        position = np.take_along_axis(position, feature[..., None], -1)[..., 0]
        split = (splittable & np.isfinite(best_proxy) & (node_count >= 2)
                 & (impurity > np.finfo(np.float64).eps))
        # impurity decrease = left_sum^2/left_count + right_sum^2/right_count - sum^2/count
        #                   = proxy / count
        with np.errstate(divide="ignore", invalid="ignore"):
            decrease = best_proxy / node_count
        np.add.at(importances, feature[split], decrease[split] / n)
        # threshold halfway between the split bin's highest value and the next occupied bin's
        # lowest value present in the node, as the exact splitter places it
        occupied = np.take_along_axis(counts, feature[..., None, None], 2)[:, :, 0] > 0
        after = np.where(np.arange(num_bins) > position[..., None], occupied, False)
        next_bin = np.argmax(after, axis=-1)
        threshold = (highest[feature, position] + lowest[feature, next_bin]) / 2
        threshold = np.where(threshold == lowest[feature, next_bin],
                             highest[feature, position], threshold)
        tree_index = np.broadcast_to(tree_ids, node.shape)
        is_split = split[tree_index, node]
        go_right = bins[np.arange(n)[:, None], feature[tree_index, node]] > position[tree_index, node]
        node = 2 * node + (is_split & go_right)
        tree_index_test = np.broadcast_to(tree_ids, node_test.shape)
        is_split_test = split[tree_index_test, node_test]
        go_right_test = (x_test[np.arange(len(x_test))[:, None], feature[tree_index_test, node_test]]
                         > threshold[tree_index_test, node_test])
        node_test = 2 * node_test + (is_split_test & go_right_test)
        splittable = np.repeat(split, 2, axis=1)     # a node that stopped is a leaf for good
    return node, node_test
