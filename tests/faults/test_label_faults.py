"""Run folder names: one per value, the same for equal values, unchanged where `{:g}` was
exact."""
import pytest

from disentbench.bench import grid
from disentbench.bench.spec import RunSpec


def beta(value) -> RunSpec:
    return RunSpec("beta-vae", "tiny", 0, 10, params=(("beta", value),))


def test_betas_equal_to_seven_digits_get_distinct_folders():
    assert beta(8.0000001).label == "beta-vae-beta=8.0000001"
    assert beta(8.0000002).label == "beta-vae-beta=8.0000002"
    assert beta(8.0000001).run_dir("r") != beta(8.0000002).run_dir("r")


def test_minus_zero_and_zero_are_one_run():
    assert beta(-0.0).label == beta(0.0).label == "beta-vae-beta=0"
    assert beta(-0.0) == beta(0.0) and beta(-0.0).digest() == beta(0.0).digest()


@pytest.mark.parametrize("value, name", [(8.0, "8"), (2.0, "2"), (0.5, "0.5"), (1e-05, "1e-05"),
                                         (0.0001, "0.0001"), (100.0, "100"), (1.25, "1.25"),
                                         (1234567.0, "1234567.0"), (1 / 3, "0.3333333333333333")])
def test_folder_names_are_exact_and_unchanged_where_g_was_exact(value, name):
    assert beta(value).label == f"beta-vae-beta={name}"
    assert float(name) == value


def test_grid_names_each_value_once():
    specs = grid.expand(["beta-vae"], ["tiny"], 1, {
        "steps": 10, "batch_size": 8, "latent_dim": 4, "lr": 1e-4, "log_every": 5,
        "checkpoint_every": 5}, {"beta-vae": [{"beta": float("8.0000001")}]}, {"tiny": 5})
    assert [s.label for s in specs] == ["beta-vae-beta=8.0000001"]
