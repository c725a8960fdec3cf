"""scikit-learn's GradientBoostingClassifier() with all defaults, compiled with numba, for the
fast DCI mode.

The same model, built the same way: log-loss, init = the class prior through the loss's link,
100 stages of one regression tree per class (one in all for two classes) fitted to the negative
gradient, exact greedy splits on the float32 codes (thresholds halfway between consecutive
values more than 1e-7 apart, squared-error criterion, depth 3, at least one sample per leaf),
Newton leaf values (x (K-1)/K for K > 2 classes), learning rate 0.1, and the reference's random
feature order per node (its xorshift generator seeded per tree from `random_state` as the
reference seeds it, with its bookkeeping of constant features). Importances are the trees'
impurity decreases, averaged and normalised as `feature_importances_`.

What differs is how a tree is grown: each feature is sorted once per fit and the sorted samples
are partitioned down the tree (scikit-learn sorts each node's samples again), and split
candidates are ranked by an equivalent form of the criterion (Friedman's, which needs no
division per candidate). Everything that rounding can tip is computed as the reference computes
it, in its order: node sums and impurities (over a copy of its array of samples), leaf values
(numpy's pairwise sums), and the criterion itself wherever other candidates come within a hair
of the best split. So the results are the reference's to the last bit, except where a node holds
equal values of the feature it sorted last or of a contending feature: the reference orders such
samples as its introsort leaves them, which decides rounding noise, and so exact ties such as
those between duplicated codes may go the other way.
"""
from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
import scipy.special
import scipy.stats
from sklearn.dummy import DummyClassifier

MAX_DEPTH = 3
NODES = 2 ** (MAX_DEPTH + 1) - 1
RAND_R_MAX = 0x7FFFFFFF                     # sklearn.tree._utils
FEATURE_THRESHOLD = np.float32(1e-7)        # sklearn.tree._partitioner, added in float32
EPSILON = np.finfo(np.float64).eps          # sklearn.tree._tree


def fit_predict(x_train, y_train, x_test, random_state, n_stages=100, learning_rate=0.1,
                threads=None):
    """Fit on (x_train, y_train); return (importances (D,), train predictions, test predictions).
    `random_state` (a RandomState) seeds the trees as it seeds the reference's; `threads` (default
    numba's thread count) grow the trees of a stage in parallel, with the same results."""
    classes, y = np.unique(y_train, return_inverse=True)
    num_classes = len(classes)
    if num_classes < 2:
        raise ValueError("the booster needs at least 2 classes in a factor's train sample")
    x = np.asarray(x_train, dtype=np.float32)
    x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    if not (np.isfinite(x).all() and np.isfinite(x_test).all()):
        raise ValueError("the booster needs finite codes (in float32), as the reference does")
    trees = 1 if num_classes == 2 else num_classes
    seeds = np.array([random_state.randint(0, RAND_R_MAX) for _ in range(n_stages * trees)],
                     dtype=np.int64).reshape(n_stages, trees)
    threads = numba.get_num_threads() if threads is None else threads
    importances, split, raw, raw_test = _boost(
        np.ascontiguousarray(x.T), _sorted_pairs(x), y.astype(np.int64), num_classes,
        initial_raw(y, num_classes), seeds, x_test, learning_rate, max(1, min(threads, trees)))
    if split.any():
        mean = np.mean(importances[split], axis=0, dtype=np.float64)
        importances = mean / np.sum(mean)
    else:
        importances = np.zeros(x.shape[1])
    return importances, classes[_decide(raw)], classes[_decide(raw_test)]


def initial_raw(y, num_classes):
    """The reference's initial raw prediction: the prior (a DummyClassifier's probabilities,
    clipped) through the log-loss link (logit, or the symmetric multinomial logit)."""
    prior = DummyClassifier(strategy="prior").fit(np.zeros((len(y), 1)), y.astype(np.float64))
    eps = np.finfo(np.float64).eps
    prior = np.clip(prior.predict_proba(np.zeros((1, 1))), eps, 1 - eps, dtype=np.float64)
    if num_classes == 2:
        return scipy.special.logit(prior[:, 1])
    return np.log(prior / scipy.stats.gmean(prior, axis=1)[:, None])[0]


