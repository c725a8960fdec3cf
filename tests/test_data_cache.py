"""The array cache, the labels-grid check and the host/GPU storage of GroundTruthData."""
import json

import numpy as np
import pytest
import torch

from disentbench.bench.data import base
from disentbench.bench.data.base import DatasetError, GroundTruthData
from disentbench.bench.data.cache import cached_file, grid_labels


def _write(value):
    def build(tmp):
        np.save(open(tmp, "wb"), np.full(3, value))
    return build


def test_cached_file_builds_once_and_rebuilds_on_a_new_key(tmp_path):
    path = tmp_path / "a.npy"
    calls = []
    for key, value in [({"k": 1}, 1), ({"k": 1}, 2), ({"k": 2}, 3)]:
        cached_file(path, key, lambda tmp, v=value: (calls.append(v), _write(v)(tmp)))
    assert calls == [1, 3]
    assert np.load(path)[0] == 3
    assert json.loads((tmp_path / "a.npy.json").read_text())["k"] == 2


def test_cached_file_rebuilds_when_the_cache_file_was_touched(tmp_path):
    path = tmp_path / "a.npy"
    cached_file(path, {"k": 1}, _write(1))
    np.save(open(path, "wb"), np.zeros(5))              # changed behind the stamp's back
    cached_file(path, {"k": 1}, _write(7))
    assert np.load(path).tolist() == [7, 7, 7]


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    path = tmp_path / "a.npy"
    cached_file(path, {"k": 1}, _write(1))

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise DatasetError("bad input")
    with pytest.raises(DatasetError):
        cached_file(path, {"k": 2}, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]   # old array, no stamp
    cached_file(path, {"k": 1}, _write(9))                 # so it is rebuilt, never trusted
    assert np.load(path)[0] == 9


def _grid(sizes, values=None):
    factors = np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), -1)
    return factors.astype(np.float64) if values is None else \
        np.stack([values[f][factors[:, f]] for f in range(len(sizes))], -1)


def test_grid_labels_accepts_any_value_direction_and_returns_the_values():
    sizes, names = (2, 3, 4), ("a", "b", "c")
    values = [np.array([0.5, 0.25]), np.array([-30.0, 0.0, 30.0]), np.linspace(1, 0, 4)]
    got = grid_labels(_grid(sizes, values), sizes, names, "x")
    for g, v in zip(got, values):
        np.testing.assert_array_equal(g, v)


@pytest.mark.parametrize("damage", ["swap_columns", "shuffle_rows", "merge_values", "shape"])
def test_grid_labels_rejects_labels_off_the_grid(damage):
    sizes, names = (2, 3, 4), ("a", "b", "c")
    labels = _grid(sizes)
    if damage == "swap_columns":
        labels = labels[:, [0, 2, 1]]
    elif damage == "shuffle_rows":
        labels = labels[np.random.RandomState(0).permutation(len(labels))]
    elif damage == "merge_values":
        labels[labels[:, 1] == 2, 1] = 1
    else:
        labels = labels[:-1]
    with pytest.raises(DatasetError, match="x: label"):
        grid_labels(labels, sizes, names, "x")


@pytest.fixture
def mapped(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    data = GroundTruthData("t", ("a", "b"), (3, 4), np.load(tmp_path / "images.npy", mmap_mode="r"),
                           layout="NHWC")
    return data, images


def test_memory_mapped_gather_is_nchw_and_row_major(mapped):
    data, images = mapped
    assert data.image_shape == (3, 8, 8) and data.has_factors
    got = data.images_from_factors(np.array([[2, 1], [0, 3]]))
    assert got.dtype == torch.uint8 and got.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(got.numpy(), images[[9, 3]].transpose(0, 3, 1, 2))
    batch = data.sample_batch(5, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 3, 8, 8)


def test_to_cpu_keeps_the_map_and_to_tensor_copies_in_chunks(mapped):
    data, images = mapped
    assert data.to("cpu").images is data.images and isinstance(data.images, np.memmap)
    tensor = base.to_tensor(data.images, "NHWC", "cpu", chunk=5)
    np.testing.assert_array_equal(tensor.numpy(), images.transpose(0, 3, 1, 2))


def test_cuda_upload_only_when_it_fits(mapped, monkeypatch):
    data, _ = mapped
    gib = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * gib, 10 * gib))
    assert not base.fits_on("cuda", data.images.nbytes)      # 3 GiB - 2 GiB - 15 % of 10 GiB < 0
    assert isinstance(data.to("cuda").images, np.memmap)     # stays mapped on the host
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * gib, 10 * gib))
    assert base.fits_on("cuda", data.images.nbytes)
    assert not base.fits_on("cuda", 5 * gib)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_upload_moves_a_mapped_set_to_the_gpu(mapped):
    data, images = mapped
    data.to("cuda")
    assert data.images.is_cuda and data.layout == "NCHW" and data.device.type == "cuda"
    batch = data.images_from_factors(torch.tensor([[2, 1]], device="cuda"))
    np.testing.assert_array_equal(batch.cpu().numpy(), images[[9]].transpose(0, 3, 1, 2))


def test_an_unwritable_cache_folder_is_a_clear_error(tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.raises(DatasetError, match="building the cache .* failed .* writable folder"):
        cached_file(tmp_path / "cache" / "a.npy", {"k": 1}, _write(1))
