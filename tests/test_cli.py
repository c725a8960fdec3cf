"""Command line: validation errors, a small grid end to end, resume."""
import csv
import json
import pytest

from disentbench.bench import cli
from disentbench.bench.cli import main


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def run(*args):
    return main(list(args))


def test_unknown_method_exits_2_with_valid_names(capsys, tmp_path):
    assert run("--methods", "vae,nope", "--datasets", "tiny", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "beta-vae" in err and "l-vae" in err


def test_unknown_dataset_exits_2_with_valid_names(capsys, tmp_path):
    assert run("--datasets", "mnist", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'mnist'" in err and "tiny" in err


@pytest.mark.parametrize("flag", ["--seeds", "--steps", "--batch-size"])
def test_non_positive_numbers_are_rejected(capsys, tmp_path, flag):
    assert run("--methods", "vae", "--datasets", "tiny", flag, "0", "--out", str(tmp_path)) == 2
    assert f"{flag} must be a positive integer" in capsys.readouterr().err


def test_bad_params_are_rejected(capsys, tmp_path):
    base = ["--methods", "beta-vae", "--datasets", "tiny", "--out", str(tmp_path)]
    assert run(*base, "--param", "beta-vae.gamma=3") == 2
    assert "valid parameters: beta" in capsys.readouterr().err
    assert run(*base, "--param", "beta-vae.beta=abc") == 2
    assert "expects a float" in capsys.readouterr().err
    assert run(*base, "--param", "beta") == 2
    assert "METHOD.NAME=VALUE" in capsys.readouterr().err


def test_unwritable_out_is_rejected(capsys):
    assert run("--methods", "vae", "--datasets", "tiny", "--out", "/proc/disentbench") == 2
    assert "cannot write there" in capsys.readouterr().err


def test_out_that_is_a_file_is_rejected(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    assert run("--methods", "vae", "--datasets", "tiny", "--out", str(target)) == 2
    assert "--out" in capsys.readouterr().err


def test_small_grid_end_to_end_and_resume(capsys, tmp_path):
    args = ["--methods", "vae,beta-vae,l-vae", "--datasets", "tiny", "--seeds", "2",
            "--steps", "10", "--log-every", "5", "--param", "beta-vae.beta=2", "--metrics", "mig",
            "--eval-size", "quick", "--ablation", "none", "--jobs", "1", "--device", "cpu",
            "--out", str(tmp_path)]
    assert run(*args) == 0
    out = capsys.readouterr().out
    assert "6 runs" in out and "device cpu" in out and "ETA" in out
    assert "6 runs: 6 trained or evaluated now, 0 already done, 0 failed" in out
    runs = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in runs.iterdir()) == ["beta-vae-beta=2", "l-vae", "vae"]
    with open(runs / "l-vae" / "seed1" / "history.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["5", "10"]
    mig = {}
    for folder in runs.glob("*/seed*"):
        result = json.loads((folder / "metrics.json").read_text())
        assert result["size"] == "quick" and result["seed"] == 0
        mig[folder] = result["metrics"]["mig"]["values"]["discrete_mig"]
        assert 0 <= mig[folder] <= 1
    assert len(mig) == 6 and len(set(mig.values())) > 1       # models differ, so do their scores
    assert run(*args) == 0
    assert "0 trained or evaluated now, 6 already done" in capsys.readouterr().out
    assert {r: json.loads((r / "metrics.json").read_text())["metrics"]["mig"]["values"]
            ["discrete_mig"] for r in mig} == mig


def test_unknown_metric_exits_2_with_valid_names(capsys, tmp_path):
    assert run("--methods", "vae", "--datasets", "tiny", "--metrics", "mig,nope",
               "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'nope'" in err and "dci-fast" in err and "reconstruction" in err


def test_runs_are_evaluated_and_reported(capsys, tmp_path):
    args = ["--methods", "vae", "--datasets", "tiny", "--steps", "5", "--log-every", "5",
            "--jobs", "1", "--device", "cpu",
            "--metrics", "mig,reconstruction", "--eval-size", "quick", "--out", str(tmp_path)]
    assert run(*args) == 0
    assert "metrics (quick sizes): mig, reconstruction" in capsys.readouterr().out
    result = json.loads((tmp_path / "runs/tiny/vae/seed0/metrics.json").read_text())
    assert result["size"] == "quick" and result["seed"] == 0
    assert set(result["metrics"]) == {"mig", "reconstruction"}
    assert 0 <= result["metrics"]["mig"]["values"]["discrete_mig"] <= 1
    assert result["metrics"]["reconstruction"]["values"]["negative_elbo"] > 0
    summary = (tmp_path / "tables" / "summary.csv").read_text()
    assert "mig/discrete_mig:mean" in summary
    # a second call with one more metric computes only that one
    assert run(*args[:-6], "--metrics", "mig,irs", "--eval-size", "quick",
               "--out", str(tmp_path)) == 0
    again = json.loads((tmp_path / "runs/tiny/vae/seed0/metrics.json").read_text())
    assert again["metrics"]["mig"] == result["metrics"]["mig"]
    assert "IRS" in again["metrics"]["irs"]["values"]


def test_metrics_auto_combines_with_names():
    from disentbench.bench import evaluate
    cpu_default = evaluate.default_names("cpu")
    assert "dci-fast" not in cpu_default and "mig" in cpu_default
    assert cli.metric_names("auto", "cpu") == cpu_default
    assert cli.metric_names("auto,dci-fast", "cpu") == cpu_default + ["dci-fast"]
    assert cli.metric_names("mig, auto", "cpu") == cpu_default
    assert cli.metric_names("none", "cpu") == []
    assert cli.metric_names("mig,all", "cpu") == ["mig"] + [n for n in evaluate.valid_names()
                                                             if n != "mig"]
    assert "dci" not in cli.metric_names("auto", "cuda") and "dci-fast" in cli.metric_names("auto", "cuda")
    with pytest.raises(cli.UsageError, match="unknown metric 'nope'"):
        cli.metric_names("auto,nope", "cpu")
