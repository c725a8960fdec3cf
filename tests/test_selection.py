"""Model selection by named rules (bench/report/selection.py) on hand-made runs: the median over
seeds decides, every seed of the chosen setting is kept, and Kendall's τ compares the rules."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disentbench import metrics
from disentbench.bench.report import selection

MIG, ERR = "mig/discrete_mig", "reconstruction/squared_error"
DIRECTIONS = {MIG: metrics.HIGHER, ERR: metrics.LOWER}


def runs(rows):
    """rows: (method, label, seed, mig, squared error)."""
    frame = pd.DataFrame(rows, columns=["method", "label", "seed", MIG, ERR])
    return frame.assign(dataset="tiny", ablation_of=None, params="{}",
                        run_dir=[f"runs/tiny/{l}/seed{s}" for l, s in zip(frame["label"],
                                                                           frame["seed"])])


# beta-vae-beta=1 has the single best seed (0.9) but the lower median (0.2 < 0.5)
DONE = runs([("beta-vae", "beta-vae-beta=1", 0, 0.9, 10), ("beta-vae", "beta-vae-beta=1", 1, 0.2, 11),
             ("beta-vae", "beta-vae-beta=1", 2, 0.1, 12),
             ("beta-vae", "beta-vae", 0, 0.5, 30), ("beta-vae", "beta-vae", 1, 0.5, 31),
             ("beta-vae", "beta-vae", 2, 0.6, 32),
             ("l-vae", "l-vae", 0, 0.4, 20), ("l-vae", "l-vae", 1, 0.3, 21),
             ("l-vae", "l-vae", 2, 0.35, 22)])
LABELS = ["beta-vae", "beta-vae-beta=1", "l-vae"]


def chosen(rule, done=DONE, out=Path(".")):
    table, notes = selection.select(done, out, rule, [MIG, ERR], DIRECTIONS, LABELS)
    return dict(zip(table["method"], table["label"])), notes


def test_a_metric_selects_on_the_median_over_seeds_not_the_best_seed():
    picked, notes = chosen("mig")
    assert picked == {"beta-vae": "beta-vae", "l-vae": "l-vae"}
    assert "median over seeds" in notes[0] and "no best-seed picking" in notes[0]


def test_a_lower_is_better_metric_picks_the_lowest_median():
    assert chosen(ERR)[0]["beta-vae"] == "beta-vae-beta=1"


def test_a_metric_without_values_falls_back_with_a_note():
    picked, notes = chosen("beta-vae")
    assert picked["beta-vae"] == "beta-vae"
    assert any("beta-vae/eval_accuracy has no values" in n and "selected by mig/discrete_mig" in n
               for n in notes)


def test_mean_rank_over_metrics_can_disagree_with_one_metric():
    extra = runs([("beta-vae", "beta-vae-beta=8", s, 0.45, 5) for s in range(3)])
    done = pd.concat([DONE, extra], ignore_index=True)
    labels = LABELS + ["beta-vae-beta=8"]
    by_rule = {rule: dict(zip(*[selection.select(done, Path("."), rule, [MIG, ERR], DIRECTIONS,
                                                 labels)[0][c] for c in ("method", "label")]))
               for rule in ("mig", selection.MEAN_RANK)}
    # ranks (mig, error): default (1, 3), beta=1 (3, 2), beta=8 (2, 1): means 2, 2.5, 1.5
    assert by_rule["mig"]["beta-vae"] == "beta-vae"
    assert by_rule[selection.MEAN_RANK]["beta-vae"] == "beta-vae-beta=8"


def test_udr_takes_the_setting_with_the_best_median_of_its_runs_scores(monkeypatch, tmp_path):
    asked = []

    def setting_scores(run_dirs, correlation_matrix="lasso"):
        asked.append([p.relative_to(tmp_path).as_posix() for p in run_dirs])
        high = "beta=1" in str(run_dirs[0])
        return {p: (0.8 if high else 0.3) + 0.01 * i for i, p in enumerate(run_dirs)}

    monkeypatch.setattr(selection, "setting_scores", setting_scores)
    picked, notes = chosen(selection.UDR, out=tmp_path)
    assert picked == {"beta-vae": "beta-vae-beta=1", "l-vae": "l-vae"}
    assert ["runs/tiny/l-vae/seed0", "runs/tiny/l-vae/seed1", "runs/tiny/l-vae/seed2"] in asked


def test_udr_without_scores_leaves_out_swept_methods_and_says_so(monkeypatch):
    monkeypatch.setattr(selection, "setting_scores",
                        lambda dirs, correlation_matrix="lasso": {p: np.nan for p in dirs})
    picked, notes = chosen(selection.UDR)
    assert picked == {"l-vae": "l-vae"}
    assert "tiny/beta-vae: no setting of 2 has a score" in notes[-1]


def test_kendall_tau_compares_the_rules_method_rankings():
    a = pd.DataFrame({"mean rank": [1.0, 2.0, 3.0]}, index=["x", "y", "z"])
    same, reverse = a.copy(), a.iloc[::-1].set_axis(a.index)
    table = selection.agreement({"mig": a, "mean-rank": same, "udr": reverse}, "tiny")
    tau = table.set_index(["rule_a", "rule_b"])["kendall_tau"]
    assert tau[("mig", "mean-rank")] == pytest.approx(1.0)
    assert tau[("mig", "udr")] == pytest.approx(-1.0)
    assert set(table["methods"]) == {3}


def test_report_writes_the_selection_tables_sweep_plot_and_agreement(tmp_path, monkeypatch):
    from disentbench.bench import report
    from tests.report_runs import synthetic_results
    monkeypatch.setattr(selection, "setting_scores",
                        lambda dirs, correlation_matrix="lasso": {p: 0.5 for p in dirs})
    synthetic_results(tmp_path, datasets=("dsprites",), labels=(
        "beta-vae", "beta-vae-beta=8", "l-vae", "beta-vae-fixed-beta-hat", "vae"), seeds=3,
        steps=4)
    files = report.build(tmp_path, select="sap")
    names = {f.relative_to(tmp_path).as_posix() for f in files}
    assert "plots/sweep_dsprites_beta-vae.png" in names
    assert "tables/selection_agreement.csv" in names
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    medians = runs[runs["method"] == "beta-vae"].groupby("label")["sap/SAP_score"].median()
    for rule in ("sap", "mean-rank", "udr"):
        table = pd.read_csv(tmp_path / "tables" / f"selection_{rule}_dsprites.csv")
        assert set(table["label"]) & {"vae", "l-vae"} == {"vae", "l-vae"}
        assert set(table["n"]) == {3} and "beta-vae-fixed-beta-hat" not in set(table["label"])
    chosen = pd.read_csv(tmp_path / "tables" / "selection_sap_dsprites.csv")["label"]
    assert medians.idxmax() in set(chosen)