def _sorted_pairs(x):
    """Each feature's samples in increasing order of value, as 64-bit words (D, n) holding
    the sample's index (int32, low half) and its value (float32, high half)."""
    order = np.argsort(x, axis=0, kind="stable").T
    pairs = np.empty(order.shape, dtype=np.uint64)
    halves = pairs.view(np.int32).reshape(*order.shape, 2)
    halves[..., 0] = order
    halves[..., 1] = np.take_along_axis(x.T, order, axis=1).view(np.int32)
    return pairs


def _decide(raw):
    return (raw[:, 0] >= 0).astype(np.int64) if raw.shape[1] == 1 else np.argmax(raw, axis=1)


@numba.njit(cache=True, nogil=True, parallel=True)
def _boost(x, pairs, y, num_classes, init, seeds, x_test, learning_rate, threads):
    """All stages on the codes x (D, n) with each feature's sorted samples (_sorted_pairs):
    per-tree importances (stages, trees, D), whether each tree split its root, and the raw
    predictions of train and test samples."""
    num_features, n = x.shape
    n_stages, trees = seeds.shape
    raw = np.empty((n, trees))
    raw_test = np.empty((len(x_test), trees))
    for k in range(trees):
        raw[:, k] = init[k]
        raw_test[:, k] = init[k]
    importances = np.zeros((n_stages, trees, num_features))
    split = np.zeros((n_stages, trees), dtype=np.bool_)
    neg_gradient = np.empty((trees, n))
    hessian = np.empty((trees, n))
    work = [_work(n, num_features) for _ in range(threads)]
    chunk = (n + threads - 1) // threads
    for stage in range(n_stages):
        for t in numba.prange(threads):
            _gradients(raw, y, num_classes, neg_gradient, hessian, t * chunk,
                       min(n, (t + 1) * chunk))
        for t in numba.prange(threads):
            for k in range(t, trees, threads):
                split[stage, k] = _tree(x, pairs, neg_gradient[k], hessian[k], num_classes,
                                        seeds[stage, k], x_test, learning_rate, raw[:, k],
                                        raw_test[:, k], importances[stage, k], work[t])
    return importances, split, raw, raw_test


@numba.njit(cache=True, nogil=True)
def _gradients(raw, y, num_classes, neg_gradient, hessian, start, end):
    """For samples start..end-1: the negative gradient of the log-loss per tree, and the leaf
    update's hessian prob(1 - prob) with prob recovered from it, as the reference computes
    them."""
    trees = raw.shape[1]
    p = np.empty(trees)
    for i in range(start, end):
        if num_classes == 2:
            target = 1.0 if y[i] == 1 else 0.0
            if raw[i, 0] > -37:
                e = np.exp(-raw[i, 0])
                gradient = ((1 - target) - target * e) / (1 + e)
            else:
                gradient = np.exp(raw[i, 0]) - target
            neg_gradient[0, i] = -gradient
            prob = target - neg_gradient[0, i]
            hessian[0, i] = prob * (1 - prob)
            continue
        largest = raw[i, 0]
        for k in range(1, trees):
            if largest < raw[i, k]:
                largest = raw[i, k]
        total = 0.0
        for k in range(trees):
            p[k] = np.exp(raw[i, k] - largest)
            total += p[k]
        for k in range(trees):
            target = 1.0 if y[i] == k else 0.0
            neg_gradient[k, i] = -(p[k] / total - target)
            prob = target - neg_gradient[k, i]
            hessian[k, i] = prob * (1 - prob)


Work = namedtuple("Work", "pairs go_left leaf samples features constant_features visit cuts "
                          "stack impurities feature threshold left right")


