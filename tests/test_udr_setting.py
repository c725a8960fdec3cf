"""UDR over a setting's seeds (bench/udr_setting.py) from the codes evaluation stores per run:
stored on fixed inputs, tied to the checkpoint, recomputed only when stale or missing, and
equal to UDR computed on the models themselves."""
import math
import shutil

import numpy as np
import pytest
import torch

from disentbench.bench import udr_setting
from disentbench.bench.cli import main
from disentbench.bench.evaluate import evaluate_run, load_model, pending_metrics
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from disentbench.metrics.udr import compute_udr, sample_observations
from tests.helpers import tiny_dsprites_like


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def spec(seed, steps=10, beta=0.01):
    """β-VAE with a small β: a few steps on `tiny` leave its latents active (KL > 0.01)."""
    return RunSpec("beta-vae", "tiny", seed, steps, batch_size=16, latent_dim=4, lr=1e-3,
                   log_every=5, params=(("beta", beta),))


def trained(out, data, seed, **kw):
    result = train(spec(seed, **kw), out, data=data, device="cpu")
    assert result.status == "done", result.reason
    return result.run_dir


@pytest.fixture(scope="module")
def setting(tmp_path_factory, data):
    """Three seeds of one setting, trained and evaluated (a cheap metric) once."""
    out = tmp_path_factory.mktemp("setting")
    runs = [trained(out, data, seed) for seed in range(3)]
    for run in runs:
        evaluate_run(run, data, ["irs"], size="quick")
    return out, runs


def copied(setting, tmp_path):
    """A copy of the evaluated setting that a test may change."""
    out, runs = setting
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "out", [tmp_path / "out" / run.relative_to(out) for run in runs]


def encoder(model, data):
    def represent(images):
        with torch.no_grad():
            return model.encode(data.to_float(images))
    return represent


def test_codes_are_the_posterior_on_fixed_inputs_tied_to_the_checkpoint(setting, data):
    _, runs = setting
    random_state = np.random.RandomState(udr_setting.INPUTS["seed"])
    images = torch.cat([sample_observations(data, 10, random_state) for _ in range(100)])
    for run in runs:                      # the same observations whatever the run's seed
        codes = udr_setting.read_codes(run)
        model = load_model(run, data)
        with torch.no_grad():
            mean, logvar = model.encode(data.to_float(images))
        assert codes.means.dtype == np.float32 and codes.means.shape == (1000, 4)
        np.testing.assert_allclose(codes.means, mean.numpy(), atol=1e-5)
        kl = 0.5 * (mean ** 2 + logvar.exp() - logvar - 1).double()
        np.testing.assert_allclose(codes.kl, kl.mean(0).numpy(), rtol=1e-5)
        metrics = (run / "metrics.json").read_text()
        assert f'"checkpoint": "{codes.checkpoint}"' in metrics and codes.trained_step == 10
        assert (run / "udr_codes.npz").stat().st_size < 20_000


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_setting_scores_equal_udr_of_the_models(setting, data, correlation):
    _, runs = setting
    scores = udr_setting.setting_scores(runs, correlation)
    direct = compute_udr(data, [encoder(load_model(run, data), data) for run in runs], seed=0,
                         correlation_matrix=correlation)
    assert list(scores) == runs
    np.testing.assert_allclose(list(scores.values()), direct["model_scores"], atol=1e-4)
    assert all(0 < s < 1 for s in scores.values())


def test_an_evaluated_run_is_not_evaluated_again(setting, data):
    _, runs = setting
    before = {p: p.stat().st_mtime_ns for p in runs[0].iterdir()}
    assert pending_metrics(runs[0], ["irs"], size="quick") == []
    evaluate_run(runs[0], data, ["irs"], size="quick")
    assert {p: p.stat().st_mtime_ns for p in runs[0].iterdir()} == before


