"""Falcor3D and Isaac3D on tiny folders in the real layout (`images/NNNNNN.png` at 128x128 plus
the labels array, (N, F) float64 in [0, 1]) built from the 83 real traversal images in
../shared/data/falcor3d_isaac3d_samples (CC BY 4.0, NVIDIA)."""
import os
import time

import numpy as np
import pytest
from PIL import Image

from disentbench.bench.data import DatasetError, load
from disentbench.bench.data.nvidia3d import FALCOR3D, ISAAC3D, read_png_grid

SPECS = {"falcor3d": FALCOR3D, "isaac3d": ISAAC3D}


@pytest.fixture(scope="module")
def samples(request):
    shared = request.getfixturevalue("shared_dir") / "data" / "falcor3d_isaac3d_samples"
    return {name: dict(np.load(shared / f"{name}_traversals_128.npz")) for name in SPECS}


def write_folder(folder, spec, sizes, images):
    """A folder in the release layout for the grid `sizes`; image i is `images[i]`."""
    (folder / "images").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / "images" / f"{i:06d}.png")
    factors = np.stack(np.unravel_index(np.arange(len(images)), sizes), -1)
    labels = factors / np.maximum(np.array(sizes) - 1, 1)
    with open(folder / spec["labels"], "wb") as f:         # np.save would append ".npy"
        np.save(f, labels.astype(np.float64))
    return {**spec, "factor_sizes": tuple(sizes)}


def area_mean(images):
    """64x64 by 2x2 averaging, computed independently of the loader."""
    images = np.asarray(images, dtype=np.float64)
    return images.reshape(len(images), 64, 2, 64, 2, 3).mean((2, 4))


def assert_resized(got_nchw, originals_128):
    got = got_nchw.numpy().transpose(0, 2, 3, 1).astype(np.float64)
    assert np.abs(got - area_mean(originals_128)).max() <= 1.0


def test_factor_order_matches_the_authors_demo(samples):
    """Names and sizes in the order of dataset_demo.py, which the index formula follows."""
    ours = {"falcor3d": {"lighting_intensity": "lighting_intensity",
                         "lighting_x-dir": "lighting_x", "lighting_y-dir": "lighting_y",
                         "lighting_z-dir": "lighting_z", "camera_x-pos": "camera_x",
                         "camera_y-pos": "camera_y", "camera_z-pos": "camera_z"},
            "isaac3d": {"object_shape": "shape", "robot_x-move": "robot_x",
                        "robot_y-move": "robot_y", "camera_height": "camera_height",
                        "object_scale": "scale", "lighting_intensity": "light_intensity",
                        "lighting_y-dir": "light_direction", "object_color": "object_colour",
                        "wall_color": "wall_colour"}}
    for name, spec in SPECS.items():
        names = tuple(ours[name][n] for n in samples[name]["factor_names"])
        assert names == spec["factor_names"]
        assert tuple(samples[name]["factor_sizes"]) == spec["factor_sizes"]
    assert np.prod(FALCOR3D["factor_sizes"]) == 233_280
    assert np.prod(ISAAC3D["factor_sizes"]) == 737_280
    assert ISAAC3D["factor_sizes"] == (3, 8, 5, 4, 4, 4, 6, 4, 4)


@pytest.mark.parametrize("name", list(SPECS))
def test_each_real_traversal_lands_on_its_factor(tmp_path, samples, name):
    """For every factor f, a grid that varies only f, filled with the real strip of f."""
    spec, sample = SPECS[name], samples[name]
    for f, size in enumerate(spec["factor_sizes"]):
        strip = np.flatnonzero(sample["traversed_factor"] == f)
        strip = strip[np.argsort(sample["latents_classes"][strip, f])]
        assert sample["latents_classes"][strip, f].tolist() == list(range(size))
        sizes = [1] * len(spec["factor_sizes"])
        sizes[f] = size
        tiny = write_folder(tmp_path / f"{name}{f}", spec, sizes, sample["images"][strip])
        data = read_png_grid(tmp_path / f"{name}{f}", tmp_path / f"cache{f}", tiny)
        factors = np.zeros((size, len(sizes)), np.int64)
        factors[:, f] = np.arange(size)
        assert_resized(data.images_from_factors(factors), sample["images"][strip])
        np.testing.assert_allclose(data.factor_values[f], np.arange(size) / (size - 1))