@numba.njit(cache=True, nogil=True)
def _work(n, num_features):
    """Buffers for growing one tree at a time: the sorted samples of the nodes at depth 1 and 2,
    the reference's array of samples, the splitter's state and the tree."""
    return Work(np.empty((2, num_features, n), dtype=np.uint64), np.empty(n, dtype=np.uint8),
                np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int32),
                np.empty(num_features, dtype=np.int64), np.empty(num_features, dtype=np.int64),
                np.empty(num_features, dtype=np.int64), np.empty((num_features, 4)),
                np.empty((MAX_DEPTH + 2, 8), dtype=np.int64), np.empty(MAX_DEPTH + 2),
                np.empty(NODES, dtype=np.int64), np.empty(NODES), np.empty(NODES, dtype=np.int64),
                np.empty(NODES, dtype=np.int64))


@numba.njit(cache=True, nogil=True)
def _tree(x, pairs, y, hessian, num_classes, seed, x_test, learning_rate, raw, raw_test,
          importances, w):
    """Grow one depth-3 regression tree on y as DepthFirstTreeBuilder + BestSplitter do, set its
    leaf values, add them to raw/raw_test and its impurity decreases / n to importances.
    Returns whether the root was split.

    A node's samples sorted along every feature lie in `pairs` (the root) or in w.pairs[0]
    (depth 1) or w.pairs[1] (depth 2), at the node's positions start..end-1, which are also its
    positions in the reference's array of samples, followed in w.samples: sorted along the last
    feature the node sorted, then partitioned in place by its split."""
    num_features, n = x.shape
    state = np.array([seed], dtype=np.int64)
    w.features[:] = np.arange(num_features)
    samples = w.samples
    for i in range(n):
        samples[i] = i
    # stack records: start, end, depth, parent, is_left, n_constant_features, where the node's
    # sorted samples are (-1: pairs, 0/1: w.pairs[0/1]) and a feature whose order lists them
    stack, impurities = w.stack, w.impurities
    _push(stack, impurities, 0, 0, n, 0, -1, 0, 0, -1, 0, np.inf)
    top = 1
    node_count = 0
    while top > 0:
        top -= 1
        start, end, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        parent, is_left, n_known = stack[top, 3], stack[top, 4], stack[top, 5]
        level, row = stack[top, 6], stack[top, 7]
        impurity = impurities[top]
        sorted_pairs = pairs if level < 0 else w.pairs[level]
        node = node_count
        node_count += 1
        if parent >= 0:
            if is_left:
                w.left[parent] = node
            else:
                w.right[parent] = node
        w.feature[node] = -1
        size = end - start
        feature, position, n_constant, last_sorted = -1, end, n_known, -1
        total = square = threshold = impurity_left = impurity_right = 0.0
        if depth < MAX_DEPTH and size >= 2:
            for p in range(start, end):
                value = y[samples[p]]
                total += value
                square += value * value
            if depth == 0:
                impurity = square / size - (total / size) ** 2
            if impurity > EPSILON:
                feature, position, n_constant, last_sorted, bar = _node_split(
                    sorted_pairs, y, start, end, total, square, n_known, state, w)
                if bar > -np.inf:
                    feature, position = _resolve(sorted_pairs, y, start, end, total, bar, w)
        if position < end:
            values = sorted_pairs[feature].view(np.float32)
            threshold = (np.float64(values[2 * position - 1]) / 2.0
                         + np.float64(values[2 * position + 1]) / 2.0)
            last = sorted_pairs[last_sorted].view(np.int32)
            for p in range(start, end):
                samples[p] = last[2 * p]
            impurity_left, impurity_right, improvement = _children_impurity(
                x[feature], y, samples, start, end, threshold, total, square, impurity, n)
            if improvement + EPSILON < 0.0:      # the reference makes it a leaf
                position = end
        if position >= end:
            listed = sorted_pairs[row].view(np.int32)
            for p in range(start, end):
                w.leaf[listed[2 * p]] = node
            continue
        w.feature[node] = feature
        w.threshold[node] = threshold
        importances[feature] += (size * impurity - (position - start) * impurity_left
                                 - (end - position) * impurity_right)
        if depth + 1 < MAX_DEPTH:
            _partition(sorted_pairs, w.pairs[depth % 2], feature, start, position, end,
                       w.go_left)
            level, row = depth % 2, 0
        else:
            row = feature
        _push(stack, impurities, top, position, end, depth + 1, node, 0, n_constant, level, row,
              impurity_right)                                    # the right child comes last
        _push(stack, impurities, top + 1, start, position, depth + 1, node, 1, n_constant, level,
              row, impurity_left)
        top += 2
    for f in range(num_features):
        importances[f] /= n
    value = _leaf_values(y, hessian, num_classes, w.leaf, node_count)
    for i in range(n):
        raw[i] += learning_rate * value[w.leaf[i]]
    for i in range(len(x_test)):
        node = 0
        while w.feature[node] >= 0:
            node = w.left[node] if x_test[i, w.feature[node]] <= w.threshold[node] else \
                w.right[node]
        raw_test[i] += learning_rate * value[node]
    return w.feature[0] >= 0


