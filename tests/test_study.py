"""A smoke study end to end: two swept methods and L-VAE x 3 seeds at smoke steps, and the
report's sweep plots, the three selection tables and the table of Kendall's τ."""
import sys
import time

import pandas as pd
import pytest

from disentbench.bench.cli import main
from disentbench.bench.report import selection

SMOKE_STUDY = ["--methods", "beta-vae,factor-vae,l-vae", "--param", "beta-vae.beta=1,4",
               "--param", "factor-vae.gamma=10,40", "--seeds", "3", "--profile", "smoke",
               "--jobs", "1", "--device", "cpu"]


def udr_stand_in(run_dirs, correlation_matrix="lasso"):
    """A stand-in for disentbench.bench.udr_setting: a score per run from its folder's name."""
    return {path: (len(str(path)) % 7) / 7 for path in run_dirs}


@pytest.mark.slow
def test_smoke_study_reports_sweeps_selections_and_their_agreement(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(selection, "setting_scores", udr_stand_in)
    start = time.perf_counter()
    assert main([*SMOKE_STUDY, "--datasets", "tiny", "--out", str(tmp_path)]) == 0
    print(f"smoke study on tiny: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    out = capsys.readouterr().out
    assert "18 runs (3 methods in 5 settings (beta-vae 2, factor-vae 2)" in out
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == [
        "beta-vae", "beta-vae-beta=1", "beta-vae-fixed-beta-hat", "factor-vae",
        "factor-vae-gamma=40", "l-vae"]
    page = (tmp_path / "index.html").read_text()
    for name in ("plots/sweep_tiny_beta-vae.png", "plots/sweep_tiny_factor-vae.png"):
        assert (tmp_path / name).stat().st_size > 10_000 and name in page
    for rule in ("beta-vae", "mean-rank", "udr"):
        for suffix in ("md", "tex", "csv"):
            assert (tmp_path / "tables" / f"selection_{rule}_tiny.{suffix}").is_file()
        table = pd.read_csv(tmp_path / "tables" / f"selection_{rule}_tiny.csv")
        assert set(table["n"]) == {3}                   # every seed of the chosen setting
        assert len(set(table["label"])) == 3            # one setting per method
        assert f"Model selection by {rule}" in page
    assert "selected by mig/discrete_mig instead" in page          # beta-vae is not computed
    agreement = pd.read_csv(tmp_path / "tables" / "selection_agreement.csv")
    assert set(zip(agreement["rule_a"], agreement["rule_b"])) == {
        ("beta-vae", "mean-rank"), ("beta-vae", "udr"), ("mean-rank", "udr")}
    assert "Method ranking between selection rules" in page
    assert main([*SMOKE_STUDY, "--datasets", "tiny", "--out", str(tmp_path)]) == 0
    assert "0 trained or evaluated now, 18 already done" in capsys.readouterr().out
