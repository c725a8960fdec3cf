"""UDR (metrics/udr.py) against disentanglement_lib's own `compute_udr_sklearn` values
(../shared/udr_oracle), plus its properties and its error messages.

Our sampling replays dlib's RandomState calls (batches of 10, one randint per factor column) and
the correlations are sklearn's Lasso(alpha=0.1) and scipy's spearmanr, so every value agrees to
rounding with the scikit-learn the oracle was recorded with (measured: |Δ| = 0 on every case;
compared to EXACT = 1e-12). Where dlib crashes, asserts or returns NaN we raise a clear error.
"""
import hashlib
import json

import numpy as np
import pytest
import sklearn
import torch

from disentbench.metrics.udr import compute_udr, sample_observations, udr_from_codes
from tests import udr_oracle_cases as uc
from tests.conftest import shared_path
from tests.oracle_cases import SyntheticData

EXACT = 1e-12
# dlib's behaviour -> the error we raise instead (a phrase of its message)
OUR_ERRORS = {"edge|single_model": "at least 2", "edge|all_collapsed_filter": "no active latent",
              "edge|latent_dim_mismatch": "different latent sizes",
              "edge|not_multiple_of_batch": "multiple of batch_size"}


def _stored(section: str, **where) -> list:
    """The keys of the oracle's `section` (those whose fields equal `where`) to parametrise a
    test, slow where n > 1000; [None] when the oracle is absent (the `reference` fixture then
    skips with the reason)."""
    path = shared_path() / "udr_oracle" / "reference_values.json"
    if not path.is_file():
        return [None]
    items = json.loads(path.read_text())[section]
    return [pytest.param(item["key"], id=item["key"],
                         marks=[pytest.mark.slow] if item.get("num_data_points", 0) > 1000 else [])
            for item in items if all(item[k] == v for k, v in where.items())]


@pytest.fixture(scope="module")
def reference(shared_dir):
    path = shared_dir / "udr_oracle" / "reference_values.json"
    if not path.is_file():
        pytest.skip(f"UDR oracle values not found at {path}")
    values = uc.oracle(shared_dir)
    recorded = values["environments"]["modern"]["scikit-learn"]
    if recorded.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        pytest.skip(f"the UDR oracle was recorded with scikit-learn {recorded}, whose Lasso "
                    f"solver its exact values depend on; this is {sklearn.__version__}")
    return values


def entry(reference, section, key):
    return next(item for item in reference[section] if item["key"] == key)


def test_models_match_their_check_points(reference):
    for dataset in reference["datasets"].values():
        for spec in dataset["models"]:
            points = spec["check_points"]
            mean, logvar = uc.model(dataset["factor_sizes"], spec)(
                np.array(points["factors"], dtype=np.float64))
            np.testing.assert_array_equal(mean, points["mean"])
            np.testing.assert_array_equal(logvar, points["logvar"])


@pytest.mark.parametrize("key", _stored("runs"))
def test_udr_equals_dlib(reference, key):
    run = entry(reference, "runs", key)
    params = run["hyperparameters"]
    raw_entry = next((r for r in reference["raw_correlations"]
                      if r["key"] == run["raw_correlations_ref"] and r["stored"]), None)
    ours = compute_udr(uc.data_of(reference, run["dataset"], run["mode"]),
                       uc.models_of(reference, run["dataset"], run["models"]),
                       seed=run["seed"], **params | {"include_raw_correlations": bool(raw_entry)})
    expected = run["result"]
    np.testing.assert_allclose(ours["model_scores"], uc.values(expected["model_scores"]),
                               rtol=0, atol=EXACT)
    np.testing.assert_allclose(ours["pairwise_disentanglement_scores"],
                               uc.values(expected["pairwise_disentanglement_scores"]),
                               rtol=0, atol=EXACT)
    if raw_entry:                                              # NaN where dlib has NaN
        np.testing.assert_allclose(ours["raw_correlations"],
                                   uc.values(raw_entry["raw_correlations"]), rtol=0, atol=EXACT)


