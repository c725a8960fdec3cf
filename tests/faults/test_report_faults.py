"""Faults around the report: the user's own files, a folder that is not a results folder, links
out of the results folder, metrics that belong to other weights, a full disk. One function per
fault, named after it."""
import errno
import json
import shutil

import pandas as pd
import sys

import pytest
import torch

from disentbench.bench import cli, report
from disentbench.bench.report.manifest import MANIFEST
from disentbench.bench.session import write_checkpoint
from tests.report_runs import fake_run


def two_seeds(out):
    for seed in (0, 1):
        fake_run(out, "toy", "vae", seed, values={"mig/discrete_mig": 0.1 + 0.5 * seed})


def runs_table(out) -> pd.DataFrame:
    return pd.read_csv(out / "tables/runs.csv").set_index("run_dir")


def users_files(out):
    """The user's own table, figure and page, with their contents."""
    files = {out / "tables/important.csv": "a,b\n1,2\n", out / "plots/figure1.png": "png bytes",
             out / "notes.txt": "mine"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def test_report_on_a_folder_without_runs_deletes_nothing(tmp_path, capsys):
    files = users_files(tmp_path)
    (tmp_path / "index.html").write_text("<p>my page</p>")
    files[tmp_path / "index.html"] = "<p>my page</p>"
    assert report.main(["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a results folder (it holds no runs/)" in err
    assert {p: p.read_text() for p in files} == files
    assert not (tmp_path / MANIFEST).exists()


def test_report_rebuild_keeps_the_users_tables_and_plots(tmp_path):
    two_seeds(tmp_path)
    fake_run(tmp_path, "other", "vae", 0, values={"mig/discrete_mig": 0.3})
    report.build(tmp_path)
    files = users_files(tmp_path)
    assert (tmp_path / "tables/comparison_other.md").is_file()
    shutil.rmtree(tmp_path / "runs/other")
    written = report.build(tmp_path)
    assert {p: p.read_text() for p in files} == files
    assert not (tmp_path / "tables/comparison_other.md").exists()   # the report's own, stale
    assert (tmp_path / "tables/comparison_toy.md").is_file() and written


def test_report_manifest_lists_every_file_it_wrote(tmp_path):
    two_seeds(tmp_path)
    written = report.build(tmp_path)
    listed = json.loads((tmp_path / MANIFEST).read_text())["files"]
    on_disk = [p for folder in ("tables", "plots") for p in (tmp_path / folder).rglob("*")
               if p.is_file()] + [tmp_path / "index.html"]
    assert sorted(listed) == sorted(p.relative_to(tmp_path).as_posix() for p in on_disk)
    assert sorted(listed) == sorted(p.relative_to(tmp_path).as_posix() for p in written)


def test_report_edited_manifest_cannot_delete_runs_or_outside_files(tmp_path):
    two_seeds(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep")
    listed = ["runs/toy/vae/seed0/model.pt", "../" + outside.name, str(outside),
              "tables/../runs/toy/vae/seed1/status.json", "notes.txt"]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / MANIFEST).write_text(json.dumps({"files": listed}))
    report.build(tmp_path)
    assert outside.read_text() == "keep" and (tmp_path / "notes.txt").is_file()
    assert (tmp_path / "runs/toy/vae/seed0/model.pt").is_file()
    assert (tmp_path / "runs/toy/vae/seed1/status.json").is_file()


def test_grid_run_keeps_the_users_tables_and_plots_in_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    files = users_files(tmp_path)
    assert cli.main(["--methods", "vae", "--datasets", "tiny", "--steps", "2", "--log-every",
                     "1", "--metrics", "none", "--jobs", "1", "--device", "cpu",
                     "--out", str(tmp_path)]) == 0
    assert {p: p.read_text() for p in files} == files
    assert (tmp_path / "tables/runs.csv").is_file()


def test_grid_on_a_disk_that_fills_up_at_the_report_says_so_in_one_line(tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert cli.main(["--methods", "vae", "--datasets", "tiny", "--steps", "2", "--log-every",
                     "1", "--metrics", "none", "--jobs", "1", "--device", "cpu",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err                   # after the progress bar
    assert err.endswith(f"\nerror: {tmp_path / 'tables/runs.csv'}: no space left on device; free "
                        f"some space and run the report again (the run folders are untouched)\n")
    assert "Traceback" not in err
    assert (tmp_path / "runs/tiny/vae/seed0/model.pt").is_file()


def test_metrics_json_copied_from_another_seed_is_stale(tmp_path, capsys):
    two_seeds(tmp_path)
    shutil.copy(tmp_path / "runs/toy/vae/seed1/metrics.json",
                tmp_path / "runs/toy/vae/seed0/metrics.json")
    assert report.main([str(tmp_path)]) == 0
    runs = runs_table(tmp_path)
    seed0, seed1 = runs.loc["runs/toy/vae/seed0"], runs.loc["runs/toy/vae/seed1"]
    assert seed0["status"] == "stale" and pd.isna(seed0["mig/discrete_mig"])
    assert "metrics.json scored checkpoint" in seed0["reason"] and "model.pt holds" in seed0["reason"]
    assert seed1["status"] == "done" and seed1["mig/discrete_mig"] == pytest.approx(0.6)
    summary = pd.read_csv(tmp_path / "tables/summary.csv")
    assert summary["mig/discrete_mig:count"].tolist() == [1]
    page = (tmp_path / "index.html").read_text()
    assert "1 stale" in page and "metrics.json scored checkpoint" in page


def test_metrics_json_of_weights_trained_again_is_stale(tmp_path):
    two_seeds(tmp_path)
    write_checkpoint(tmp_path / "runs/toy/vae/seed1",                   # trained again since
                     {"step": 20, "model": {"weight": torch.full((2,), 9.0)}})
    report.build(tmp_path)
    runs = runs_table(tmp_path)
    assert runs.loc["runs/toy/vae/seed1", "status"] == "stale"
    assert runs.loc["runs/toy/vae/seed0", "status"] == "done"


def test_metrics_json_without_model_pt_is_not_shown(tmp_path):
    two_seeds(tmp_path)
    (tmp_path / "runs/toy/vae/seed0/model.pt").unlink()
    report.build(tmp_path)
    seed0 = runs_table(tmp_path).loc["runs/toy/vae/seed0"]
    assert seed0["status"] == "damaged" and "model.pt is missing" in seed0["reason"]
    assert pd.isna(seed0["mig/discrete_mig"])


@pytest.mark.parametrize("folder", ["tables", "plots"])
def test_report_refuses_a_results_subfolder_linked_outside(tmp_path, capsys, folder):
    out, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    two_seeds(out)
    elsewhere.mkdir()
    (elsewhere / "runs.csv").write_text("the user's")
    (out / folder).symlink_to(elsewhere)
    assert report.main([str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / folder} is a link to {elsewhere}, outside the results folder" in err
    assert [p.name for p in elsewhere.iterdir()] == ["runs.csv"]
    assert (elsewhere / "runs.csv").read_text() == "the user's"
    assert not (out / "index.html").exists()


@pytest.mark.parametrize("folder", ["tables", "plots"])
def test_report_where_tables_or_plots_is_a_file(tmp_path, capsys, folder):
    two_seeds(tmp_path)
    (tmp_path / folder).write_text("mine")
    assert report.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / folder} is a file, not a folder; the "
                                       f"report writes its {folder} there: move the file aside\n")
    assert (tmp_path / folder).read_text() == "mine" and not (tmp_path / "index.html").exists()


def test_report_on_a_full_disk_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    two_seeds(tmp_path)
    to_csv, written = pd.DataFrame.to_csv, []

    def fills_up(frame, path, **kwargs):           # the disk is full after two tables
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")   # as a full disk's write
        written.append(path)
        return to_csv(frame, path, **kwargs)
    monkeypatch.setattr(pd.DataFrame, "to_csv", fills_up)
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'tables/comparison_toy.csv'}: no space left on device; "
                   f"free some space and run the report again (the run folders are untouched)\n")
    # what it wrote before the disk filled up is listed, so a later build may delete it
    listed = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert listed == ["tables/runs.csv", "tables/summary.csv"]


def test_report_of_a_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert report.main([str(tmp_path / "afile")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "afile")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err


def test_report_unknown_flag_names_the_command_that_was_run(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_bench.py", "report", "--bogus"])
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", "--bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: run_bench.py report" in err and "unrecognized arguments: --bogus" in err