def test_row_major_over_several_factors(tmp_path, samples):
    spec, images = ISAAC3D, samples["isaac3d"]["images"][:12]
    sizes = (2, 1, 3, 1, 1, 1, 2, 1, 1)
    tiny = write_folder(tmp_path / "Isaac3D_down128", spec, sizes, images)
    data = read_png_grid(tmp_path / "Isaac3D_down128", tmp_path / "cache", tiny)
    assert (data.name, data.factor_names, len(data), data.image_shape, data.pixel_max) == \
        ("isaac3d", ISAAC3D["factor_names"], 12, (3, 64, 64), 255)
    factors = np.array([[1, 0, 2, 0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(data.index_from_factors(factors), [11, 2])
    assert_resized(data.images_from_factors(factors), images[[11, 2]])
    assert isinstance(data.images, np.memmap)


def test_cache_is_reused_and_invalidated(tmp_path, samples):
    images = samples["falcor3d"]["images"]
    folder, cache = tmp_path / "Falcor3D_down128", tmp_path / "cache"
    sizes = (2, 1, 1, 1, 1, 1, 2)
    tiny = write_folder(folder, FALCOR3D, sizes, images[:4])
    read_png_grid(folder, cache, tiny)
    built = (cache / "falcor3d.npy").stat().st_mtime_ns
    data = read_png_grid(folder, cache, tiny)
    assert (cache / "falcor3d.npy").stat().st_mtime_ns == built
    time.sleep(0.02)                                   # let the folder's mtime move on
    tmp = folder / "images" / "new.tmp"
    Image.fromarray(images[30]).save(tmp, format="PNG")
    os.replace(tmp, folder / "images" / "000003.png")  # a replaced image changes the folder
    data = read_png_grid(folder, cache, tiny)
    assert_resized(data.images_from_factors(np.array([[1, 0, 0, 0, 0, 0, 1]])), images[[30]])
    assert sorted(p.name for p in cache.iterdir()) == ["falcor3d.npy", "falcor3d.npy.json"]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_image_names_the_file_and_caches_nothing(tmp_path, samples, damage):
    folder, cache = tmp_path / "Falcor3D_down128", tmp_path / "cache"
    tiny = write_folder(folder, FALCOR3D, (2, 1, 1, 1, 1, 1, 3), samples["falcor3d"]["images"][:6])
    bad = folder / "images" / "000004.png"
    if damage == "missing":
        bad.unlink()
    else:
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match="000004.png") as err:
        read_png_grid(folder, cache, tiny)
    assert "nothing was cached" in str(err.value)
    assert list(cache.iterdir()) == []


def test_labels_are_checked(tmp_path, samples):
    folder = tmp_path / "Isaac3D_down128"
    tiny = write_folder(folder, ISAAC3D, (2, 1, 3, 1, 1, 1, 1, 1, 1),
                        samples["isaac3d"]["images"][:6])
    labels = np.load(folder / "labels.npy")
    with open(folder / "labels.npy", "wb") as f:
        np.save(f, labels[:, [2, 1, 0, 3, 4, 5, 6, 7, 8]])    # columns in the README's order
    with pytest.raises(DatasetError, match="labels.npy .*column 0 \\(shape\\) does not follow"):
        read_png_grid(folder, tmp_path / "cache", tiny)
    (folder / "labels.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="labels.npy is not a readable numpy array"):
        read_png_grid(folder, tmp_path / "cache", tiny)


def test_registered_loaders_check_the_real_grid_and_say_where_to_put_files(tmp_path, samples):
    write_folder(tmp_path / "Isaac3D_down128", ISAAC3D, (2, 1, 1, 1, 1, 1, 1, 1, 1),
                 samples["isaac3d"]["images"][:2])
    with pytest.raises(DatasetError, match=r"shape \(2, 9\).*expected numbers of shape "
                                           r"\(737280, 9\)"):
        load("isaac3d", tmp_path)
    with pytest.raises(DatasetError) as err:
        load("falcor3d", tmp_path)
    assert FALCOR3D["url"] in str(err.value) and str(tmp_path / "Falcor3D_down128") in str(err.value)
    assert "train-rec.labels" in str(err.value)
