"""Optional dependencies, imported when first used; a missing one names the extra that installs it.

    numba = extras.require("numba", "fast", "the metric dci-fast")
"""
from __future__ import annotations

import importlib

# extra -> what it installs (pyproject.toml's [project.optional-dependencies])
EXTRAS = {"fast": "numba", "cluster": "dask[distributed], dask-jobqueue",
          "track": "tensorboard, mlflow", "test": "pytest, selenium"}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the pip command."""


def require(module: str, extra: str, purpose: str):
    """The imported `module`, or MissingExtra: `purpose` needs it, and `pip install
    "disentbench[extra]"` installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingExtra(f"{purpose} needs {package}, which is not installed ({err}); "
                           f"install it with: pip install \"disentbench[{extra}]\"") from None
