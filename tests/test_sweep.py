"""Hyperparameter sweeps: `--param` lists, their product, --config lists, the plan's count, and
the study setup shipped in configs/study.toml."""
from pathlib import Path

import pytest

from disentbench import methods
from disentbench.bench import grid
from disentbench.bench.cli import UsageError, main, parse, parse_params
from disentbench.bench.profiles import PROFILES

STUDY = Path(__file__).resolve().parents[1] / "configs" / "study.toml"


def labels(params, method_names=("beta-vae", "factor-vae", "dip-vae-i"), seeds=1):
    specs = grid.expand(list(method_names), ["tiny"], seeds, PROFILES["smoke"], params,
                        {"tiny": 5})
    return [s.label for s in specs]


def test_a_list_is_one_label_folder_per_value_and_the_default_is_the_plain_label():
    params = parse_params(["beta-vae.beta=1,4,8"], ["beta-vae"])
    assert params == {"beta-vae": [{"beta": 1.0}, {"beta": 4.0}, {"beta": 8.0}]}
    assert labels(params, ["beta-vae"], seeds=2) == [
        "beta-vae-beta=1", "beta-vae-beta=1", "beta-vae", "beta-vae", "beta-vae-beta=8",
        "beta-vae-beta=8"]


def test_several_keys_of_one_method_sweep_their_product():
    params = parse_params(["dip-vae-i.lambda_od=1,2", "dip-vae-i.lambda_d_factor=1,10,100"],
                          ["dip-vae-i"])
    assert len(params["dip-vae-i"]) == 6
    assert labels(params, ["dip-vae-i"]) == [
        "dip-vae-i-lambda_d_factor=1-lambda_od=1", "dip-vae-i-lambda_od=1",
        "dip-vae-i-lambda_d_factor=100-lambda_od=1", "dip-vae-i-lambda_d_factor=1-lambda_od=2",
        "dip-vae-i-lambda_od=2", "dip-vae-i-lambda_d_factor=100-lambda_od=2"]


def test_values_naming_the_same_run_give_one_setting():
    assert labels(parse_params(["beta-vae.beta=4,4.0,2"], ["beta-vae"]), ["beta-vae"]) == [
        "beta-vae", "beta-vae-beta=2"]


def test_the_same_key_twice_is_an_error_naming_it():
    with pytest.raises(UsageError, match="--param beta-vae.beta is given twice"):
        parse_params(["beta-vae.beta=1", "beta-vae.beta=2"], ["beta-vae"])
    with pytest.raises(UsageError, match="expects a float, got 'x'"):
        parse_params(["beta-vae.beta=1,x"], ["beta-vae"])


def test_config_lists_sweep_and_a_flag_overrides_the_files_key(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text('methods = "beta-vae,factor-vae"\n[params.beta-vae]\nbeta = [1, 2, 4]\n'
                      '[params.factor-vae]\ngamma = [10, 40]\n')
    args = parse(["--config", str(config)])
    assert parse_params(args.param, ["beta-vae", "factor-vae"], args.config_params) == {
        "beta-vae": [{"beta": 1.0}, {"beta": 2.0}, {"beta": 4.0}],
        "factor-vae": [{"gamma": 10.0}, {"gamma": 40.0}]}
    args = parse(["--config", str(config), "--param", "beta-vae.beta=16"])
    assert parse_params(args.param, ["beta-vae", "factor-vae"], args.config_params)[
        "beta-vae"] == [{"beta": 16.0}]


def test_methods_narrow_a_config_file_but_not_a_flag(tmp_path):
    args = parse(["--config", str(STUDY), "--methods", "beta-vae,l-vae"])
    assert parse_params(args.param, ["beta-vae", "l-vae"], args.config_params) == {
        "beta-vae": [{"beta": v} for v in (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)]}
    with pytest.raises(UsageError, match="method 'factor-vae' is not among --methods"):
        parse_params(["factor-vae.gamma=10"], ["beta-vae"])


def test_the_plan_line_counts_the_settings(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["--methods", "beta-vae,factor-vae,l-vae", "--datasets", "tiny", "--seeds", "3",
                 "--param", "beta-vae.beta=1,4", "--param", "factor-vae.gamma=10,40",
                 "--profile", "smoke", "--device", "cpu", "--jobs", "1", "--out", str(tmp_path),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("18 runs (3 methods in 5 settings (beta-vae 2, factor-vae 2) x 1 datasets x 3 seeds "
            "+ 3 fixed-beta-hat ablation runs)") in out
    assert not (tmp_path / "runs").exists()


def test_the_study_config_holds_disentanglement_libs_ranges_with_dip_vae_ties():
    args = parse(["--config", str(STUDY)])
    chosen = methods.all_methods()
    params = parse_params(args.param, chosen, args.config_params)
    values = {m: sorted({v for s in settings for v in s.values()}) for m, settings in params.items()}
    assert values["beta-vae"] == [1, 2, 4, 6, 8, 16]
    assert values["factor-vae"] == [10, 20, 30, 40, 50, 100]
    assert values["beta-tcvae"] == [1, 2, 4, 6, 8, 10]
    assert values["dip-vae-i"] == values["dip-vae-ii"] == [1, 2, 5, 10, 20, 50]
    specs = grid.expand(chosen, ["tiny"], 1, PROFILES["smoke"], params, {"tiny": 5})
    lambdas = {(s.method, methods.create(s.method, **dict(s.params)).hparams["lambda_od"],
                methods.create(s.method, **dict(s.params)).hparams["lambda_d_factor"])
               for s in specs if s.method.startswith("dip-vae")}
    assert {f for m, _, f in lambdas if m == "dip-vae-i"} == {10.0}      # λ_d = 10 λ_od
    assert {f for m, _, f in lambdas if m == "dip-vae-ii"} == {1.0}      # λ_d = λ_od
    assert not [s for s in specs if s.method in ("l-vae", "sigma-vae", "vae") and s.params]
    assert args.methods == "all" and args.seeds == 10
