"""The command line's commands (`run` as the default, `report`, `list`), `--dry-run`,
`--version`, `--help` without torch, and the messages of missing extras."""
import subprocess
import sys

import pytest

from disentbench import __version__, metrics
from disentbench.bench import backend, cli, estimate, flags, precision
from disentbench.bench.cli import main
from disentbench.extras import MissingExtra

TINY = ["--datasets", "tiny", "--device", "cpu", "--profile", "smoke", "--jobs", "1",
        "--methods", "vae", "--metrics", "mig"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_parser_copies_of_engine_constants_match_the_engine():
    assert flags.GPU_JOBS == backend.GPU_JOBS
    assert flags.PRECISIONS == tuple(precision.CHOICES)
    assert flags.AUTO_GROUP == estimate.AUTO_SIZE


def test_help_has_groups_examples_and_the_invoked_name(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/disentbench"])
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: disentbench ")
    for heading in ("what to run:", "training:", "evaluation:", "where it runs:",
                    "results folder:", "examples:", "disentbench list methods"):
        assert heading in text
    monkeypatch.setattr(sys, "argv", ["/x/disentbench/__main__.py"])
    assert flags.program_name() == "python -m disentbench"


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"disentbench {__version__}"


def test_help_and_metrics_import_no_torch_or_numba():
    code = ("import sys; from disentbench.bench.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "import disentbench.metrics as m; m.available()\n"
            "print(sorted(n for n in ('torch', 'numba', 'dask') if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("what, expected", [("methods", "l-vae"), ("metrics", "discrete_mig↑"),
                                            ("datasets", "dsprites-procedural"),
                                            ("profiles", "300000")])
def test_list(capsys, what, expected):
    assert main(["list", what]) == 0
    assert expected in capsys.readouterr().out


def test_list_needs_a_known_table(capsys):
    assert main(["list", "nope"]) == 2
    assert "expected one of methods, metrics, datasets, profiles" in capsys.readouterr().err


def test_dry_run_trains_nothing_then_reports_what_is_done(capsys, tmp_path):
    out = tmp_path / "results"
    assert main(["run", *TINY, "--seeds", "2", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 runs" in text and "to do: 2 runs (40 steps)" in text and "ETA" in text
    assert "already done: 0 of 2 runs" in text and not out.exists()
    assert main([*TINY, "--seeds", "1", "--out", str(out)]) == 0      # run is the default
    capsys.readouterr()
    assert main([*TINY, "--seeds", "2", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "to do: 1 runs (20 steps)" in text and "already done: 1 of 2 runs" in text
    assert not (out / "runs" / "tiny" / "vae" / "seed1").exists()


def test_report_is_a_subcommand(capsys, tmp_path, monkeypatch):
    assert main(["report", "--results", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["disentbench"])
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert capsys.readouterr().out.startswith("usage: disentbench report")


def test_missing_extras_name_the_pip_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert main([*TINY, "--backend", "dask", "--out", str(tmp_path)]) == 2
    assert 'pip install "disentbench[cluster]"' in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(MissingExtra,
                       match=r'dci-fast needs numba.*pip install "disentbench\[fast\]"'):
        metrics.score([[0.0], [1.0]] * 10, [[0], [1]] * 10, ["dci-fast"])
    assert "dci-fast" not in metrics.default_metrics()


def test_config_file_ignores_no_new_flag(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('dry-run = true\nseeds = 2\n')
    assert cli.parse(["--config", str(path)]).dry_run is True
