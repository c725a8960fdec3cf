"""bench/evaluate.py: the model's representation, reconstruction on hand-built values, the
evaluation record and metrics.json."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from disentbench.bench.data.base import GroundTruthData
from disentbench.bench.evaluate import evaluate, make_representation, reconstruction, write_metrics
from disentbench.bench.nets import VAE


def tiny_data(sizes=(2, 3, 4)):
    n = math.prod(sizes)
    images = torch.from_numpy(np.random.RandomState(0).randint(0, 2, (n, 1, 64, 64))
                              .astype(np.uint8))
    return GroundTruthData("tiny", [f"f{i}" for i in range(len(sizes))], sizes, images, pixel_max=1)


class HandBuilt(nn.Module):
    """Encoder: mu = (1, 2), logvar = (0, log 4) for every image; decoder: logits 0."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def encode(self, x):
        n = len(x)
        return torch.tensor([1.0, 2.0]).expand(n, 2), torch.tensor([0.0, math.log(4)]).expand(n, 2)

    def decode(self, z):
        return torch.zeros(len(z), 1, 64, 64)


def test_reconstruction_on_hand_built_values():
    values = reconstruction(HandBuilt(), tiny_data(), num_images=50, batch_size=16)
    kl = 0.5 * (1 + 1 - 0 - 1) + 0.5 * (4 + 4 - math.log(4) - 1)   # per dim, summed
    rec = 64 * 64 * math.log(2)       # BCE of logit 0 is log 2 for any pixel, summed
    assert values["kl"] == pytest.approx(kl, rel=1e-6)
    assert values["reconstruction_loss"] == pytest.approx(rec, rel=1e-6)
    assert values["negative_elbo"] == pytest.approx(rec + kl, rel=1e-6)
    # the decoder's mean is sigmoid(0) = ½ everywhere: squared error ¼ per pixel
    assert values["squared_error"] == pytest.approx(64 * 64 / 4, rel=1e-6)


def test_reconstruction_with_a_gaussian_decoder_uses_squared_error():
    data = tiny_data()
    values = reconstruction(HandBuilt(), data, num_images=50, batch_size=16,
                            likelihood="gaussian")
    # decoder mean 0: the squared error is the number of lit pixels of each image
    factors = data.sample_factors(50, np.random.RandomState(0))
    lit = data.to_float(data.images_from_factors(factors)).sum().item() / 50
    assert values["reconstruction_loss"] == pytest.approx(lit, rel=1e-6)
    assert values["squared_error"] == pytest.approx(lit, rel=1e-6)
    with pytest.raises(ValueError, match="unknown likelihood"):
        reconstruction(HandBuilt(), data, num_images=4, likelihood="poisson")


def test_make_representation_is_the_posterior_mean_in_batches():
    torch.manual_seed(0)
    model, data = VAE(1, 4), tiny_data()
    images = data.images_from_factors(data.sample_factors(24, np.random.RandomState(1)))
    codes = make_representation(model, data, batch_size=5)(images)
    with torch.no_grad():
        expected = model.encode(data.to_float(images))[0].numpy()
    assert codes.shape == (24, 4) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)


def test_evaluate_records_values_sizes_and_seconds(tmp_path):
    torch.manual_seed(0)
    data = tiny_data()
    result = evaluate(data, model=VAE(1, 3), names=["mig", "sap-continuous", "reconstruction"],
                      seed=3, size="quick")
    assert result["seed"] == 3 and result["size"] == "quick"
    mig = result["metrics"]["mig"]
    assert set(mig["values"]) == {"discrete_mig"}
    assert mig["params"] == {"num_train": 2000, "batch_size": 16, "num_bins": 20}
    assert mig["observations"]["requested"] == 2000
    assert mig["observations"]["encoded"] == len(data)       # every grid image, once
    assert result["metrics"]["sap-continuous"]["observations"]["encoded"] == 0   # same sample
    assert set(result["metrics"]["reconstruction"]["values"]) == {
        "reconstruction_loss", "kl", "negative_elbo", "squared_error"}
    assert all(v["seconds"]["encoding"] >= 0 and v["seconds"]["arithmetic"] >= 0
               for v in result["metrics"].values())
    assert result["encoding"]["images"] == len(data)
    assert "scikit-learn" in result["versions"]
    path = write_metrics(tmp_path / "run", result)
    assert json.loads(path.read_text())["metrics"]["mig"]["values"] == mig["values"]


