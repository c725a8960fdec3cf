"""What metric values mean: every metric on known codes over dSprites' factor grid.

    python -m disentbench.bench.metric_meaning           # study sizes: 1.5 min on 2 CPU cores
    python -m disentbench.bench.metric_meaning --size quick --out docs/metric-values.md

The codes, of the factor indices f (dSprites' sizes 3, 6, 40, 32, 32), with each factor
standardised, zn_j = (f_j - (K_j - 1)/2) / sqrt((K_j^2 - 1)/12):
- perfect: z = zn, one code dimension per factor (D = 5);
- perfect + 5 constant: the same with 5 more dimensions fixed at 0, as the collapsed
  dimensions of a trained VAE with 10 latent dimensions (D = 10);
- rotated: z = zn R^T, R a fixed random rotation (QR of RandomState(1234).randn(5, 5)):
  every factor spread over every dimension, all information kept (D = 5);
- noise: z ~ N(0, I) drawn once per image, independent of the factors (D = 10).
perfect and rotated are the metric oracle's `dsprites_like` cases, whose values the tests check
against disentanglement_lib's own (tests/test_metrics_oracle.py).
"""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

import numpy as np

from disentbench import metrics

FACTOR_SIZES = (3, 6, 40, 32, 32)       # dSprites' shape, scale, orientation, x, y
NOISE_DIM = 10

# Why a value surprises: metric/key -> the explanation printed under the table.
NOTES = {
    "beta-vae/eval_accuracy": "A rotated code still scores 0.99: the classifier sees the mean "
                              "absolute code difference of pairs sharing one factor, which a "
                              "rotation mixes but does not hide. Noise scores chance, 1/5 "
                              "(five factors); so does FactorVAE's score.",
    "dci-fast/informativeness_test": "Informativeness is a classification accuracy of boosted "
                                     "trees (dci-fast gives the reference dci's values). Noise's "
                                     "0.12 is chance averaged over the factors, (1/3 + 1/6 + "
                                     "1/40 + 1/32 + 1/32) / 5 = 0.12; its training accuracy "
                                     "(0.53) is the trees overfitting. The rotated code keeps "
                                     "every factor but loses test accuracy: axis-aligned trees "
                                     "fit oblique boundaries poorly.",
    "factor-vae/dlib_num_active_dims": "The reference reports the number of all code "
                                       "dimensions under num_active_dims; num_active_dims here "
                                       "counts those above the pruning threshold.",
    "irs/IRS": "Noise scores 0.38, not 0: a dimension's score is 1 minus its 99th-percentile "
               "spread within a factor's value over its largest deviation overall, and for "
               "noise the first is below the second.",
    "irs/dlib_num_active_dims": "Not a count: the reference reports the sum of the active code "
                                "values under the key num_active_dims (kept here as "
                                "dlib_num_active_dims; num_active_dims is the real count), so "
                                "any number, negative ones included, is possible.",
    "mig/discrete_mig": "A perfect code scores 0.90, not 1: codes are binned into 20 bins, fewer "
                        "than orientation's 40 and position's 32 values, so the binned code "
                        "keeps only part of those factors' entropy.",
    "modularity-explicitness/modularity_score": "Modularity squares each dimension's mutual "
                                                "information, so a dimension whose largest "
                                                "factor is moderately ahead of the others "
                                                "already looks modular: rotated 0.96, noise "
                                                "0.67. A constant dimension counts 0 (the "
                                                "reference's rule): 5 collapsed dimensions of "
                                                "10 halve a perfect code's score.",
    "modularity-explicitness/explicitness_score_test": "A one-vs-rest ROC AUC, whose chance "
                                                       "level is 0.5, not 0. With a constant "
                                                       "dimension it is NaN (train and test): "
                                                       "the reference divides by that "
                                                       "dimension's zero standard deviation "
                                                       "and crashes; here NaN with a warning.",
    "sap/SAP_score": "A perfect code scores 0.24: a 1-D linear SVM (C = 0.01, balanced classes) "
                     "cannot separate up to 40 classes along one dimension, so even the right "
                     "dimension predicts a many-valued factor poorly and the gap to the second "
                     "best is small. sap-continuous (squared correlation) gives 1.",
    "unsupervised/gaussian_total_correlation": "The Gaussian scores see only the covariance, and "
                                               "a rotation of independent standardised factors "
                                               "keeps it the identity: the rotated code scores "
                                               "as well as the perfect one (≈ 0). Only "
                                               "mutual_info_score (0.053 against 0.007) sees "
                                               "the entanglement.",
}


