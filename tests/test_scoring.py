"""The scoring API (`metrics.evaluate`, `metrics.score`): the README's section runs as written,
encodings are shared, and bad input stops with one message naming the fix."""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from disentbench import metrics
from disentbench.metrics.utils import Sample
from tests.helpers import tiny_dsprites_like

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title: str) -> str:
    """The first python block under the README heading `title`."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_scoring_section_runs(capsys):
    exec(compile(readme_section("Scoring your own model"), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2
    assert "discrete_mig" in printed[0] and "SAP_score" in printed[0]
    assert "explicitness_score_test" in printed[1]


@pytest.fixture(scope="module")
def tiny():
    return tiny_dsprites_like()


def flat_encoder(data):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * 64, 6))
    return lambda images: net(data.to_float(images))      # requires grad


def test_evaluate_equals_compute_and_encodes_once(tiny):
    represent = flat_encoder(tiny)
    calls = []
    counted = lambda images: calls.append(len(images)) or represent(images)   # noqa: E731
    table = metrics.evaluate(tiny, counted, ["mig", "irs"], size="quick", seed=3)
    assert sum(calls) <= len(tiny)                   # each observation encoded at most once
    with torch.no_grad():
        plain = lambda images: represent(images).numpy()  # noqa: E731
        assert table["mig"] == metrics.compute("mig", tiny, plain, seed=3, size="quick")
        assert table["irs"] == metrics.compute("irs", tiny, plain, seed=3, size="quick")


def test_score_of_a_perfect_code_and_of_noise():
    rs = np.random.RandomState(0)
    factors = np.stack([rs.randint(k, size=3000) for k in (3, 6, 10)], 1)
    perfect = metrics.score(factors.astype(float), factors, ["mig", "dci"])
    assert perfect["mig"]["discrete_mig"] > 0.99      # 1 less the plug-in MI of independent rows
    assert perfect["dci"]["disentanglement"] > 0.99
    noise = metrics.score(rs.randn(3000, 3), factors, ["mig"])
    assert noise["mig"]["discrete_mig"] < 0.01


def test_sample_hands_out_disjoint_shuffled_rows():
    codes, factors = np.arange(20.0)[:, None], np.arange(20)[:, None] % 4
    sample = Sample(codes, factors, seed=0)
    first, _ = sample.take(12)
    second, _ = sample.take(8)
    assert sorted(np.r_[first[:, 0], second[:, 0]]) == list(range(20))
    assert list(first[:, 0]) != list(range(12))
    with pytest.raises(ValueError, match="the sample has 20 rows"):
        sample.take(1)


@pytest.mark.parametrize("codes, factors, message", [
    (np.zeros((30, 2)), np.full((30, 2), 0.5), r"expected factor indices .* np.unique"),
    (np.zeros((30, 2)), -np.ones((30, 2), int), "negative factor indices"),
    (np.zeros((29, 2)), np.ones((30, 2), int), r"codes must be an array \(n, D\)"),
    (np.full((30, 2), np.nan), np.arange(60).reshape(30, 2) % 3, "finite numbers; got NaN"),
    (np.zeros((30, 2)), np.ones((30, 2), int), r"factors \[0, 1\] take one value"),
    (np.zeros((5, 2)), np.arange(10).reshape(5, 2), "at least 10 rows"),
])
def test_score_rejects_bad_input(codes, factors, message):
    with pytest.raises(ValueError, match=message):
        metrics.score(codes, factors, ["mig"])


def test_score_refuses_interventional_metrics_and_unknown_names():
    factors = np.arange(60).reshape(30, 2) % 3
    with pytest.raises(ValueError, match=r"beta-vae cannot score a given sample.*evaluate"):
        metrics.score(factors * 1.0, factors, ["mig", "beta-vae"])
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        metrics.score(factors * 1.0, factors, ["nope"])
    many = np.arange(600).reshape(300, 2) % 3
    assert set(metrics.score(many + 0.1, many, "all")) == {
        name for name in metrics.available() if name not in ("beta-vae", "factor-vae")}


class ValuedData:
    """A user's data whose sample_factors returns factor values, not indices."""
    factor_sizes = (3, 4)

    def sample_factors(self, n, random_state):
        return random_state.uniform(0.1, 0.9, size=(n, 2))

    def observations_from_factors(self, factors, random_state):
        return factors


def test_evaluate_names_factor_values_and_out_of_range_indices(tiny):
    with pytest.raises(ValueError, match=r"data.sample_factors: expected factor indices"):
        metrics.evaluate(ValuedData(), lambda x: x, ["mig"])
    too_big = ValuedData()
    too_big.sample_factors = lambda n, rs: np.full((n, 2), 3)
    with pytest.raises(ValueError, match=r"index 3 for factor 0, whose size is 3"):
        metrics.evaluate(too_big, lambda x: x, ["mig"])
    with pytest.raises(TypeError, match="data has no observations_from_factors"):
        metrics.evaluate(object.__new__(type("D", (), {"factor_sizes": (2,),
                                                       "sample_factors": None})), len, ["mig"])


def test_evaluate_rejects_nan_codes(tiny):
    with pytest.raises(ValueError, match=r"represent\(\) must return finite numbers"):
        metrics.evaluate(tiny, lambda x: torch.full((len(x), 3), float("nan")), ["mig"],
                         size="quick")


def test_constant_code_dims_warn_in_explicitness():
    rs = np.random.RandomState(0)
    factors = np.stack([rs.randint(k, size=600) for k in (3, 5)], 1)
    codes = np.c_[factors + 0.1 * rs.randn(600, 2), np.zeros(600)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = metrics.score(codes, factors, ["modularity-explicitness"])
    assert np.isnan(values["modularity-explicitness"]["explicitness_score_test"])
    assert any("constant" in str(w.message) for w in caught)


def test_score_takes_a_tensor_that_requires_grad():
    rs = np.random.RandomState(0)
    factors = np.stack([rs.randint(k, size=300) for k in (3, 4)], 1)
    codes = torch.tensor(factors + 0.1 * rs.randn(300, 2), requires_grad=True)
    assert metrics.score(codes, factors, ["mig"]) == metrics.score(codes.detach().numpy(),
                                                                   factors, ["mig"])
