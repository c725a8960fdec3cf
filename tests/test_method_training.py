"""Every method through the harness on the tiny in-memory data: short runs that learn, exact
resume of methods with state outside the network, and the L-VAE ablation's recorded failure."""
import csv
import json
import math

import pytest
import torch

from disentbench import methods
from disentbench.bench import grid
from disentbench.bench.cli import main, method_names, parse_params
from disentbench.bench.profiles import PROFILES
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import train
from disentbench.methods.l_vae_noreg import LVAENoReg
from tests.helpers import tiny_dsprites_like

STEPS, LOG_EVERY = 8, 4


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory, data):
    """One short run per method, trained on first use (lr 1e-3 so that a dozen steps learn)."""
    out, histories = tmp_path_factory.mktemp("runs"), {}

    def history(method):
        if method not in histories:
            spec = RunSpec(method, "tiny", 0, STEPS, batch_size=8, lr=1e-3, log_every=LOG_EVERY)
            result = train(spec, out, data=data, device="cpu")
            assert result.status == "done", result.reason
            histories[method] = read_history(result.run_dir)
        return histories[method]
    return history


def read_history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("method", methods.available())
def test_short_run_is_finite_and_its_loss_decreases(short_runs, method):
    rows = short_runs(method)
    assert [row["step"] for row in rows] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert all(math.isfinite(v) for row in rows for v in row.values())
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["recon"] < rows[0]["recon"]


@pytest.mark.parametrize("method, columns", [
    ("factor-vae", {"tc", "disc_loss", "disc_accuracy"}),
    ("beta-tcvae", {"mi", "tc", "dw_kl"}),
    ("dip-vae-i", {"dip"}),
    ("control-vae", {"beta", "C"}),
    ("dynamic-vae", {"beta", "C"}),
    ("sigma-vae", {"sigma"}),
    ("l-vae-perdim", {"sigma0"} | {f"beta_hat_{j}" for j in range(10)}
     | {f"sigma1_{j}" for j in range(10)}),
])
def test_methods_log_their_own_values(short_runs, method, columns):
    assert columns | {"loss", "recon", "kl"} <= set(short_runs(method)[0])


def test_sigmas_created_by_the_method_are_trained_with_the_network(short_runs):
    """σ-VAE's log σ and L-VAE-perdim's σ (created at bind) reach the harness's Adam."""
    assert short_runs("sigma-vae")[-1]["sigma"] < 1.0
    last = short_runs("l-vae-perdim")[-1]
    assert last["sigma0"] > 1.0 and all(last[f"sigma1_{j}"] != 1.0 for j in range(10))


def resumed_equals_straight(tmp_path, data, method):
    """4 steps in one go, and 2 + 2 across a checkpoint: the histories must be identical."""
    def spec(steps):
        return RunSpec(method, "tiny", 0, steps, batch_size=8, log_every=1, checkpoint_every=2)
    train(spec(4), tmp_path / "straight", data=data, device="cpu")
    train(spec(2), tmp_path / "resumed", data=data, device="cpu", keep_checkpoints=True)
    result = train(spec(4), tmp_path / "resumed", data=data, device="cpu", keep_checkpoints=True)
    assert result.status == "done"
    straight = read_history(tmp_path / "straight" / "runs" / "tiny" / method / "seed0")
    assert read_history(result.run_dir) == straight
    return result.run_dir


def test_factor_vae_resumes_exactly_with_its_discriminator_and_adam(tmp_path, data):
    run_dir = resumed_equals_straight(tmp_path, data, "factor-vae")
    state = torch.load(run_dir / "model.pt", weights_only=False)["method"]
    assert "discriminator.0.weight" in state
    adam = state["_extra_state"]["discriminator_optimiser"]
    assert adam["param_groups"][0]["betas"] == (0.5, 0.9) and len(adam["state"]) == 14


def test_dynamic_vae_resumes_exactly_with_its_controller_state(tmp_path, data):
    run_dir = resumed_equals_straight(tmp_path, data, "dynamic-vae")
    state = torch.load(run_dir / "model.pt", weights_only=False)["method"]
    assert {"beta", "previous_error", "kl_window", "setpoint"} <= set(state)


class NoRegNearTheBound(LVAENoReg):
    """l-vae-noreg started at σ² = e^9.1 ≈ 9000, so that a short run crosses 1e4."""
    name = "l-vae-noreg-near-bound"

    def __init__(self, **params):
        super().__init__(**params)
        with torch.no_grad():
            self.log_var.fill_(9.1)


def test_lvae_noreg_divergence_is_recorded_as_a_failed_run(tmp_path, data, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, NoRegNearTheBound.name, NoRegNearTheBound)
    spec = RunSpec(NoRegNearTheBound.name, "tiny", 0, 40, batch_size=8, lr=0.03, log_every=2)
    result = train(spec, tmp_path, data=data, device="cpu")
    assert result.status == "failed" and result.step < 40
    assert "left [0.0001, 10000]" in result.reason and "without the Σσ² term" in result.reason
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == result.reason
    last = read_history(result.run_dir)[-1]
    assert max(last["sigma0"], last["sigma1"]) ** 2 > 1e4


def test_cli_all_expands_to_the_paper_set_and_sets_new_parameters():
    chosen = method_names("all")
    params = parse_params(["factor-vae.gamma=20", "beta-tcvae.stratified=true",
                      "control-vae.c_every=100"], chosen)
    specs = grid.expand(chosen, ["tiny"], 1, PROFILES["quick"], params, {"tiny": 5})
    assert [s.method for s in specs] == methods.all_methods()
    params = {s.method: dict(s.params) for s in specs if s.params}
    assert params == {"factor-vae": {"gamma": 20.0}, "beta-tcvae": {"stratified": True},
                      "control-vae": {"c_every": 100}}


def test_cli_rejects_an_unknown_parameter_of_a_new_method(capsys, tmp_path):
    assert main(["--methods", "dip-vae-i", "--datasets", "tiny", "--out", str(tmp_path),
                 "--param", "dip-vae-i.lambda=3"]) == 2
    assert "valid parameters: lambda_d_factor, lambda_od" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_every_method_and_variant_for_200_steps(capsys, tmp_path):
    """The issue's end-to-end check (`--methods all --seeds 1 --steps 200`), plus the variants."""
    names = ",".join(methods.available())
    assert main(["--methods", names, "--datasets", "tiny", "--steps", "200", "--metrics", "none",
                 "--ablation", "none", "--device", "cpu", "--out", str(tmp_path)]) == 0
    n = len(methods.available())
    assert f"{n} runs: {n} trained or evaluated now, 0 already done, 0 failed" in capsys.readouterr().out