def _standardised(factors: np.ndarray) -> np.ndarray:
    sizes = np.asarray(FACTOR_SIZES, dtype=np.float64)
    return (factors - (sizes - 1) / 2) / np.sqrt((sizes ** 2 - 1) / 12)


def rotation(dim: int = len(FACTOR_SIZES)) -> np.ndarray:
    """The oracle's fixed rotation: Q * sign(diag(R)) of QR(RandomState(1234).randn(dim, dim))."""
    q, r = np.linalg.qr(np.random.RandomState(1234).randn(dim, dim))
    return q * np.sign(np.diag(r))


def codes() -> dict:
    """Case name -> represent(factors as float) -> codes."""
    noise = np.random.RandomState(0).standard_normal((math.prod(FACTOR_SIZES), NOISE_DIM))
    rotate = rotation()

    def noise_code(x):
        return noise[np.ravel_multi_index(x.astype(np.int64).T, FACTOR_SIZES)]
    return {"perfect": _standardised,
            "perfect + 5 constant": lambda x: np.c_[_standardised(x), np.zeros((len(x), 5))],
            "rotated": lambda x: _standardised(x) @ rotate.T,
            "noise": noise_code}


class FactorGrid:
    """dSprites' factor grid whose observations are the factor indices themselves."""
    factor_sizes = FACTOR_SIZES

    def sample_factors(self, n, random_state):
        return np.stack([random_state.randint(k, size=n) for k in FACTOR_SIZES], axis=1)

    def observations_from_factors(self, factors, random_state):
        return np.asarray(factors, dtype=np.float64)


def table(size: str = "default", seed: int = 0) -> dict:
    """{case: {"metric/key": value}} for every metric of `metrics.default_metrics()`."""
    found = {}
    for case, represent in codes().items():
        with warnings.catch_warnings():           # explicitness's NaN warning: the note says why
            warnings.simplefilter("ignore", RuntimeWarning)
            values = metrics.evaluate(FactorGrid(), represent, size=size, seed=seed)
        found[case] = {f"{m}/{k}": v for m, keys in values.items() for k, v in keys.items()}
    return found


def markdown(found: dict, size: str) -> str:
    cases = list(found)
    keys = list(found[cases[0]])
    lines = [f"| metric / key | {' | '.join(cases)} |", "|---" * (len(cases) + 1) + "|"]
    for key in keys:
        cells = [_cell(found[c][key]) for c in cases]
        mark = " ¹" if _note(key) else ""
        lines.append(f"| `{key}`{mark} | {' | '.join(cells)} |")
    notes = [f"- `{key}`: {_note(key)}" for key in keys if _note(key)]
    return "\n".join([
        "# What metric values mean",
        "",
        f"Every metric on four known codes over dSprites' factor grid (sizes "
        f"{', '.join(map(str, FACTOR_SIZES))}), at the {size} sample sizes, seed 0. Generated "
        f"by `python -m disentbench.bench.metric_meaning --size {size} --out "
        f"docs/metric-values.md`; the codes are described in that module's docstring: *perfect* "
        f"(one standardised factor per dimension), *perfect + 5 constant* (as a 10-dimensional "
        f"VAE with 5 collapsed dimensions), *rotated* (a fixed rotation of the perfect code: "
        f"entangled, nothing lost) and *noise* (10 dimensions independent of the factors).",
        "",
        *lines,
        "",
        "¹ Values that surprise, and why the reference (disentanglement_lib) gives them:",
        "",
        *notes,
        ""])


def _note(key: str) -> str | None:
    """The note on `key`; the reference `dci` shares dci-fast's (they give the same values)."""
    return NOTES.get(key) or NOTES.get(key.replace("dci/", "dci-fast/"))


def _cell(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "NaN" if math.isnan(value) else f"{value:.3g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disentbench.bench.metric_meaning",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", choices=metrics.SIZES,
                        help="metric sample sizes: the study's (default) or the quick set")
    parser.add_argument("--out", default=None, help="write the Markdown there (default: print)")
    args = parser.parse_args(argv)
    text = markdown(table(args.size), args.size)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
