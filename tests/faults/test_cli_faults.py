"""Faults of the grid's command line: sizes, bytes, files for folders, flags that look wrong,
links out of --out. One function per fault, named after it; each exits 2 with one line before
anything is trained."""
import pytest

from disentbench.bench import cli, grid

TINY = ["--methods", "vae", "--datasets", "tiny", "--steps", "2", "--log-every", "1",
        "--metrics", "none", "--jobs", "1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def one_error(capsys) -> str:
    """The single line the command wrote to stderr, without 'error: '."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.removeprefix("error: ").rstrip("\n")


def test_a_billion_seeds_is_refused_before_anything_is_built(tmp_path, capsys):
    out = tmp_path / "results"
    assert cli.main([*TINY, "--seeds", "1000000000", "--out", str(out)]) == 2
    assert one_error(capsys).startswith(f"--seeds 1000000000: at most {grid.MAX_SEEDS} seeds")
    assert not out.exists()


def test_a_grid_over_the_run_limit_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grid, "MAX_RUNS", 7)
    out = tmp_path / "results"
    assert cli.main([*TINY, "--methods", "vae,l-vae", "--seeds", "3", "--out", str(out)]) == 2
    assert one_error(capsys) == (
        "the grid has 9 runs (2 method settings x 1 datasets x 3 seeds + 3 fixed-beta-hat ablation "
        "runs); at most 7 per command: split it over --methods, --datasets or --seeds")
    assert not out.exists()


def test_config_with_non_utf8_bytes(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_bytes(b'methods = "vae"\n# caf\xe9\n')
    assert cli.main(["--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert one_error(capsys) == (f"--config {config}: not UTF-8 text (byte 0xe9 at offset 21); "
                                 f"save it as UTF-8")


def test_out_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main([*TINY, "--out", str(afile)]) == 2
    assert one_error(capsys) == (f"--out {afile} is a file, not a folder; name a results folder "
                                 f"(it is created if missing)")


def test_metrics_none_combined_with_a_name(tmp_path, capsys):
    assert cli.main([*TINY, "--metrics", "none,mig", "--out", str(tmp_path)]) == 2
    assert one_error(capsys) == ("--metrics none,mig: 'none' means no metric and cannot be "
                                 "combined with other names; give --metrics none alone, or only "
                                 "the metrics to compute")


def test_negative_lr_taken_for_a_flag(tmp_path, capsys):
    assert cli.main([*TINY, "--lr", "-1e-3", "--out", str(tmp_path)]) == 2
    assert one_error(capsys) == ("argument --lr: expected one argument; a value that starts "
                                 "with '-' must be attached with '=': --lr=-1e-3")
    assert cli.main([*TINY, "--lr=-1e-3", "--out", str(tmp_path)]) == 2
    assert "--lr must be positive and finite, got -0.001" in capsys.readouterr().err


@pytest.mark.parametrize("link", ["runs", "runs/tiny", "runs/tiny/vae", "runs/tiny/vae/seed0",
                                  "tables", "plots"])
def test_folder_linked_outside_out_is_refused_before_training(tmp_path, capsys, link):
    out, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(elsewhere)
    assert cli.main([*TINY, "--out", str(out)]) == 2
    assert one_error(capsys).startswith(f"{out / link} is a link to {elsewhere}, outside the "
                                        f"results folder {out}")
    assert list(elsewhere.iterdir()) == []


def test_ablation_folder_linked_outside_out_is_refused_before_training(tmp_path, capsys):
    out, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "runs/tiny").mkdir(parents=True)
    (out / f"runs/tiny/{grid.ABLATION_LABEL}").symlink_to(elsewhere)
    assert cli.main([*TINY, "--methods", "l-vae", "--out", str(out)]) == 2
    assert f"runs/tiny/{grid.ABLATION_LABEL} is a link to {elsewhere}" in one_error(capsys)
    assert list(elsewhere.iterdir()) == [] and not (out / "runs/tiny/l-vae").exists()


@pytest.mark.parametrize("folder", ["tables", "plots"])
def test_tables_or_plots_that_is_a_file_is_refused_before_training(tmp_path, capsys, folder):
    (tmp_path / folder).write_text("mine")
    assert cli.main([*TINY, "--out", str(tmp_path)]) == 2
    assert one_error(capsys) == (f"{tmp_path / folder} is a file, not a folder; the report "
                                 f"writes its {folder} there: move the file aside")
    assert not (tmp_path / "runs").exists()
