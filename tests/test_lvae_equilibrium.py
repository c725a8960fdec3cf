"""L-VAE's equilibrium β̂* = √(L_R / KL) and the ratios σ²/√term in the history, the test of
whether β̂ settled, and the reconstruction convention (`recon`) as a run parameter."""
import csv
import json
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from torch import nn

from disentbench import methods
from disentbench.bench import grid
from disentbench.bench import report
from disentbench.bench import engine as engine_module
from disentbench.bench.cli import main
from disentbench.bench.evaluate import reconstruction
from disentbench.methods.base import Output, TrainContext
from disentbench.bench.profiles import PROFILES
from disentbench.bench.report import plots, tables
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train, train_runs
from disentbench.methods.base import RECON_CONVENTIONS
from disentbench.methods.l_vae import equilibrium_summary
from tests.helpers import tiny_dsprites_like
from tests.report_runs import fake_run
from tests.test_lvae_diagnostics import SmallVAE
from tests.test_losses import KL, LOGITS, LOGVAR, MU, RECON, X, out

# The hand case of tests/test_losses.py (2 images of 2 pixels) under the Gaussian conventions:
# squared error of the decoder output (the logits are the mean), summed / averaged.
SQUARED = ((2.0 - 1.0) ** 2 + (-1.0) ** 2 + 0.5 ** 2 + (0.0 - 1.0) ** 2) / 2
TERMS = {"bernoulli-sum": RECON, "gaussian-sum": SQUARED, "mse-mean": SQUARED / 2}
# KL per latent dimension of the hand case, batch mean.
KL_DIMS = [(0.5 * 0.25 + 0.5 * (2 - math.log(2.0) - 1)) / 2,
           (0.5 * (1 + 0.5 - math.log(0.5) - 1) + 0.5 * 4) / 2]


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# --- β̂* and the ratios from the logged terms ---------------------------------------------------

@pytest.mark.parametrize("recon", list(RECON_CONVENTIONS))
def test_beta_hat_star_and_ratios_by_hand(recon):
    method = methods.create("l-vae", recon=recon)
    s0, s1 = 0.3, -0.7
    with torch.no_grad():
        method.log_var.copy_(torch.tensor([s0, s1]))
    terms = method.loss(X, out(), 0)
    assert terms["recon"].item() == pytest.approx(TERMS[recon], rel=1e-6)
    logged = method.logged()
    assert logged["beta_hat_star"].item() == pytest.approx(math.sqrt(TERMS[recon] / KL), rel=1e-6)
    assert logged["sigma0_sq_ratio"].item() == pytest.approx(math.exp(s0) / math.sqrt(TERMS[recon]),
                                                             rel=1e-6)
    assert logged["sigma1_sq_ratio"].item() == pytest.approx(math.exp(s1) / math.sqrt(KL), rel=1e-6)


def test_per_dimension_ratios_by_hand():
    method = methods.create("l-vae-perdim")
    method.bind(TrainContext(model=None, latent_dim=2, dataset_size=2, steps=1,
                             sample_batch=None, device=torch.device("cpu")))
    s = [0.2, -0.5, 0.4]
    with torch.no_grad():
        method.log_var.copy_(torch.tensor(s))
    method.loss(X, out(), 0)
    logged = method.logged()
    assert logged["beta_hat_star"].tolist() == pytest.approx(
        [math.sqrt(RECON / k) for k in KL_DIMS], rel=1e-6)
    assert logged["sigma0_sq_ratio"].item() == pytest.approx(math.exp(s[0]) / math.sqrt(RECON),
                                                             rel=1e-6)
    assert logged["sigma1_sq_ratio"].tolist() == pytest.approx(
        [math.exp(v) / math.sqrt(k) for v, k in zip(s[1:], KL_DIMS)], rel=1e-6)


def test_a_collapsed_dimension_gives_a_large_finite_ratio_and_noreg_logs_none():
    method = methods.create("l-vae")
    zero = torch.zeros(2, 2)
    method.loss(X, Output(zero, zero, zero, LOGITS), 0)             # KL exactly 0
    assert all(math.isfinite(v.item()) and v.item() > 1e15 for k, v in method.logged().items()
               if k in ("beta_hat_star", "sigma1_sq_ratio"))
    noreg = methods.create("l-vae-noreg")
    noreg.loss(X, out(), 0)
    assert set(noreg.logged()) == {"sigma0", "sigma1", "beta_hat"}


