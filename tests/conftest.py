"""Shared fixtures. `shared_dir` is the ../shared folder beside the project (reference data,
oracle values); tests that need it skip with the reason when it is absent."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("DISENTBENCH_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if not path.is_dir():
        pytest.skip(f"reference material not found at {path} (the ../shared folder beside the "
                    f"project; set DISENTBENCH_SHARED to its location)")
    return path


@pytest.fixture(autouse=True)
def _offline_and_isolated_data(tmp_path, monkeypatch):
    """No test downloads anything or touches the user's data folder."""
    monkeypatch.setenv("DISENTBENCH_OFFLINE", "1")
    monkeypatch.setenv("DISENTBENCH_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="session", autouse=True)
def _tiny_dataset_registered():
    """Register the in-memory `tiny` dataset (tests/helpers.py) for CLI and harness tests."""
    from disentbench.bench import data
    from tests.helpers import load_tiny
    if "tiny" not in data.available():
        data.register("tiny")(load_tiny)
