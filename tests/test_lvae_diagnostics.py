"""L-VAE's failure modes made visible: sigma_lr, per-dimension KL and active dimensions in the
history, posterior-collapse and σ-range warnings in status.json (issue 13)."""
import csv
import json

import pytest
import torch
from torch import nn

from disentbench import methods
from disentbench.bench import diagnostics
from disentbench.bench import engine as engine_module
from disentbench.bench.diagnostics import ACTIVE_KL_NATS, warnings_from_history
from disentbench.methods.base import Output
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from tests.helpers import Single, tiny_dsprites_like


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def spec(method, steps=10, **kw):
    return RunSpec(method=method, dataset="tiny", seed=kw.pop("seed", 0), steps=steps,
                   batch_size=kw.pop("batch_size", 16), log_every=kw.pop("log_every", 2), **kw)


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


# --- sigma_lr: its own Adam group -------------------------------------------------------------

@pytest.mark.parametrize("name", ["l-vae", "l-vae-noreg", "l-vae-perdim"])
def test_sigmas_in_their_own_group_at_sigma_lr(name, data):
    trainer = Single(spec(name, lr=1e-3, params={"sigma_lr": 1e-5}), data, torch.device("cpu"))
    network, sigmas = trainer.optimizer.param_groups
    assert network["lr"] == 1e-3 and sigmas["lr"] == 1e-5
    assert [p.data_ptr() for p in network["params"]] == \
        [p.data_ptr() for p in trainer.model.parameters()]
    assert sigmas["params"] == [trainer.method.log_var]


def test_sigma_lr_unset_is_the_runs_lr_and_recorded_in_config(tmp_path, data):
    result = train(spec("l-vae", steps=2, lr=3e-4), tmp_path, data=data, device="cpu")
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["method_params"]["sigma_lr"] == 3e-4
    trainer = Single(spec("l-vae", lr=3e-4), data, torch.device("cpu"))
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [3e-4, 3e-4]


def test_methods_without_sigmas_keep_one_group(data):
    for name in ("vae", "factor-vae"):       # FactorVAE's discriminator has its own optimiser
        trainer = Single(spec(name, lr=1e-3), data, torch.device("cpu"))
        assert len(trainer.optimizer.param_groups) == 1


@pytest.mark.parametrize("text", ["-1", "nan", "inf", "-inf", "fast"])
def test_bad_sigma_lr_is_refused_naming_the_parameter(text):
    with pytest.raises(ValueError, match=r"l-vae\.sigma_lr must be a finite number >= 0"):
        methods.parse_value("l-vae", "sigma_lr", text)
    with pytest.raises(ValueError, match=r"l-vae-perdim\.sigma_lr"):
        methods.create("l-vae-perdim", sigma_lr=text)


def test_sigma_lr_parses_to_a_float():
    assert methods.parse_value("l-vae-noreg", "sigma_lr", "1e-4") == 1e-4
    assert methods.parse_value("l-vae", "sigma_lr", "0") == 0.0


def test_sigma_lr_zero_freezes_sigma_and_is_the_vae_plus_two(tmp_path, data):
    """σ frozen at 1: the gradient is the VAE's, so the same seed gives the same network step for
    step and L-VAE's loss is the VAE's + σ0² + σ1² = + 2."""
    frozen = train(spec("l-vae", params={"sigma_lr": 0.0}, lr=1e-3), tmp_path, data=data,
                   device="cpu")
    vae = train(spec("vae", lr=1e-3), tmp_path, data=data, device="cpu")
    rows, reference = history(frozen.run_dir), history(vae.run_dir)
    assert [r["step"] for r in rows] == [r["step"] for r in reference] == [2, 4, 6, 8, 10]
    for row, ref in zip(rows, reference):
        assert row["sigma0"] == row["sigma1"] == row["beta_hat"] == 1.0
        assert row["recon"] == ref["recon"] and row["kl"] == ref["kl"]
        assert row["loss"] == pytest.approx(ref["loss"] + 2, rel=1e-6)
    assert rows[0]["loss"] != rows[-1]["loss"]                  # the network did train


def test_sigma_lr_is_what_adam_uses_for_sigma(data):
    """One step at sigma_lr s moves each log σ² by about s (Adam's first step is lr·sign(g))."""
    for rate in (1e-2, 1e-3):
        trainer = Single(spec("l-vae", lr=1e-4, params={"sigma_lr": rate}), data,
                          torch.device("cpu"))
        trainer.step()
        assert trainer.method.log_var.detach().abs().tolist() == pytest.approx([rate, rate],
                                                                                rel=1e-3)


# --- history columns ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", methods.available())
def test_every_method_logs_kl_per_dimension_and_active_dims(name, data):
    trainer = Single(spec(name, latent_dim=6), data, torch.device("cpu"))
    row = trainer.row(trainer.step())
    kl = [row[f"kl_{j}"] for j in range(6)]
    assert "kl_6" not in row
    assert sum(kl) == pytest.approx(row["kl"], rel=1e-5)
    assert row["active_dims"] == sum(value > ACTIVE_KL_NATS for value in kl)