def test_sigma_frozen_ratios_are_the_formula_in_every_row(tmp_path, data):
    run = train(RunSpec("l-vae", "tiny", 0, 6, batch_size=8, log_every=2,
                        params={"sigma_lr": 0.0, "recon": "mse-mean"}), tmp_path, data=data,
                device="cpu")
    rows = history(run.run_dir)
    assert len(rows) == 3
    for row in rows:
        assert row["beta_hat_star"] == pytest.approx(math.sqrt(row["recon"] / row["kl"]), rel=1e-5)
        assert row["sigma0_sq_ratio"] == pytest.approx(1 / math.sqrt(row["recon"]), rel=1e-5)
        assert row["sigma1_sq_ratio"] == pytest.approx(1 / math.sqrt(row["kl"]), rel=1e-5)


class OpenSmallVAE(SmallVAE):
    """tests/test_lvae_diagnostics.py's small network with the encoder's output layer at its
    default initialisation (the posterior off the prior from the start: KL > 0)."""

    def __init__(self, channels=1, latent_dim=4, width=32):
        super().__init__(channels, latent_dim, width)
        self.encoder[-1].reset_parameters()


@pytest.mark.parametrize("recon", list(RECON_CONVENTIONS))
def test_fast_sigma_settles_at_the_equilibrium_under_each_convention(recon, tmp_path, data,
                                                                     monkeypatch):
    """With σ fast (sigma_lr 0.1) against a slowly moving network (lr 1e-5) both ratios reach
    1 ± 0.1 and stay there: β̂ = β̂*, whichever the convention."""
    monkeypatch.setattr(engine_module, "VAE", OpenSmallVAE)
    run = train(RunSpec("l-vae", "tiny", 0, 300, batch_size=64, latent_dim=4, lr=1e-5,
                        log_every=20, params={"sigma_lr": 0.1, "recon": recon}),
                tmp_path, data=data, device="cpu")
    rows = history(run.run_dir)
    assert abs(rows[0]["sigma0_sq_ratio"] - 1) > 0.1 or abs(rows[0]["sigma1_sq_ratio"] - 1) > 0.1
    summary = equilibrium_summary(rows)
    assert summary["beta_hat_settled"], summary
    last = rows[-1]
    assert last["beta_hat"] == pytest.approx(last["beta_hat_star"], rel=0.25)
    assert json.loads((run.run_dir / "config.json").read_text())["method_params"]["recon"] == recon
    status = json.loads((run.run_dir / "status.json").read_text())
    assert status["history_summary"] == summary                       # the run's status says so


# --- the convergence test on synthetic histories --------------------------------------------------

def ratio_rows(sigma0, sigma1, every=100):
    return [{"step": every * (i + 1), "sigma0_sq_ratio": a, "sigma1_sq_ratio": b}
            for i, (a, b) in enumerate(zip(sigma0, sigma1))]


