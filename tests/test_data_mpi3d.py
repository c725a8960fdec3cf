"""MPI3D on tiny `.npz` files in the real format (key `images`, (N, 64, 64, 3) uint8, written
by numpy's savez / savez_compressed; only the factor grid is smaller)."""
import zipfile
from pathlib import Path

import numpy as np
import pytest

from disentbench.bench.data import DatasetError, load
from disentbench.bench.data.mpi3d import FACTOR_NAMES, RELEASES, read_mpi3d

TINY = (2, 3, 1, 1, 2, 2, 1)                               # 24 images


def write_npz(path, n=24, compressed=False, key="images", dtype=np.uint8):
    images = np.random.RandomState(n).randint(0, 256, (n, 64, 64, 3)).astype(dtype)
    (np.savez_compressed if compressed else np.savez)(path, **{key: images})
    return images


def test_release_grids():
    assert FACTOR_NAMES == ("object_color", "object_shape", "object_size", "camera_height",
                            "background_color", "horizontal_axis", "vertical_axis")
    for name in ("mpi3d-toy", "mpi3d-realistic", "mpi3d-real"):
        assert RELEASES[name][2] == (6, 6, 2, 3, 3, 40, 40)
        assert np.prod(RELEASES[name][2]) == 1_036_800
    assert RELEASES["mpi3d-complex"][0] == "real3d_complicated_shapes_ordered.npz"
    assert RELEASES["mpi3d-complex"][2] == (4, 4, 2, 3, 3, 40, 40)
    assert np.prod(RELEASES["mpi3d-complex"][2]) == 460_800


def test_stored_npz_is_mapped_in_place_row_major(tmp_path):
    path = tmp_path / "mpi3d_toy.npz"
    images = write_npz(path)
    data = read_mpi3d(path, tmp_path / "cache", "mpi3d-toy", TINY)
    assert isinstance(data.images, np.memmap)
    assert Path(data.images.filename).resolve() == path.resolve()
    assert not (tmp_path / "cache").exists()                         # nothing copied
    assert (len(data), data.image_shape, data.pixel_max, data.factor_names) == \
        (24, (3, 64, 64), 255, FACTOR_NAMES)
    factors = np.array([[1, 2, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1, 0]])
    index = np.ravel_multi_index(factors.T, TINY)
    np.testing.assert_array_equal(index, [22, 5])
    np.testing.assert_array_equal(data.images_from_factors(factors).numpy(),
                                  images[index].transpose(0, 3, 1, 2))


def test_compressed_npz_is_extracted_once_into_the_cache(tmp_path):
    path, cache = tmp_path / "mpi3d_real.npz", tmp_path / "cache"
    images = write_npz(path, compressed=True)
    data = read_mpi3d(path, cache, "mpi3d-real", TINY)
    assert Path(data.images.filename).resolve() == (cache / "mpi3d_real.images.npy").resolve()
    np.testing.assert_array_equal(np.asarray(data.images), images)
    stamp = (cache / "mpi3d_real.images.npy").stat().st_mtime_ns
    read_mpi3d(path, cache, "mpi3d-real", TINY)
    assert (cache / "mpi3d_real.images.npy").stat().st_mtime_ns == stamp


def test_length_is_checked_against_the_release_grid(tmp_path):
    write_npz(tmp_path / "mpi3d_toy.npz")
    with pytest.raises(DatasetError, match=r"24 images, but the factor grid .* has 1,036,800"):
        load("mpi3d-toy", tmp_path, path=tmp_path / "mpi3d_toy.npz")
    with pytest.raises(DatasetError, match="has 460,800"):
        load("mpi3d-complex", tmp_path, path=tmp_path / "mpi3d_toy.npz")


@pytest.mark.parametrize("damage, message", [
    ("key", r"no array 'images' in the file \(it has \['imgs'\]\)"),
    ("dtype", r"dtype float32; expected \(N, 64, 64, 3\) uint8"),
    ("truncated", "not a readable .npz file"),
    ("not_zip", "not a readable .npz file"),
])
def test_bad_files_name_the_file(tmp_path, damage, message):
    path = tmp_path / "mpi3d_toy.npz"
    write_npz(path, key="imgs" if damage == "key" else "images",
              dtype=np.float32 if damage == "dtype" else np.uint8)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100_000])
    if damage == "not_zip":
        path.write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(DatasetError, match=message) as err:
        read_mpi3d(path, tmp_path / "cache", "mpi3d-toy", TINY)
    assert str(path) in str(err.value)


def test_stored_member_shorter_than_its_header_is_rejected(tmp_path):
    path = tmp_path / "mpi3d_toy.npz"
    images = np.zeros((24, 64, 64, 3), np.uint8)
    header = np.lib.format.header_data_from_array_1_0(images)
    with zipfile.ZipFile(path, "w") as zf, zf.open("images.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(images[:23].tobytes())
    with pytest.raises(DatasetError, match="does not match its header"):
        read_mpi3d(path, tmp_path / "cache", "mpi3d-toy", TINY)


def test_registered_loaders_say_where_to_get_the_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("mpi3d-toy", tmp_path)
    assert "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/mpi3d_toy.npz" \
        in str(err.value) and str(tmp_path / "mpi3d_toy.npz") in str(err.value)
    assert "DISENTBENCH_OFFLINE" in str(err.value)
    with pytest.raises(DatasetError) as err:
        load("mpi3d-complex", tmp_path)
    assert "https://drive.google.com/file/d/1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm" in str(err.value)
    assert str(tmp_path / "real3d_complicated_shapes_ordered.npz") in str(err.value)