def test_evaluate_refuses_unknown_names_and_reconstruction_without_a_model():
    data = tiny_data()
    with pytest.raises(ValueError, match="unknown metric 'nope'; valid metrics: beta-vae.*reconstruction"):
        evaluate(data, lambda x: x, names=["nope"])
    with pytest.raises(ValueError, match="a model is needed"):
        evaluate(data, lambda x: x, names=["reconstruction"])


def test_factorless_data_skips_factor_metrics_with_a_note():
    data = tiny_data((24,))
    data.has_factors = False
    model = VAE(1, 3)
    result = evaluate(data, model=model, names=["mig", "unsupervised"], size="quick")
    assert result["metrics"]["mig"] == {"skipped": "tiny has no ground-truth factors"}
    assert "gaussian_total_correlation" in result["metrics"]["unsupervised"]["values"]


def test_a_failing_metric_is_recorded_and_the_others_kept():
    data = tiny_data()
    result = evaluate(data, represent=lambda x: np.zeros((len(x), 1)),   # 1 dim: MIG needs 2
                      names=["mig", "irs"], size="quick")
    assert "error" in result["metrics"]["mig"] and "2" in result["metrics"]["mig"]["error"]
    assert "IRS" in result["metrics"]["irs"]["values"]


def test_evaluate_run_keeps_earlier_values_and_adds_new_ones(tmp_path):
    from disentbench.bench.evaluate import evaluate_run
    from disentbench.bench.io import write_json
    from disentbench.bench.spec import RunSpec
    from disentbench.bench.session import write_checkpoint
    data = tiny_data()
    torch.manual_seed(0)
    model = VAE(1, 4)
    write_json(tmp_path / "config.json", {"spec": RunSpec("vae", "tiny", 0, 1,
                                                          latent_dim=4).to_dict()})
    write_checkpoint(tmp_path, {"model": model.state_dict(), "step": 1})
    first = evaluate_run(tmp_path, data, ["mig"], size="quick")
    second = evaluate_run(tmp_path, data, ["mig", "irs"], size="quick")
    assert second["metrics"]["mig"] == first["metrics"]["mig"]
    assert set(json.loads((tmp_path / "metrics.json").read_text())["metrics"]) == {"mig", "irs"}
    direct = evaluate(data, model=model, names=["mig"], size="quick")
    assert direct["metrics"]["mig"]["values"] == first["metrics"]["mig"]["values"]


def test_evaluate_run_scores_a_sigma_vae_run_with_its_gaussian_likelihood(tmp_path, monkeypatch):
    """The likelihood comes from the run's config.json as training wrote it: σ-VAE's
    reconstruction loss is the squared error of the decoder's output, not a BCE."""
    from disentbench.bench import evaluate as evaluation
    from disentbench.bench.evaluate import evaluate_run
    from disentbench.bench.spec import RunSpec
    from disentbench.bench.train import train
    from tests.helpers import tiny_dsprites_like
    monkeypatch.setitem(evaluation.RECONSTRUCTION_SIZES, "quick", 64)     # a quick check
    data = tiny_dsprites_like()
    runs = {}
    for method in ("sigma-vae", "vae"):
        run = train(RunSpec(method, "tiny", 0, 2, batch_size=8, latent_dim=3), tmp_path,
                    data=data, device="cpu")
        evaluate_run(run.run_dir, data, ["reconstruction"], size="quick")
        runs[method] = json.loads((run.run_dir / "metrics.json").read_text())[
            "metrics"]["reconstruction"]
    gaussian, bernoulli = runs["sigma-vae"], runs["vae"]
    assert gaussian["params"]["likelihood"] == "gaussian"
    assert gaussian["values"]["reconstruction_loss"] == pytest.approx(
        gaussian["values"]["squared_error"], rel=1e-6)
    assert bernoulli["params"]["likelihood"] == "bernoulli"
    assert bernoulli["values"]["reconstruction_loss"] > bernoulli["values"]["squared_error"]