def test_settled_from_the_first_step_of_the_final_stretch_in_the_band():
    rows = ratio_rows([0.2, 0.5, 0.8, 0.95, 1.05, 0.92, 1.0, 1.08, 0.97, 1.02],
                      [1.3, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert equilibrium_summary(rows) == {"beta_hat_settled": True, "settled_from_step": 400,
                                         "band": [0.9, 1.1], "last_fraction": 0.25,
                                         "out_of_band": []}


def test_not_settled_when_a_ratio_leaves_the_band_in_the_last_fraction():
    rows = ratio_rows([1.0] * 10, [1.0] * 8 + [1.2, 1.0])          # step 900 is out
    summary = equilibrium_summary(rows)
    assert not summary["beta_hat_settled"] and summary["settled_from_step"] == 1000
    assert summary["out_of_band"] == ["sigma1_sq_ratio"]
    rows = ratio_rows([1.0] * 9 + [0.85], [1.0] * 10)              # the last row is out
    assert equilibrium_summary(rows)["settled_from_step"] is None


def test_settled_needs_the_whole_last_fraction_and_counts_nan_as_outside():
    rows = ratio_rows([0.5] * 8 + [1.0] * 2, [1.0] * 10)           # from 900; window from 750
    assert not equilibrium_summary(rows)["beta_hat_settled"]
    assert equilibrium_summary(rows, last_fraction=0.15)["beta_hat_settled"]   # from 850
    assert equilibrium_summary(rows, band=0.5)["settled_from_step"] == 100
    rows[-1]["sigma0_sq_ratio"] = float("nan")
    assert equilibrium_summary(rows)["settled_from_step"] is None


def test_per_dimension_ratios_all_count_and_other_histories_have_no_summary():
    rows = [{"step": 100 * i, "sigma0_sq_ratio": 1.0, "sigma1_sq_ratio_0": 1.0,
             "sigma1_sq_ratio_1": 3.0} for i in (1, 2, 3, 4)]
    summary = methods.get("l-vae-perdim").history_summary(rows)
    assert not summary["beta_hat_settled"] and summary["out_of_band"] == ["sigma1_sq_ratio_1"]
    noreg = [{"step": 100, "sigma0": 2.0, "sigma1": 3.0, "beta_hat": 0.4}]
    assert methods.get("l-vae-noreg").history_summary(noreg) == {}
    assert methods.get("vae").history_summary(ratio_rows([1.0], [1.0])) == {}


# --- the reconstruction convention as a run parameter --------------------------------------------

@pytest.mark.parametrize("name", ["sigma-vae", "sigma-vae-optimal"])
def test_recon_is_refused_for_sigma_vae_saying_why(name, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"method '{name}' takes no recon parameter: .*learns"):
        methods.create(name, recon="mse-mean")
    with pytest.raises(ValueError, match="takes no recon parameter"):
        methods.parse_value(name, "recon", "gaussian-sum")
    assert main(["--methods", name, "--datasets", "tiny", "--out", str(tmp_path),
                 "--param", f"{name}.recon=mse-mean"]) == 2
    assert "takes no recon parameter" in capsys.readouterr().err


def test_every_other_method_takes_recon_and_an_unknown_one_is_refused():
    for name in methods.available():
        takes = "recon" in methods.get(name).params
        assert takes == (not name.startswith("sigma-vae")), name
        if takes:
            assert methods.get(name).params["recon"] == "bernoulli-sum"
    with pytest.raises(ValueError, match="beta-vae.recon must be one of bernoulli-sum, "
                                         "gaussian-sum, mse-mean, got 'mse'"):
        methods.parse_value("beta-vae", "recon", "mse")


@pytest.mark.parametrize("recon, likelihood", [("bernoulli-sum", "bernoulli"),
                                               ("gaussian-sum", "gaussian"),
                                               ("mse-mean", "gaussian")])
def test_every_method_uses_the_convention_and_records_its_likelihood(recon, likelihood):
    for name in ("vae", "beta-vae", "dip-vae-i", "control-vae", "l-vae"):
        method = methods.create(name, recon=recon)
        assert method.loss(X, out(), 0)["recon"].item() == pytest.approx(TERMS[recon], rel=1e-6)
        assert method.reconstruction_loss == likelihood


def test_default_recon_keeps_the_run_name_and_another_names_it():
    params = {"l-vae": [{"recon": "bernoulli-sum"}], "vae": [{"recon": "mse-mean"}]}
    specs = grid.expand(["l-vae", "vae"], ["tiny"], 1, PROFILES["quick"], params, {"tiny": 5})
    assert [s.label for s in specs] == ["l-vae", "vae-recon=mse-mean"]


def test_config_records_recon_and_evaluate_scores_in_its_likelihood(tmp_path, data):
    result = train(RunSpec("vae", "tiny", 0, 2, batch_size=8, params={"recon": "mse-mean"}),
                   tmp_path, data=data, device="cpu")
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["method_params"]["recon"] == "mse-mean"
    assert config["reconstruction"] == "gaussian"
    model = nn.Module()
    model.encode = lambda x: (torch.zeros(len(x), 2), torch.zeros(len(x), 2))
    model.decode = lambda z: torch.full((len(z), 1, 64, 64), 0.5)
    model.eval = lambda: model
    values = reconstruction(model, data, num_images=8, device="cpu",
                            likelihood=config["reconstruction"])
    assert values["reconstruction_loss"] == pytest.approx(values["squared_error"]) \
        == pytest.approx(0.25 * 4096)


# --- the report ----------------------------------------------------------------------------------

def lvae_history(settle_at: int, beta_hat_star: float):
    steps = [100 * (i + 1) for i in range(8)]
    ratio = [1.0 if s >= settle_at else 0.5 for s in steps]
    return {"step": steps, "loss": [3.0] * 8, "recon": [2.0] * 8, "kl": [1.0] * 8,
            "sigma0": [1.0] * 8, "sigma1": [1.0] * 8, "beta_hat": [2.0] * 8,
            "beta_hat_star": [beta_hat_star] * 8, "sigma0_sq_ratio": ratio,
            "sigma1_sq_ratio": [1.0] * 8}


def test_report_beta_hat_table_says_settled_and_names_the_convention(tmp_path):
    for seed, settle_at in enumerate((300, 500, 800)):              # window: from step 600
        fake_run(tmp_path, "toy", "l-vae", seed, history=lvae_history(settle_at, 1.5 + seed),
                 values={"mig/discrete_mig": 0.3 + 0.01 * seed},
                 config={"method_params": {"sigma_lr": 1e-4, "recon": "bernoulli-sum"}})
        fake_run(tmp_path, "toy", "l-vae-recon=mse-mean", seed, method="l-vae",
                 params={"recon": "mse-mean"}, history=lvae_history(100, 0.5),
                 values={"mig/discrete_mig": 0.2},
                 config={"method_params": {"sigma_lr": 1e-4, "recon": "mse-mean"}})
        fake_run(tmp_path, "toy", "sigma-vae", seed, values={"mig/discrete_mig": 0.1})
    report.build(tmp_path)
    table = pd.read_csv(tmp_path / "tables/beta_hat.csv").set_index("method")
    assert table.loc["l-vae", "settled"] == "2 of 3"
    assert table.loc["l-vae", "settled from step"] == "300–500"
    assert table.loc["l-vae", "beta_hat_star"] == "2.5 ± 1"
    assert table.loc["l-vae-recon=mse-mean", ["recon", "settled", "settled from step"]].tolist() \
        == ["mse-mean", "3 of 3", "100"]
    assert "by reconstruction convention" in (tmp_path / "tables/beta_hat.md").read_text()
    caption = (tmp_path / "tables/comparison_toy.md").read_text().splitlines()[0]
    assert caption == ("toy: methods × headline metrics; reconstruction term: bernoulli-sum "
                       "(sigma-vae: own gaussian NLL; l-vae-recon=mse-mean: mse-mean)")
    runs = pd.read_csv(tmp_path / "tables/runs.csv")
    assert set(runs["recon_convention"]) == {"bernoulli-sum", "mse-mean", "own gaussian NLL"}


def test_beta_hat_plot_draws_beta_hat_star_dashed():
    data = pd.DataFrame({"label": ["l-vae"] * 4, "seed": [0, 0, 1, 1], "step": [10, 20, 10, 20],
                         "beta_hat_star": [1.0, 2.0, 3.0, 4.0]})
    fig, ax = plt.subplots()
    plots._equilibrium(ax, data, ["l-vae"], {"l-vae": "red"})
    (line,) = ax.get_lines()
    assert line.get_linestyle() == "--" and line.get_ydata().tolist() == [2.0, 3.0]
    plt.close(fig)


def test_recon_note_names_the_default_or_the_most_common_and_the_labels_off_it():
    done = pd.DataFrame({"label": ["a", "a", "b", "c"],
                         "recon_convention": ["mse-mean", "mse-mean", "bernoulli-sum", "mse-mean"]})
    assert tables.recon_note(done) == ("reconstruction term: bernoulli-sum (a: mse-mean; "
                                       "c: mse-mean)")
    done.loc[2, "recon_convention"] = "gaussian-sum"
    assert tables.recon_note(done) == "reconstruction term: mse-mean (b: gaussian-sum)"
    assert tables.recon_note(done.iloc[:2]) == "reconstruction term: mse-mean"


# --- the study script ----------------------------------------------------------------------------

def test_study_trains_each_convention_with_its_control_and_plots(tmp_path, data):
    from disentbench.bench import lvae_study
    table = lvae_study.run(tmp_path, {"tiny": data}, seeds=1, steps=4, sigma_lr=0.05,
                           batch_size=8, lr=1e-4, precision="fp32")
    assert list(zip(table["recon"], table["sigma_lr"])) == [
        (recon, rate) for recon in RECON_CONVENTIONS for rate in (0.05, 0.0)]
    assert {"beta_hat", "beta_hat_star", "kl", "active_dims", "settled"} <= set(table)
    assert (table[table["sigma_lr"] == 0]["beta_hat"] == 1.0).all()
    assert (tmp_path / "runs/tiny/l-vae-sigma_lr=0.05/seed0").is_dir()     # default recon: unnamed
    path = lvae_study.plot(table, tmp_path / "figure.png", "title")
    assert path.stat().st_size > 1000
    missing, why = lvae_study.real_dsprites(tmp_path / "absent.npz")
    assert missing is None and "absent.npz not found" in why


def test_seed_group_members_log_their_own_equilibrium(tmp_path, data):
    specs = [RunSpec("l-vae-perdim", "tiny", seed, 4, batch_size=8, latent_dim=3, log_every=2,
                     params={"sigma_lr": 0.01, "recon": "gaussian-sum"}) for seed in (0, 1)]
    results = train_runs(specs, tmp_path, data=data, device="cpu")
    rows = [history(result.run_dir) for result in results]
    assert rows[0][-1]["recon"] != rows[1][-1]["recon"]
    for row in rows[0] + rows[1]:
        for j in range(3):
            assert row[f"beta_hat_star_{j}"] == pytest.approx(
                math.sqrt(row["recon"] / row[f"kl_{j}"]), rel=1e-5)
            assert row[f"sigma1_sq_ratio_{j}"] == pytest.approx(
                row[f"sigma1_{j}"] ** 2 / math.sqrt(row[f"kl_{j}"]), rel=1e-5)
        assert row["sigma0_sq_ratio"] == pytest.approx(row["sigma0"] ** 2 / math.sqrt(row["recon"]),
                                                       rel=1e-5)
