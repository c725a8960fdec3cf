"""Report: tables and plots from a results folder, computed from what the runs wrote."""

import pandas as pd
import pytest

from disentbench.bench import report
from disentbench.bench.io import write_json


def fake_run(out, dataset, label, seed, status="done", history=None, metrics=None, reason=""):
    run = out / "runs" / dataset / label / f"seed{seed}"
    run.mkdir(parents=True)
    write_json(run / "status.json", {"status": status, "step": 20, "reason": reason})
    write_json(run / "config.json", {"spec": {"method": label.split("-beta=")[0]}})
    pd.DataFrame(history or {"step": [10, 20], "loss": [5.0, 3.0 + seed],
                             "recon": [4.0, 2.0], "kl": [1.0, 1.0 + seed]}).to_csv(
        run / "history.csv", index=False)
    if metrics:
        write_json(run / "metrics.json", {"metrics": metrics})
    return run


@pytest.fixture
def results(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path, "tiny", "vae", seed,
                 metrics={"mig": {"values": {"discrete_mig": 0.1 + 0.2 * seed}}})
        fake_run(tmp_path, "tiny", "l-vae", seed,
                 history={"step": [10, 20], "loss": [9.0, 8.0], "recon": [7.0, 6.0],
                          "kl": [2.0, 2.0], "beta_hat": [1.5, 2.0 + seed]},
                 metrics={"mig": {"values": {"discrete_mig": 0.5}}})
    fake_run(tmp_path, "tiny", "beta-vae", 0, status="failed", reason="non-finite loss")
    return tmp_path


def test_collect_and_summary_values(results):
    runs = report.collect(results)
    assert len(runs) == 5
    vae = runs[(runs.label == "vae")].sort_values("seed")
    assert vae["loss"].tolist() == [3.0, 4.0]
    assert vae["mig/discrete_mig"].tolist() == pytest.approx([0.1, 0.3])
    summary = report.summarise(runs).set_index("label")
    assert summary.loc["vae", "mig/discrete_mig:mean"] == pytest.approx(0.2)
    assert summary.loc["vae", "mig/discrete_mig:std"] == pytest.approx(0.1414213, rel=1e-5)
    assert summary.loc["l-vae", "beta_hat:mean"] == pytest.approx(2.5)
    assert summary.loc["vae", "loss:count"] == 2
    assert "beta-vae" not in summary.index          # failed runs are not averaged


def test_build_writes_tables_plots_and_index(results):
    files = {p.relative_to(results).as_posix() for p in report.build(results)}
    assert {"tables/runs.csv", "tables/summary.csv", "tables/table_tiny.tex",
            "tables/table_tiny.md", "plots/training_tiny.png", "plots/beta_hat_trajectories.png",
            "plots/metrics_tiny.png", "index.html"} <= files
    md = (results / "tables/table_tiny.md").read_text()
    assert "0.2 ± 0.14" in md and md.index("| vae") < md.index("| l-vae")
    tex = (results / "tables/table_tiny.tex").read_text()
    assert "\\begin{tabular}" in tex and "0.5 ± 0" in tex
    page = (results / "index.html").read_text()
    assert "non-finite loss" in page and "plots/metrics_tiny.png" in page


def test_empty_results_folder(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 1
    assert "no runs" in capsys.readouterr().out
