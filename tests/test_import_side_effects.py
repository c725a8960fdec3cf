"""Importing the library changes no global state: no matplotlib backend switch (a notebook keeps
its own), no umask change, and `methods/` imports nothing from `bench/`."""
import subprocess
import sys

MODULES = ("disentbench.bench.cli", "disentbench.bench.report", "disentbench.bench.evaluate",
           "disentbench.bench.traversals", "disentbench.bench.backend",
           "disentbench.bench.lvae_study", "disentbench.bench.io", "disentbench.metrics")


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_importing_every_module_keeps_the_backend_and_the_umask():
    code = f"""
import os, matplotlib
matplotlib.use("svg")
os.umask(0o027)
import importlib
for name in {MODULES!r}:
    importlib.import_module(name)
from disentbench.bench.io import write_text
import tempfile, pathlib
folder = pathlib.Path(tempfile.mkdtemp())
write_text(folder / "f", "x")
print(matplotlib.get_backend(), oct(os.umask(0)), oct((folder / "f").stat().st_mode & 0o777))
"""
    assert run(code).split() == ["svg", "0o27", "0o640"]


def test_methods_import_nothing_from_bench():
    code = """
import sys
import disentbench.methods as m
m.available()
print(sorted(n for n in sys.modules if n.startswith("disentbench.bench")))
"""
    assert run(code) == "[]"
