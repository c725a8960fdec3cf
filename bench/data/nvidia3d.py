"""Falcor3D and Isaac3D (Nie et al., "Semi-Supervised StyleGAN for Disentanglement Learning",
ICML 2020; github.com/NVlabs/High-res-disentanglement-datasets). CC BY 4.0.

The 128x128 releases are folders `images/NNNNNN.png` (index = row-major position in the factor
grid) plus a labels array (`np.load`-able, (N, F) floats in [0, 1], one column per factor in
index order). The first load checks the labels against the grid and converts the PNGs once
into a 64x64 uint8 array cache (area-averaged); later loads memory-map it.

Isaac3D's README lists its factors in another order than its own index formula; the order
here is the one the index, the labels and the authors' `dataset_demo.py` use.
The hosts are Google Drive folders that allow no scripted download: fetch them in a browser.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import register
from .base import DatasetError, GroundTruthData
from .cache import cache_dir, grid_labels, image_cache, source_key
from .download import data_root

FALCOR3D = dict(
    name="falcor3d", folder="Falcor3D_down128", labels="train-rec.labels",
    url="https://drive.google.com/uc?export=download&id=1XAQfFK1x6cpN1eiovbP0hVfLTm5SsSoJ",
    archive="Falcor3D_128x128 (3.7 GB)",
    factor_names=("lighting_intensity", "lighting_x", "lighting_y", "lighting_z",
                  "camera_x", "camera_y", "camera_z"),
    factor_sizes=(5, 6, 6, 6, 6, 6, 6))

ISAAC3D = dict(
    name="isaac3d", folder="Isaac3D_down128", labels="labels.npy",
    url="https://drive.google.com/uc?export=download&id=1OmQ1G2wnm6eTsSFGTKFZZAh5D3nQTW1B",
    archive="Isaac3D_128x128 (13 GB)",
    factor_names=("shape", "robot_x", "robot_y", "camera_height", "scale", "light_intensity",
                  "light_direction", "object_colour", "wall_colour"),
    factor_sizes=(3, 8, 5, 4, 4, 4, 6, 4, 4))


@register("falcor3d")
def falcor3d(data_dir=None, path=None) -> GroundTruthData:
    """Falcor3D_down128 from `<data>/Falcor3D_down128` (or the folder `path`)."""
    return _load(FALCOR3D, data_dir, path)


@register("isaac3d")
def isaac3d(data_dir=None, path=None) -> GroundTruthData:
    """Isaac3D_down128 from `<data>/Isaac3D_down128` (or the folder `path`)."""
    return _load(ISAAC3D, data_dir, path)


def _load(spec, data_dir, path) -> GroundTruthData:
    root = data_root(data_dir)
    return read_png_grid(Path(path) if path else root / spec["folder"], cache_dir(root), spec)


def read_png_grid(folder, cache, spec) -> GroundTruthData:
    """Load a folder in the layout of `spec` (FALCOR3D or ISAAC3D; tests pass a tiny grid).

    The cache is keyed by the images folder's mtime (it changes when files are added, removed
    or renamed into place) and the labels file's size and mtime.
    """
    name, labels, url, archive = spec["name"], spec["labels"], spec["url"], spec["archive"]
    factor_names, factor_sizes = spec["factor_names"], spec["factor_sizes"]
    folder = Path(folder)
    images_dir, labels_file = folder / "images", folder / labels
    if not images_dir.is_dir() or not labels_file.is_file():
        raise DatasetError(
            f"{name}: {images_dir if labels_file.is_file() else labels_file} not found. Download "
            f"{archive} from {url}, extract it and put the folder at {folder} (it must hold "
            f"images/000000.png ... and {labels}), or pass --data-dir / set DISENTBENCH_DATA "
            f"to the folder that holds it")
    where = f"{folder} ({name}, from {url})"
    try:
        label_array = np.load(labels_file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DatasetError(f"{labels_file} is not a readable numpy array ({err}); replace it "
                           f"with the {labels} of {archive} from {url}") from err
    values = grid_labels(label_array, factor_sizes, factor_names, f"{labels_file} ({name})")
    n = len(label_array)

    def png(i):
        return images_dir / f"{i:06d}.png"

    def read(i):
        try:
            return png(i).read_bytes()
        except OSError as err:
            raise DatasetError(f"{where}: cannot read {png(i)} ({err.strerror}); the folder must "
                               f"hold {n:,} images 000000.png ... {n - 1:06d}.png (nothing was "
                               f"cached)") from err

    key = {**source_key(images_dir), "labels": source_key(labels_file)}
    images = image_cache(Path(cache) / f"{name}.npy", key, n, read, png, desc=f"convert {name}")
    return GroundTruthData(name, factor_names, factor_sizes, images, layout="NHWC",
                           factor_values=values)