@numba.njit(cache=True, nogil=True)
def _push(stack, impurities, top, start, end, depth, parent, is_left, n_constant, level, row,
          impurity):
    stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = start, end, depth, parent
    stack[top, 4], stack[top, 5], stack[top, 6], stack[top, 7] = is_left, n_constant, level, row
    impurities[top] = impurity


@numba.njit(cache=True, nogil=True)
def _node_split(sorted_pairs, y, start, end, total, square, n_known, state, w):
    """BestSplitter.node_split_best on a node's sorted samples: its features in the reference's
    random order (Fisher-Yates draws, bookkeeping of constant features), the first strictly best
    split kept. Returns (feature, position of the first right sample or `end` if none, the
    number of constant features for the children, the last feature the reference sorted, and
    -inf, or if other candidates come so close to the best that rounding decides, the bar they
    pass). w.visit lists the features evaluated, in order, as f, or -2 - f if out of the running;
    -1 ends it."""
    num_features = sorted_pairs.shape[0]
    features, constant_features, cuts = w.features, w.constant_features, w.cuts
    # The reference's proxy is at most sum(y^2) and exact to a few ulps, so only candidates
    # within 1e-12 * size * sum(y^2) of the best (in units of ours) can be ranked otherwise.
    margin = 1e-12 * (end - start) * square
    best_feature, best_num, best_den, best_position = -1, -1.0, 1.0, end
    f_i = num_features
    n_found = 0
    n_drawn = 0
    n_total = n_known
    n_visited = 0
    evaluated = 0
    last_sorted = -1
    while f_i > n_total and (n_visited < num_features or n_visited <= n_found + n_drawn):
        n_visited += 1
        f_j = _rand_int(state, n_drawn, f_i - n_found)
        if f_j < n_known:
            features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
            n_drawn += 1
            continue
        f_j += n_found
        f = features[f_j]
        last_sorted = f
        values = sorted_pairs[f].view(np.float32)
        if values[2 * end - 1] <= values[2 * start + 1] + FEATURE_THRESHOLD:
            features[f_j], features[n_total] = features[n_total], features[f_j]
            n_found += 1
            n_total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        _best_cut(sorted_pairs[f], y, start, end, total, margin, cuts[f])
        w.visit[evaluated] = f
        evaluated += 1
        if cuts[f, 0] * best_den > best_num * cuts[f, 1]:
            best_feature, best_num, best_den = f, cuts[f, 0], cuts[f, 1]
            best_position = int(cuts[f, 2])
    features[:n_known] = constant_features[:n_known]
    constant_features[n_known:n_known + n_found] = features[n_known:n_known + n_found]
    if evaluated < num_features:
        w.visit[evaluated] = -1
    if best_feature < 0:
        return best_feature, best_position, n_total, last_sorted, -np.inf
    bar = best_num / best_den - margin
    contenders = 0
    for j in range(evaluated):
        f = w.visit[j]
        if cuts[f, 0] / cuts[f, 1] >= bar:
            contenders += 1 + cuts[f, 3]
        else:
            w.visit[j] = -2 - f
    return best_feature, best_position, n_total, last_sorted, bar if contenders > 1 else -np.inf


