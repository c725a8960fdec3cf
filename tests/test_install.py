"""The installed wheel claims one import name, `disentbench`, and works from a folder whose own
`metrics.py`, `methods.py` and `bench.py` would break the suite if it imported generic names.

Slow (a fresh virtual environment with CPU torch and every dependency, about 2 minutes):
run with `python -m pytest -m install`.
"""
import json
import os
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
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("disentbench-*.whl")
    assert _top_level_names(wheel) == {"disentbench"}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python, cli = venv / "bin" / "python", venv / "bin" / "disentbench"
    _run([python, "-m", "pip", "install", "--quiet", "torch==2.13.0"])   # the CPU build, as CI
    _run([python, "-m", "pip", "install", "--quiet", str(wheel)])

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
    mig = json.loads((run_dir / "metrics.json").read_text())["metrics"]["mig"]["values"]["discrete_mig"]
    assert 0 <= mig <= 1
