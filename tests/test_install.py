"""The installed wheel claims one import name, `disentbench`, and works from a folder whose own
`metrics.py`, `methods.py` and `bench.py` would break the suite if it imported generic names.

The base install pulls none of the extras' packages (numba, dask, selenium) and still trains,
scores and reports. Slow (a fresh virtual environment with CPU torch and the base
dependencies, about 2 minutes):
run with `python -m pytest -m install`.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.install

SHADOWS = ("metrics", "methods", "bench")


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/")[0] for name in archive.namelist()}
    return {name.removesuffix(".py") for name in names if not name.endswith((".dist-info", ".data"))}


def test_wheel_installs_one_name_and_ignores_shadowing_modules(tmp_path):
    source, dist = tmp_path / "source", tmp_path / "dist"     # built from a copy: no build/ here
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "results", "*.egg-info", "__pycache__", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("disentbench-*.whl")
    assert _top_level_names(wheel) == {"disentbench"}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python, cli = venv / "bin" / "python", venv / "bin" / "disentbench"
    _run([python, "-m", "pip", "install", "--quiet", "torch==2.13.0"])   # the CPU build, as CI
    _run([python, "-m", "pip", "install", "--quiet", str(wheel)])
    optional = _run([python, "-c", "import importlib.util as u; print([m for m in "
                     "('numba', 'llvmlite', 'dask', 'distributed', 'selenium', 'pytest') "
                     "if u.find_spec(m)])"]).stdout.strip()
    assert optional == "[]", f"the base install pulled optional packages: {optional}"

    user_folder = tmp_path / "user_project"
    user_folder.mkdir()
    for name in SHADOWS:
        (user_folder / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "DISENTBENCH_DATA": str(tmp_path / "data"), "PYTHONPATH": ""}
    _run([python, "-c", "import disentbench.metrics, disentbench.methods, disentbench.bench.cli"],
         cwd=user_folder, env=env)
    _run([cli, "--methods", "vae", "--seeds", "1", "--steps", "2", "--metrics", "mig",
          "--device", "cpu", "--out", "OUT"], cwd=user_folder, env=env)
    run_dir = user_folder / "OUT" / "runs" / "dsprites-procedural" / "vae" / "seed0"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
    assert (user_folder / "OUT" / "index.html").is_file()          # the report, base install
    assert "l-vae" in _run([cli, "list", "methods"], cwd=user_folder, env=env).stdout
    mig = json.loads((run_dir / "metrics.json").read_text())["metrics"]["mig"]["values"]["discrete_mig"]
    assert 0 <= mig <= 1