def test_active_dims_counts_dimensions_above_the_threshold():
    mu = torch.tensor([[0.0, 0.1, 1.0], [0.0, -0.1, -1.0]])
    logvar = torch.zeros(2, 3)                 # KL_j = ½ mean(μ_j²): 0, 0.005, 0.5
    values = diagnostics.latent_activity(mu, logvar)
    assert [values[f"kl_{j}"].item() for j in range(3)] == pytest.approx([0.0, 0.005, 0.5])
    assert values["active_dims"].item() == 1


# --- warnings from the history ------------------------------------------------------------------

def rows(active, **columns):
    return [{"step": 25 * (i + 1), "active_dims": float(a),
             **{k: v[i] for k, v in columns.items()}} for i, a in enumerate(active)]


def test_collapse_then_recovery_is_no_warning():
    assert warnings_from_history(rows([3, 0, 0, 0, 1]), "vae") == []


def test_collapse_to_the_end_warns_with_the_first_step_of_the_collapse():
    warnings = warnings_from_history(rows([3, 0, 1, 0, 0, 0]), "vae")
    assert len(warnings) == 1 and warnings[0].startswith("posterior collapse at step 100")
    assert warnings_from_history(rows([0]), "beta-vae")[0].startswith(
        "posterior collapse at step 25")


def test_no_rows_or_no_active_dims_column_is_no_warning():
    assert warnings_from_history([], "l-vae") == []
    assert warnings_from_history([{"step": 5, "kl": 0.0}], "vae") == []


@pytest.mark.parametrize("sigma1, warned", [
    (1.0, False), (0.011, False), (99.0, False), (0.009, True), (101.0, True),
    (float("nan"), True), (float("inf"), True)])
def test_lvae_sigma_squared_outside_its_range_warns_with_the_step(sigma1, warned):
    history_rows = rows([4, 4, 4], sigma0=[1.0, 1.0, 1.0], sigma1=[1.0, sigma1, sigma1])
    warnings = warnings_from_history(history_rows, "l-vae")
    assert len(warnings) == warned
    if warned:
        assert warnings[0].startswith("sigma1^2") and warnings[0].endswith("at step 50")
    assert warnings_from_history(history_rows, "vae") == []      # σ columns mean L-VAE's σ only


def test_lvae_perdim_sigma_range_and_collapse_both_reported():
    history_rows = rows([2, 0], sigma0=[1.0, 1.0], sigma1_0=[1.0, 1.0], sigma1_1=[1.0, 1e-3])
    warnings = warnings_from_history(history_rows, "l-vae-perdim")
    assert warnings[0].startswith("posterior collapse at step 50")
    assert warnings[1].startswith("sigma1_1^2 = 1e-06") and warnings[1].endswith("at step 50")


# --- the collapse attractor on a real run ------------------------------------------------------

class SmallVAE(nn.Module):
    """A test double for the convolutional VAE, ~50x cheaper: 4x4 average pooling, an MLP of
    width 32 each way, nearest upsampling back to 64x64. The encoder's output layer starts at 0
    (posterior = prior, KL = 0), the state from which the conv net also starts (KL ≈ 2 nats)."""

    def __init__(self, channels=1, latent_dim=4, width=32):
        super().__init__()
        self.encoder = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(),
                                     nn.Linear(channels * 256, width), nn.ReLU(),
                                     nn.Linear(width, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(),
                                     nn.Linear(width, channels * 256),
                                     nn.Unflatten(1, (channels, 16, 16)),
                                     nn.Upsample(scale_factor=4))
        nn.init.zeros_(self.encoder[-1].weight)
        nn.init.zeros_(self.encoder[-1].bias)

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=1)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return Output(mu, logvar, z, self.decoder(z))


def test_lvae_falls_into_the_collapse_attractor_and_is_warned_vae_is_not(tmp_path, data,
                                                                          monkeypatch):
    """With fast σ (sigma_lr 0.1, network lr 3e-4) σ1² tracks sqrt(KL) down while σ0² tracks
    sqrt(L_R) up: β̂ = σ0²/σ1² grows as the KL shrinks, the KL is priced out and stays at ~0 to
    the end; the VAE on the same seed, network and lr opens every latent dimension."""
    monkeypatch.setattr(engine_module, "VAE", SmallVAE)
    kw = dict(steps=200, log_every=25, latent_dim=4, lr=3e-4)
    lvae = train(spec("l-vae", params={"sigma_lr": 0.1}, **kw), tmp_path, data=data,
                 device="cpu")
    vae = train(spec("vae", **kw), tmp_path, data=data, device="cpu")
    lvae_rows, vae_rows = history(lvae.run_dir), history(vae.run_dir)

    assert status(lvae.run_dir)["status"] == "done"
    assert status(lvae.run_dir)["warnings"] == [
        "posterior collapse at step 25: no latent dimension has KL above 0.01 nats from then to "
        "the end of training"]
    beta_hat = [r["beta_hat"] for r in lvae_rows]
    assert all(a < b for a, b in zip(beta_hat, beta_hat[1:])) and beta_hat[-1] > 1000
    assert lvae_rows[-1]["kl"] < 1e-3 and lvae_rows[-1]["sigma1"] < 0.2
    assert lvae_rows[-1]["sigma0"] > 5

    assert status(vae.run_dir)["status"] == "done" and "warnings" not in status(vae.run_dir)
    assert vae_rows[-1]["active_dims"] == 4 and vae_rows[-1]["kl"] > 1
    assert lvae_rows[-1]["recon"] > 1.5 * vae_rows[-1]["recon"]        # it reconstructs worse
