"""check_inside: links inside the results folder are followed, links out of it are named."""
import pytest

from disentbench.bench.paths import OutsideResults, check_inside


def test_link_within_the_results_folder_is_allowed(tmp_path):
    (tmp_path / "runs/real").mkdir(parents=True)
    (tmp_path / "runs/alias").symlink_to(tmp_path / "runs/real")
    assert check_inside(tmp_path, tmp_path / "runs/alias/vae/seed0")


def test_results_folder_that_is_itself_a_link_is_allowed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    assert check_inside(tmp_path / "out", tmp_path / "out/runs/d/vae/seed0")


def test_dangling_link_out_of_the_results_folder_is_refused(tmp_path):
    (tmp_path / "out/runs").mkdir(parents=True)
    (tmp_path / "out/runs/d").symlink_to(tmp_path / "gone")
    with pytest.raises(OutsideResults, match="runs/d is a link to .*gone, outside"):
        check_inside(tmp_path / "out", tmp_path / "out/runs/d/vae/seed0")


def test_path_climbing_out_with_dotdot_is_refused(tmp_path):
    with pytest.raises(OutsideResults, match="leaves the results folder"):
        check_inside(tmp_path, tmp_path / "runs/../../x")
