"""The report page says when its models are untrained, and its training panels' titles do not
meet."""
import pandas as pd
import pytest

from disentbench.bench import report
from disentbench.bench.report import page, plots
from tests.report_runs import fake_run


def results(out, profile):
    for label in ("vae", "beta-vae", "l-vae"):
        for seed in range(2):
            fake_run(out, "dsprites", label, seed, config={"profile": profile},
                     values={"mig/discrete_mig": 0.01 * (seed + 1), "sap/SAP_score": 0.02})
    report.build(out)
    return (out / "index.html").read_text(encoding="utf-8")


def test_quick_runs_carry_the_untrained_warning_on_the_page_and_in_captions(tmp_path):
    text = results(tmp_path, "quick")
    assert "<p class=warning>Untrained models (quick profile)" in text
    assert page.TRAINED_COMMAND in text
    assert ("methods × headline metrics; reconstruction term: bernoulli-sum — untrained models "
            "(quick profile)") in text
    markdown = (tmp_path / "tables" / "comparison_dsprites.md").read_text(encoding="utf-8")
    assert markdown.splitlines()[0].endswith(f"trained models: {page.TRAINED_COMMAND}")


def test_paper_runs_have_no_warning(tmp_path):
    text = results(tmp_path, "paper")
    assert "class=warning" not in text and "untrained" not in text


def test_training_panel_titles_do_not_overlap(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path: figures.append(fig) or path)
    steps = list(range(25, 1025, 25))
    histories = pd.DataFrame([{"dataset": "dsprites-procedural", "label": label, "seed": seed,
                               "step": s, "loss": 900 - s / 10, "recon": 800 - s / 10,
                               "kl": 5.0 + seed}
                              for label in ("vae", "l-vae") for seed in range(2) for s in steps])
    plots.training(histories, "dsprites-procedural", ["vae", "l-vae"],
                   plots.palette(["vae", "l-vae"]), tmp_path / "t.png")
    (fig,) = figures
    fig.canvas.draw()
    boxes = sorted((ax.title.get_window_extent() for ax in fig.axes if ax.get_title()),
                   key=lambda box: box.x0)
    assert len(boxes) == 3
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))


@pytest.mark.parametrize("profiles, expected", [(["smoke"], "smoke profile"),
                                                (["paper", "quick"], "quick profile"),
                                                (["paper", ""], "")])
def test_untrained_note(profiles, expected):
    assert (expected in page.untrained_note(profiles)) if expected else \
        page.untrained_note(profiles) == ""