@numba.njit(cache=True, nogil=True)
def _best_cut(sorted_pairs, y, start, end, total, margin, cut):
    """The first best split of a node along one feature: candidates lie between consecutive
    values more than 1e-7 apart (in float32), ranked by (size * left_sum - total *
    left_count)^2 / (left_count * right_count), the squared-error proxy less the node's
    constant, times the node's size. Sets cut to (numerator, denominator, position of the first
    right sample, 1 if another candidate comes within `margin` of it else 0). This is the
    innermost loop: unsigned positions spare numba's checks for negative indices, and the
    comparisons are multiplied out."""
    values = sorted_pairs.view(np.float32)
    low = np.uint64(0xFFFFFFFF)
    first = np.uint64(start)
    size = float(end - start)
    best_num, best_den, best_position = -1.0, 1.0, end
    bar_num = -1.0                              # bar_num / best_den = best - margin
    close = False
    left_sum = y[sorted_pairs[first] & low]
    last = values[2 * first + 1]
    for p in range(first + 1, np.uint64(end)):
        v = values[2 * p + 1]
        count = float(p - first)
        diff = size * left_sum - total * count
        num = diff * diff
        den = count * (size - count)
        # the rarely passed test first: the value test alone mispredicts where values are close
        if num * best_den > bar_num * den and v > last + FEATURE_THRESHOLD:
            if num * best_den > best_num * den:
                close = best_num * den >= (num - margin * den) * best_den
                best_num, best_den, best_position = num, den, p
                bar_num = num - margin * den
            else:
                close = True
        left_sum += y[sorted_pairs[p] & low]
        last = v
    cut[0], cut[1], cut[2], cut[3] = best_num, best_den, best_position, close


@numba.njit(cache=True, nogil=True)
def _resolve(sorted_pairs, y, start, end, total, bar, w):
    """The split the reference picks among the contending features (in the drawn order): at
    every candidate that passes `bar` (in the units of _best_cut), its proxy sum_left^2 / n_left +
    sum_right^2 / n_right, with sum_left updated as its criterion updates it (from the nearer
    end); first strictly best kept."""
    size = float(end - start)
    best, best_feature, best_position = -np.inf, -1, end
    for j in range(len(w.visit)):
        f = w.visit[j]
        if f == -1:
            break
        if f < 0:
            continue
        samples, values = sorted_pairs[f].view(np.int32), sorted_pairs[f].view(np.float32)
        left_sum = 0.0
        position = start
        p = start
        while p < end:
            p += 1
            while p < end and values[2 * p + 1] <= values[2 * p - 1] + FEATURE_THRESHOLD:
                p += 1
            if p >= end:
                break
            if p - position <= end - p:
                for q in range(position, p):
                    left_sum += y[samples[2 * q]]
            else:
                left_sum = total
                for q in range(end - 1, p - 1, -1):
                    left_sum -= y[samples[2 * q]]
            position = p
            count = float(p - start)
            diff = size * left_sum - total * count
            if diff * diff < bar * (count * (size - count)):
                continue
            right_sum = total - left_sum
            proxy = left_sum * left_sum / count + right_sum * right_sum / (end - p)
            if proxy > best:
                best, best_feature, best_position = proxy, f, p
    return best_feature, best_position