def test_a_run_evaluated_before_codes_existed_gets_only_its_codes(setting, data, tmp_path):
    _, runs = copied(setting, tmp_path)
    codes = udr_setting.read_codes(runs[1])
    (runs[1] / "udr_codes.npz").unlink()
    metrics = (runs[1] / "metrics.json").read_bytes()
    assert pending_metrics(runs[1], ["irs"], size="quick") == ["udr_codes.npz"]
    assert pending_metrics(runs[1], [], size="quick") == []          # nothing evaluated at all
    reason = udr_setting.setting_udr(runs).reasons[runs[1]]
    assert "udr_codes.npz is missing" in reason and "evaluate it again" in reason
    evaluate_run(runs[1], data, ["irs"], size="quick")
    assert (runs[1] / "metrics.json").read_bytes() == metrics
    np.testing.assert_array_equal(udr_setting.read_codes(runs[1]).means, codes.means)


def test_stale_codes_of_an_extended_run_are_skipped_then_recomputed(setting, data, tmp_path):
    out, runs = copied(setting, tmp_path)
    trained(out, data, 2, steps=12)
    assert pending_metrics(runs[2], ["irs"], size="quick") == ["irs", "udr_codes.npz"]
    result = udr_setting.setting_udr(runs)
    assert math.isnan(result.scores[runs[2]])
    assert "encoded the checkpoint of step 10; the run is at step 12" in result.reasons[runs[2]]
    assert not math.isnan(result.scores[runs[0]]) and len(result.result["model_scores"]) == 2
    evaluate_run(runs[2], data, ["irs"], size="quick")
    assert udr_setting.read_codes(runs[2]).trained_step == 12
    again = udr_setting.setting_udr(runs)
    assert not any(math.isnan(s) for s in again.scores.values()), again.reasons


def test_under_two_runs_with_codes_every_score_is_nan_with_the_reason(setting, tmp_path):
    _, runs = copied(setting, tmp_path)
    (runs[0] / "udr_codes.npz").unlink()
    (runs[1] / "udr_codes.npz").write_bytes(b"not a zip")
    result = udr_setting.setting_udr(runs)
    assert all(math.isnan(s) for s in result.scores.values()) and result.result is None
    assert "udr_codes.npz is unreadable" in result.reasons[runs[1]]
    assert "only 1 run of the setting has current UDR codes" in result.reasons[runs[2]]


def test_a_collapsed_run_is_left_out_with_the_reason(setting, tmp_path):
    _, runs = copied(setting, tmp_path)
    path = runs[0] / "udr_codes.npz"
    with np.load(path) as f:
        stored = dict(f)
    np.savez(path, **{**stored, "kl": np.full(4, 0.001)})
    result = udr_setting.setting_udr(runs)
    assert math.isnan(result.scores[runs[0]]) and "no active latent" in result.reasons[runs[0]]
    assert len(result.result["model_scores"]) == 2


def test_runs_of_different_settings_are_refused(setting, data, tmp_path):
    out, runs = copied(setting, tmp_path)
    other = trained(out, data, 0, beta=4.0)
    with pytest.raises(ValueError, match="differ in more than their seed"):
        udr_setting.setting_scores([*runs, other])


def test_a_rerun_of_the_grid_adds_missing_codes_without_training(tmp_path):
    args = ["--datasets", "tiny", "--device", "cpu", "--profile", "smoke", "--jobs", "1",
            "--methods", "vae", "--steps", "4", "--metrics", "irs", "--out", str(tmp_path)]
    assert main(args) == 0
    run = tmp_path / "runs" / "tiny" / "vae" / "seed0"
    (run / "udr_codes.npz").unlink()
    kept = {name: (run / name).read_bytes() for name in ("model.pt", "history.csv",
                                                         "metrics.json")}
    assert main(args) == 0
    assert (run / "udr_codes.npz").is_file()
    assert {name: (run / name).read_bytes() for name in kept} == kept