@pytest.mark.parametrize("key", _stored("runs", mode="sampled"))
def test_sampling_replays_dlibs_rows(reference, key):
    run = entry(reference, "runs", key)
    data = uc.data_of(reference, run["dataset"])
    random_state = np.random.RandomState(run["seed"])
    rows = np.concatenate([sample_observations(data, 10, random_state)
                           for _ in range(run["num_data_points"] // 10)]).astype("<i8")
    assert rows[:12].tolist() == run["sampled_rows"]["first_rows"]
    assert hashlib.sha256(rows.tobytes()).hexdigest() == run["sampled_rows"]["sha256_int64_le"]


@pytest.mark.parametrize("key", _stored("edge_cases"))
def test_edge_cases(reference, key):
    case = entry(reference, "edge_cases", key)
    try:
        models = uc.models_of(reference, case["dataset"], case["models"])
    except KeyError as err:
        pytest.skip(f"{key}: model {err} is described only in words; not rebuilt here")
    call = lambda: compute_udr(uc.data_of(reference, case["dataset"]), models,  # noqa: E731
                               seed=case["seed"], **case["kwargs"])
    if key in OUR_ERRORS:
        with pytest.raises(ValueError, match=OUR_ERRORS[key]):
            call()
        return
    assert "error" not in case, f"dlib raised {case['error']}; add our message to OUR_ERRORS"
    ours = call()
    np.testing.assert_allclose(ours["model_scores"], uc.values(case["result"]["model_scores"]),
                               rtol=0, atol=EXACT)
    np.testing.assert_allclose(ours["pairwise_disentanglement_scores"],
                               uc.values(case["result"]["pairwise_disentanglement_scores"]),
                               rtol=0, atol=EXACT)


# ---- properties, without the oracle ------------------------------------------------------------

SIZES = (3, 6, 10, 8)


def aligned(order, signs, noise_stream, nonlinearity="identity", rotation=None, extra=2):
    """An oracle-style model (tests/udr_oracle_cases.model): latent i encodes factor order[i]
    (times signs[i]) or, with `rotation`, a rotation of all factors; `extra` collapsed latents."""
    dim = len(SIZES) + extra
    A = np.zeros((dim, len(SIZES)))
    if rotation is None:
        A[np.arange(len(order)), order] = signs
    else:
        A[:len(SIZES)] = rotation
    active = [0.05] * len(SIZES) + [0.02] * extra
    return uc.model(SIZES, {"A": A.tolist(), "nonlinearity": [nonlinearity] * dim,
                            "mean_noise_sigma": active, "noise_stream": noise_stream,
                            "logvar_const": [-3.0] * len(SIZES) + [0.0] * extra,
                            "logvar_noise_tau": active})


def permuted(model, order, signs):
    """`model` with its latents reordered and sign-flipped: the same representation."""
    def represent(x):
        mean, logvar = model(x)
        return mean[:, order] * signs, logvar[:, order]
    return represent


ROTATION = np.linalg.qr(np.random.RandomState(7).randn(len(SIZES), len(SIZES)))[0]


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_a_permuted_copy_scores_as_its_original_and_a_rotated_one_lower(correlation):
    original = aligned([0, 1, 2, 3], [1, 1, 1, 1], 0)
    models = [original, aligned([2, 0, 3, 1], [1, -1, 1, 1], 1),
              aligned([3, 2, 1, 0], [-1, 1, 1, -1], 2, "tanh2"),
              permuted(original, [5, 3, 0, 4, 2, 1], np.array([1, -1, 1, 1, -1, 1])),
              aligned(None, None, 3, rotation=ROTATION)]
    scores = compute_udr(SyntheticData(SIZES), models, seed=1,
                         correlation_matrix=correlation)["model_scores"]
    assert scores[3] == pytest.approx(scores[0], abs=2e-3)
    assert min(scores[:4]) > 0.8 and scores[4] < min(scores[:4]) - 0.3


def test_model_scores_are_the_median_of_their_column():
    rng = np.random.RandomState(0)
    factors = rng.randn(500, 3)
    means = [factors, factors[:, [2, 0, 1]] + 0.3 * rng.randn(500, 3),
             factors @ np.linalg.qr(rng.randn(3, 3))[0], rng.randn(500, 3)]
    result = udr_from_codes(means, [np.ones(3)] * 4, include_raw_correlations=False)
    pairwise = np.array(result["pairwise_disentanglement_scores"])[..., 0]
    for i in range(4):
        assert result["model_scores"][i] == np.median(np.delete(pairwise[:, i], i))
    assert not np.allclose(pairwise, pairwise.T)                       # Lasso is asymmetric
    assert "raw_correlations" not in result


def test_a_suite_dataset_and_torch_models_are_accepted():
    from disentbench.bench.nets import VAE
    from tests.helpers import tiny_dsprites_like
    data = tiny_dsprites_like()
    torch.manual_seed(0)
    nets = [VAE(1, 3).eval() for _ in range(3)]

    def encoder(net):
        def represent(images):
            with torch.no_grad():
                return net.encode(data.to_float(images))
        return represent
    result = compute_udr(data, [encoder(n) for n in nets], num_data_points=100,
                         filter_low_kl=False)
    assert len(result["model_scores"]) == 3
    assert np.array(result["raw_correlations"]).shape == (3, 3, 3, 3)


def test_dlibs_quirks_by_hand():
    """Two copies of codes (N, 2) whose second latent has KL 0.005: dlib zeroes it whatever the
    filter threshold (0.01 is hard-coded), so below that threshold it stays in as a zero row
    and column: a Lasso copy scores 0.9 (the L1 shrinkage of a perfect copy) on one of two
    terms, 0.45. Without the filter, Spearman's constant latent gives NaN, and a NaN anywhere in
    a row or column makes that term 0: every model scores 0."""
    codes = np.random.RandomState(0).randn(1000, 2)
    kl = np.array([1.0, 0.005])
    lasso = udr_from_codes([codes, codes], [kl, kl], kl_filter_threshold=0.001)
    np.testing.assert_allclose(lasso["model_scores"], [0.45, 0.45], atol=1e-6)
    spearman = udr_from_codes([codes, codes], [kl, kl], correlation_matrix="spearman",
                              filter_low_kl=False)
    assert spearman["model_scores"] == [0.0, 0.0]
    assert np.isnan(spearman["raw_correlations"][0][1][1]).all()


# ---- errors: one clear message where dlib asserts, crashes or returns NaN -----------------------

CODES = np.random.RandomState(0).randn(100, 3)


@pytest.mark.parametrize("means, kls, options, message", [
    ([CODES], [np.ones(3)], {}, r"got 1 model\(s\), give at least 2"),
    ([CODES, CODES[:, :2]], [np.ones(3), np.ones(2)], {},
     r"different latent sizes \(model 0: 3, model 1: 2\)"),
    ([CODES, CODES[:50]], [np.ones(3)] * 2, {}, "the same inputs"),
    ([CODES, CODES], [np.ones(3), np.full(3, 0.005)], {},
     r"model 1 has no active latent: every latent's KL is <= kl_filter_threshold=0.01 "
     r"\(largest 0.005 nats\), so its posterior has collapsed"),
    ([CODES, CODES * np.nan], [np.ones(3)] * 2, {}, "model 1's means or KL hold NaN"),
    ([CODES, CODES], [np.ones(3)] * 2, {"correlation_matrix": "pearson"},
     "unknown correlation_matrix 'pearson'; valid: lasso, spearman"),
])
def test_bad_input_is_one_clear_error(means, kls, options, message):
    with pytest.raises(ValueError, match=message):
        udr_from_codes(means, kls, **options)


def test_a_collapsed_model_without_the_filter_scores_zero():
    result = udr_from_codes([CODES, CODES, CODES], [np.ones(3), np.ones(3), np.full(3, 0.005)],
                            filter_low_kl=False)
    assert result["model_scores"][2] == 0


def test_num_data_points_must_fill_whole_batches():
    with pytest.raises(ValueError, match=r"num_data_points \(1005\) must be a multiple of "
                                         r"batch_size \(10\)"):
        compute_udr(SyntheticData(SIZES), [aligned([0, 1, 2, 3], [1] * 4, 0)] * 2,
                    num_data_points=1005)
