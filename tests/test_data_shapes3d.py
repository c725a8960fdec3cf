"""shapes3d on a tiny 3dshapes.h5 written in the real format (gzip-chunked HDF5, same keys,
dtypes and value ranges; only the factor grid is smaller)."""
import os

import h5py
import numpy as np
import pytest
import torch

from disentbench.bench.data import DatasetError, load
from disentbench.bench.data.shapes3d import FACTOR_NAMES, FACTOR_SIZES, SHA256, read_shapes3d

TINY = (2, 1, 3, 2, 1, 2)                                  # 24 images


def real_values():
    hue = np.linspace(0, 1, 10, endpoint=False)
    return [hue, hue, hue, np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]


def write_shapes3d(path, sizes=TINY, seed=0):
    factors = np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), -1)
    labels = np.stack([v[factors[:, f]] for f, v in enumerate(real_values())], -1)
    images = np.random.RandomState(seed).randint(0, 256, (len(factors), 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", data=labels.astype(np.float64))
    return images, labels, factors


def test_real_factor_grid():
    assert FACTOR_NAMES == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert FACTOR_SIZES == (10, 10, 10, 8, 4, 15) and np.prod(FACTOR_SIZES) == 480_000


def test_tiny_file_loads_row_major_with_its_values(tmp_path):
    images, labels, factors = write_shapes3d(tmp_path / "3dshapes.h5")
    data = read_shapes3d(tmp_path / "3dshapes.h5", tmp_path / "cache", TINY)
    assert (len(data), data.factor_sizes, data.image_shape, data.pixel_max) == \
        (24, TINY, (3, 64, 64), 255)
    np.testing.assert_array_equal(data.factors_from_index(np.arange(24)), factors)
    got = data.images_from_factors(factors[[23, 0, 7]]).numpy()
    np.testing.assert_array_equal(got, images[[23, 0, 7]].transpose(0, 3, 1, 2))
    np.testing.assert_allclose(data.factor_values[3], [0.75, 0.75 + 0.5 / 7])
    np.testing.assert_allclose(data.factor_values[5], [-30, -30 + 60 / 14])
    assert isinstance(data.images, np.memmap)                 # unpacked once, then mapped


def test_rgb_pixels_become_floats_divided_by_255(tmp_path):
    images, _, factors = write_shapes3d(tmp_path / "3dshapes.h5")
    data = read_shapes3d(tmp_path / "3dshapes.h5", tmp_path / "cache", TINY)
    floats = data.to_float(data.images_from_factors(factors))
    assert floats.dtype == torch.float32 and floats.max().item() == 1.0
    np.testing.assert_allclose(floats.numpy(), images.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


def test_cache_follows_the_source_file(tmp_path):
    path, cache = tmp_path / "3dshapes.h5", tmp_path / "cache"
    write_shapes3d(path, seed=0)
    read_shapes3d(path, cache, TINY)
    stamp = (cache / "shapes3d.npy").stat().st_mtime_ns
    read_shapes3d(path, cache, TINY)
    assert (cache / "shapes3d.npy").stat().st_mtime_ns == stamp     # reused
    images, _, _ = write_shapes3d(path, seed=1)
    os.utime(path, ns=(1, 1))                                       # a different file
    data = read_shapes3d(path, cache, TINY)
    np.testing.assert_array_equal(np.asarray(data.images), images)


def test_file_is_checked_against_the_real_grid(tmp_path):
    write_shapes3d(tmp_path / "3dshapes.h5")
    with pytest.raises(DatasetError, match=r"expected \(480000, 64, 64, 3\) uint8"):
        read_shapes3d(tmp_path / "3dshapes.h5", tmp_path / "cache")


def test_labels_in_another_order_are_rejected(tmp_path):
    path = tmp_path / "3dshapes.h5"
    write_shapes3d(path)
    with h5py.File(path, "r+") as f:
        f["labels"][...] = f["labels"][()][np.random.RandomState(0).permutation(24)]
    with pytest.raises(DatasetError, match="row-major"):
        read_shapes3d(path, tmp_path / "cache", TINY)
    assert not (tmp_path / "cache").exists()


def test_missing_key_and_non_hdf5_file(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("imgs", data=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"'images' and 'labels', found \['imgs'\]"):
        read_shapes3d(tmp_path / "a.h5", tmp_path / "cache", TINY)
    (tmp_path / "b.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="b.h5 .* not a readable HDF5 file"):
        read_shapes3d(tmp_path / "b.h5", tmp_path / "cache", TINY)


def test_registered_loader_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("shapes3d", tmp_path)
    message = str(err.value)
    assert "3dshapes.h5" in message and str(tmp_path / "3dshapes.h5") in message
    assert "https://storage.googleapis.com/3d-shapes/3dshapes.h5" in message and SHA256 in message
    write_shapes3d(tmp_path / "3dshapes.h5")                         # right format, wrong file
    with pytest.raises(DatasetError, match="not the expected file: it has .* bytes, expected "
                                           "267,573,662"):
        load("shapes3d", tmp_path)
    assert not (tmp_path / "cache").exists()
