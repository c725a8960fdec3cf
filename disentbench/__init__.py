"""disentbench: VAE-family disentanglement methods, reference metrics and a grid runner.

The one installed name. Its subpackages are the repository's top-level folders:
`disentbench.bench` (harness, runner, store, report), `disentbench.methods` (the method
registry) and `disentbench.metrics` (the metrics). A wheel holds them under this folder
(setuptools `package-dir` in pyproject.toml); in a source checkout, installed editable or put on
`PYTHONPATH`, they are found beside this folder.
"""
import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "bench")) and _os.path.isfile(
        _os.path.join(_checkout, "bench", "__init__.py")):
    __path__.append(_checkout)   # a source checkout: disentbench.bench is <checkout>/bench

__version__ = "0.1.0"
