"""Report: tables, statistics, ordering and page from synthetic run folders with known numbers."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from disentbench import metrics
from disentbench.bench import report
from disentbench.bench.report import load, stats
from tests.report_runs import fake_run

OFFSETS = (-0.02, -0.01, 0.0, 0.01, 0.02)     # per seed, mean 0
# dataset "toy": label -> (MIG mean, squared error mean, negative ELBO mean)
TOY = {"vae": (0.2, 30.0, 100.0), "beta-vae": (0.5, 35.0, 120.0),
       "beta-vae-beta=8": (0.3, 40.0, 130.0), "sigma-vae": (0.1, 25.0, 50.0),
       "l-vae": (0.4, 28.0, 90.0), "beta-vae-fixed-beta-hat": (0.35, 29.0, 95.0)}


def toy_results(out):
    for label, (mig, squared, elbo) in TOY.items():
        for seed, offset in enumerate(OFFSETS):
            config = None
            if label == "beta-vae-fixed-beta-hat":      # seed k used the β̂ of l-vae's seed 4 - k
                config = {"ablation": {"of": "l-vae", "beta_hat": 0.5 + seed,
                                       "source_run": f"runs/toy/l-vae/seed{4 - seed}"}}
            history = None
            if label == "l-vae":
                history = {"step": [10, 20], "loss": [3.0, 2.0], "recon": [2.0, 1.5],
                           "kl": [1.0, 0.5], "sigma0": [1.0, 1.1], "sigma1": [1.0, 1.2],
                           "beta_hat": [1.0, 0.5 + 0.25 * seed]}
            fake_run(out, "toy", label, seed,
                     method="beta-vae" if label.startswith("beta-vae") else None,
                     config=config, history=history,
                     values={"mig/discrete_mig": mig + offset,
                             "reconstruction/squared_error": squared + 10 * offset,
                             "reconstruction/negative_elbo": elbo + 10 * offset})
    # "pair": vae below l-vae on all 6 seeds (Wilcoxon exact p = 2/64); beta-vae on other seeds
    for seed in range(6):
        fake_run(out, "pair", "l-vae", seed, values={"mig/discrete_mig": 0.5 + 0.01 * seed})
        fake_run(out, "pair", "vae", seed, values={"mig/discrete_mig": 0.2 + 0.02 * seed})
    for seed in (10, 11, 12):
        fake_run(out, "pair", "beta-vae", seed, method="beta-vae",
                 values={"mig/discrete_mig": 0.1 * (seed - 9)})
    fake_run(out, "toy", "factor-vae", 0, status="failed", reason="non-finite loss at step 7")
    fake_run(out, "toy", "control-vae", 0, warnings=["posterior collapse at step 400"],
             values={"mig/discrete_mig": 0.01})


def small_results(out):
    for seed in range(3):
        for label, mig in (("vae", 0.2), ("l-vae", 0.4)):
            fake_run(out, "toy", label, seed, values={"mig/discrete_mig": mig + 0.01 * seed})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    toy_results(out)
    files = report.build(out)
    return out, {p.relative_to(out).as_posix() for p in files}


def test_every_table_and_plot_is_written(built):
    out, files = built
    expected = {"tables/runs.csv", "tables/summary.csv", "tables/significance.csv",
                "tables/ablation.csv", "tables/ablation_pairs.csv", "tables/beta_hat.csv",
                "tables/beta_hat.md", "tables/ranks.csv", "tables/agreement_toy.csv",
                "plots/metrics_toy.png", "plots/tradeoff_toy.png", "plots/agreement_toy.png",
                "plots/kl_per_dim_toy.png", "plots/training_toy.png", "plots/sigma_beta_hat.png",
                "plots/critical_difference.png", "index.html"}
    expected |= {f"tables/comparison_toy.{s}" for s in ("csv", "md", "tex")}
    expected |= {f"tables/ablation_toy.{s}" for s in ("md", "tex")}
    assert expected <= files
    assert all((out / f).stat().st_size > 0 for f in files)


def test_runs_table_and_summary_values(built):
    out, _ = built
    runs = pd.read_csv(out / "tables/runs.csv")
    assert len(runs) == 6 * 5 + 6 + 6 + 3 + 2
    vae = runs[(runs.dataset == "toy") & (runs.label == "vae")].sort_values("seed")
    assert vae["mig/discrete_mig"].tolist() == pytest.approx([0.2 + o for o in OFFSETS])
    failed = runs[runs.label == "factor-vae"].iloc[0]
    assert failed.status == "failed" and failed.reason == "non-finite loss at step 7"
    assert runs[runs.label == "control-vae"].iloc[0].warnings == "posterior collapse at step 400"
    summary = pd.read_csv(out / "tables/summary.csv").set_index(["dataset", "label"])
    assert summary.loc[("toy", "vae"), "mig/discrete_mig:mean"] == pytest.approx(0.2)
    assert summary.loc[("toy", "vae"), "mig/discrete_mig:std"] == pytest.approx(
        np.std([0.2 + o for o in OFFSETS], ddof=1))
    assert summary.loc[("toy", "l-vae"), "beta_hat:mean"] == pytest.approx(1.0)
    assert ("toy", "factor-vae") not in summary.index          # failed runs are not averaged
    page = (out / "index.html").read_text()
    assert "non-finite loss at step 7" in page and "posterior collapse at step 400" in page


def comparison(out, dataset="toy"):
    return pd.read_csv(out / f"tables/comparison_{dataset}.csv").set_index(["label", "metric"])


@pytest.mark.parametrize("metric, best, second", [
    ("mig/discrete_mig", "beta-vae", "l-vae"),                 # higher is better
    ("reconstruction/squared_error", "sigma-vae", "l-vae"),    # lower; σ-VAE ranked on it
    ("reconstruction/negative_elbo", "l-vae", "beta-vae-fixed-beta-hat")])  # σ-VAE's not ranked
def test_bold_is_the_best_mean_and_underline_the_second(built, metric, best, second):
    out, _ = built
    table = comparison(out).xs(metric, level="metric")
    assert table.index[table["mark"] == "best"].tolist() == [best]
    assert table.index[table["mark"] == "second"].tolist() == [second]
    md = (out / "tables/comparison_toy.md").read_text()
    column = [c.strip() for c in md.splitlines()[2].split("|")].index(
        f"{metric} {'↑' if metric.startswith('mig') else '↓'}")
    cells = {row.split("|")[1].strip(): row.split("|")[column].strip()
             for row in md.splitlines()[4:] if row.startswith("| ")}
    assert cells[best].startswith("**") and cells[second].startswith("<u>")
    tex = (out / "tables/comparison_toy.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{" in tex and "\\underline{" in tex


def test_sigma_vae_negative_elbo_is_not_ranked_and_footnoted(built):
    out, _ = built
    table = comparison(out)
    sigma = table.loc[("sigma-vae", "reconstruction/negative_elbo")]
    assert not sigma["ranked"] and pd.isna(sigma["rank"])       # its 50 would be "best"
    assert table.loc[("sigma-vae", "reconstruction/squared_error"), "ranked"]
    md = (out / "tables/comparison_toy.md").read_text()
    assert "† In the model's own Gaussian likelihood" in md
    sigma_row = next(r for r in md.splitlines() if r.startswith("| sigma-vae"))
    assert sigma_row.count("†") == 1
    significance = pd.read_csv(out / "tables/significance.csv")
    assert not ((significance.label == "sigma-vae")
                & (significance.metric == "reconstruction/negative_elbo")).any()


def test_ablation_pairs_the_source_seed_and_its_beta_hat(built):
    out, _ = built
    pairs = pd.read_csv(out / "tables/ablation_pairs.csv")
    mig = pairs[pairs.metric == "mig/discrete_mig"].set_index("seed")
    assert mig["source_seed"].tolist() == [4, 3, 2, 1, 0]
    assert mig["beta_hat_used"].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert mig["learned"].tolist() == pytest.approx([0.4 + OFFSETS[4 - s] for s in range(5)])
    assert mig["fixed"].tolist() == pytest.approx([0.35 + o for o in OFFSETS])
    table = pd.read_csv(out / "tables/ablation.csv").set_index("metric")
    row = table.loc["mig/discrete_mig"]
    assert row["pairs"] == 5 and row["beta_hat_used"] == "2.5 ± 1.6"
    expected = scipy_stats.wilcoxon(mig["learned"], mig["fixed"]).pvalue
    assert row["p"] == pytest.approx(expected)


def test_learned_beta_hat_per_dataset(built):
    out, _ = built
    table = pd.read_csv(out / "tables/beta_hat.csv").set_index(["dataset", "method"])
    row = table.loc[("toy", "l-vae")]                    # final β̂ 0.5, 0.75, 1.0, 1.25, 1.5
    assert row["mean"] == pytest.approx(1.0) and row["min"] == 0.5
    assert row["relative to 1"] == "below 1 in 2 of 5 seeds"


def test_p_values_match_scipy_and_are_marked(built):
    out, _ = built
    tests = pd.read_csv(out / "tables/significance.csv").set_index(["dataset", "label", "metric"])
    paired = tests.loc[("pair", "vae", "mig/discrete_mig")]
    assert paired["test"] == "wilcoxon" and paired["n"] == 6
    assert paired["p"] == pytest.approx(2 / 2 ** 6)              # exact: all 6 differences < 0
    assert paired["p"] == pytest.approx(scipy_stats.wilcoxon(
        [0.2 + 0.02 * s for s in range(6)], [0.5 + 0.01 * s for s in range(6)]).pvalue)
    unpaired = tests.loc[("pair", "beta-vae", "mig/discrete_mig")]     # seeds 10-12 vs 0-5
    assert unpaired["test"] == "mannwhitneyu"
    assert unpaired["p"] == pytest.approx(scipy_stats.mannwhitneyu(
        [0.1, 0.2, 0.3], [0.5 + 0.01 * s for s in range(6)], alternative="two-sided").pvalue)
    assert unpaired["p"] < paired["p"]            # Holm over the two: x2 the smaller, then max
    assert unpaired["p_holm"] == pytest.approx(2 * unpaired["p"])
    assert paired["p_holm"] == pytest.approx(max(2 * unpaired["p"], paired["p"]))
    pair = comparison(out, "pair")
    starred = pair[pair["p_holm"] < 0.05].index.get_level_values("label").tolist()
    md = (out / "tables/comparison_pair.md").read_text()
    for label in ("vae", "beta-vae"):
        row = next(r for r in md.splitlines() if r.startswith(f"| {label} "))
        assert ("\\*" in row) == (label in starred)


def test_holm_on_a_hand_example():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> non-decreasing: 0.03, 0.06, 0.06
    assert stats.holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert stats.holm([0.6, np.nan, 0.5]) == pytest.approx([1.0, np.nan, 1.0], nan_ok=True)


def test_metric_directions_are_declared_beside_the_metrics():
    directions = metrics.directions()
    assert directions["mig/discrete_mig"] == metrics.HIGHER
    assert directions["dci-fast/informativeness_test"] == metrics.HIGHER
    for lower in ("unsupervised/gaussian_total_correlation", "reconstruction/negative_elbo",
                  "reconstruction/reconstruction_loss", "reconstruction/squared_error"):
        assert directions[lower] == metrics.LOWER
    assert directions["factor-vae/num_active_dims"] is None
    assert {name.split("/")[0] for name in directions} == set(metrics.available()) | {
        "reconstruction"}


def test_report_order_groups_variants_after_their_method():
    runs = pd.DataFrame({
        "label": ["l-vae-noreg", "beta-vae-fixed-beta-hat", "l-vae", "beta-vae-beta=8", "vae",
                  "factor-vae", "beta-vae", "new-method"],
        "method": ["l-vae-noreg", "beta-vae", "l-vae", "beta-vae", "vae", "factor-vae",
                   "beta-vae", "new-method"],
        "ablation_of": [None, "l-vae", None, None, None, None, None, None]})
    assert load.label_order(runs) == ["vae", "beta-vae", "beta-vae-beta=8", "factor-vae",
                                      "l-vae", "beta-vae-fixed-beta-hat", "l-vae-noreg",
                                      "new-method"]


def test_tables_follow_the_report_order(built):
    out, _ = built
    md = (out / "tables/comparison_toy.md").read_text()
    rows = [r.split("|")[1].strip() for r in md.splitlines() if r.startswith("| ")][1:]
    assert rows == ["vae", "beta-vae", "beta-vae-beta=8", "control-vae", "sigma-vae", "l-vae",
                    "beta-vae-fixed-beta-hat"]


def test_unreadable_runs_are_listed_and_stale_files_removed(tmp_path, capsys):
    small_results(tmp_path)
    assert report.main([str(tmp_path)]) == 0
    assert (tmp_path / "tables/comparison_toy.md").is_file()
    for status in tmp_path.glob("runs/*/*/seed*/status.json"):
        status.write_text("{truncated")
    (tmp_path / "runs/toy/vae/seed0/status.json").unlink()
    assert report.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "runs/toy/vae/seed0: status.json missing" in err
    assert "runs/toy/l-vae/seed1/status.json is unreadable" in err and "no readable run" in err
    assert not (tmp_path / "plots").exists()
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["runs.csv", "summary.csv"]
    page = (tmp_path / "index.html").read_text()
    assert "Unreadable run files" in page and "runs/toy/vae/seed0: status.json missing" in page


def test_a_corrupt_metrics_file_is_named_and_the_rest_reported(tmp_path, capsys):
    small_results(tmp_path)
    (tmp_path / "runs/toy/vae/seed2/metrics.json").write_text("not json")
    assert report.main([str(tmp_path)]) == 0
    assert "runs/toy/vae/seed2/metrics.json is unreadable" in capsys.readouterr().err
    summary = pd.read_csv(tmp_path / "tables/summary.csv").set_index(["dataset", "label"])
    assert summary.loc[("toy", "vae"), "mig/discrete_mig:count"] == 2


def test_empty_results_folder(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "is not a results folder (it holds no runs/)" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    assert report.main([str(tmp_path)]) == 1
    assert "no runs" in capsys.readouterr().out
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_traversal_sheet_is_the_median_seed(built):
    out, _ = built
    page = (out / "index.html").read_text()
    # toy vae: MIG by seed = 0.18, 0.19, 0.2, 0.21, 0.22 -> median seed 2
    assert 'src="runs/toy/vae/seed2/traversals.png"' in page
    assert 'src="runs/toy/vae/seed2/reconstructions.png"' in page
    kl = json.loads((out / "runs/toy/vae/seed2/kl_per_dim.json").read_text())["kl"]
    assert len(kl) == 4