@numba.njit(cache=True, nogil=True)
def _children_impurity(xf, y, samples, start, end, threshold, total, square, impurity, n):
    """Partition samples[start:end] in place as the reference's partition_samples_final does;
    return the children's impurities and the weighted impurity improvement as its MSE criterion
    computes them (sum_left updated from the nearer end)."""
    left, right = start, end
    while left < right:
        if xf[samples[left]] <= threshold:
            left += 1
        else:
            right -= 1
            samples[left], samples[right] = samples[right], samples[left]
    position = left
    if position - start <= end - position:
        left_total = 0.0
        for p in range(start, position):
            left_total += y[samples[p]]
    else:
        left_total = total
        for p in range(end - 1, position - 1, -1):
            left_total -= y[samples[p]]
    left_square = 0.0
    for p in range(start, position):
        left_square += y[samples[p]] * y[samples[p]]
    size, left_count = float(end - start), float(position - start)
    right_count = size - left_count
    right_total = total - left_total
    impurity_left = left_square / left_count - (left_total / left_count) ** 2
    impurity_right = (square - left_square) / right_count - (right_total / right_count) ** 2
    improvement = (size / n) * (impurity - right_count / size * impurity_right
                                - left_count / size * impurity_left)
    return impurity_left, impurity_right, improvement


@numba.njit(cache=True, nogil=True)
def _rand_int(state, low, high):
    """sklearn.tree._utils.rand_int with our_rand_r (xorshift32); state is a 1-element array."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s & RAND_R_MAX) % (high - low)


@numba.njit(cache=True, nogil=True)
def _partition(sorted_pairs, to, feature, start, position, end, go_left):
    """Stable partition of every feature's sorted samples in [start, end) into the left child's
    (the first position - start samples in `feature`'s order) and the right child's
    (branch-free, unsigned positions)."""
    samples = sorted_pairs[feature].view(np.int32)
    for p in range(start, end):
        go_left[samples[2 * p]] = p < position
    low, one = np.uint64(0xFFFFFFFF), np.uint64(1)
    for f in range(sorted_pairs.shape[0]):
        source, target = sorted_pairs[f], to[f]
        left, right = np.uint64(start), np.uint64(position)
        for p in range(np.uint64(start), np.uint64(end)):
            pair = source[p]
            go = np.uint64(go_left[pair & low])
            target[right + (left - right) * go] = pair
            left += go
            right += one - go


@numba.njit(cache=True, nogil=True)
def _leaf_values(y, hessian, num_classes, leaf, node_count):
    """Newton step per leaf as the reference's _update_terminal_regions: mean(y) / mean(hessian)
    over the leaf's samples in sample order (numpy's pairwise sums), x (K-1)/K for K > 2."""
    n = len(y)
    counts = np.zeros(node_count + 1, dtype=np.int64)
    for i in range(n):
        counts[leaf[i] + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:-1].copy()
    by_leaf = np.empty(n)
    by_leaf_hessian = np.empty(n)
    for i in range(n):
        by_leaf[fill[leaf[i]]] = y[i]
        by_leaf_hessian[fill[leaf[i]]] = hessian[i]
        fill[leaf[i]] += 1
    value = np.zeros(node_count)
    for t in range(node_count):
        count = offsets[t + 1] - offsets[t]
        if count == 0:
            continue
        numerator = _pairwise_sum(by_leaf, offsets[t], count) / count
        if num_classes > 2:
            numerator *= (num_classes - 1) / num_classes
        denominator = _pairwise_sum(by_leaf_hessian, offsets[t], count) / count
        value[t] = 0.0 if abs(denominator) < 1e-150 else numerator / denominator
    return value


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(a, start, n):
    """np.sum(a[start:start + n]) to the bit: numpy's pairwise summation."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += a[i]
        return total
    if n <= 128:
        r = a[start:start + 8].copy()
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += a[start + i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += a[start + i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, start, half) + _pairwise_sum(a, start + half, n - half)
