"""3D Shapes (Burgess & Kim, 2018; introduced with FactorVAE, Kim & Mnih, ICML 2018).

`3dshapes.h5` holds `images` (480000, 64, 64, 3) uint8 and `labels` (480000, 6) float64 in
row-major factor order: floor hue 10, wall hue 10, object hue 10, scale 8 (0.75..1.25),
shape 4, orientation 15 (-30..30). The file is gzip-chunked HDF5, so the images are unpacked
once into the array cache and memory-mapped from then on. Apache-2.0.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from . import register
from .base import DatasetError, GroundTruthData
from .cache import cache_dir, cached_file, ensure_free_space, grid_labels, source_key
from .download import data_root, fetch

FILE = "3dshapes.h5"
URL = "https://storage.googleapis.com/3d-shapes/3dshapes.h5"
SHA256 = "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785"
BYTES = 267_573_662
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


@register("shapes3d")
def shapes3d(data_dir=None, path=None) -> GroundTruthData:
    """Download (or find at `path`) and verify 3dshapes.h5, then load it."""
    root = data_root(data_dir)
    path = fetch(URL, Path(path) if path else root / FILE, sha256=SHA256, size=BYTES)
    return read_shapes3d(path, cache_dir(root), FACTOR_SIZES)


def read_shapes3d(path, cache, factor_sizes=FACTOR_SIZES) -> GroundTruthData:
    """Load a file in the 3dshapes.h5 format whose grid is `factor_sizes`."""
    path = Path(path)
    n = int(np.prod(factor_sizes))
    where = f"{path} (3D Shapes, from {URL})"
    try:
        with h5py.File(path, "r") as f:
            images, labels = f.get("images"), f.get("labels")
            if images is None or labels is None:
                raise DatasetError(f"{where}: expected the datasets 'images' and 'labels', "
                                   f"found {sorted(f.keys())}")
            if images.shape != (n, 64, 64, 3) or images.dtype != np.uint8:
                raise DatasetError(f"{where}: 'images' has shape {images.shape} and dtype "
                                   f"{images.dtype}; expected ({n}, 64, 64, 3) uint8")
            values = grid_labels(labels[()], factor_sizes, FACTOR_NAMES, where)
    except OSError as err:
        raise DatasetError(f"{where} is not a readable HDF5 file ({err}); download it again "
                           f"and put it at {path}") from err

    def build(tmp):
        ensure_free_space(tmp.parent, n * 64 * 64 * 3)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 64, 64, 3))
        with h5py.File(path, "r") as f, tqdm(total=n, unit="img", desc="unpack 3dshapes") as bar:
            for start in range(0, n, 10_000):
                stop = min(start + 10_000, n)
                out[start:stop] = f["images"][start:stop]
                bar.update(stop - start)
        out.flush()
        del out

    array = cached_file(Path(cache) / "shapes3d.npy", {**source_key(path), "shape": [n, 64, 64, 3]},
                        build)
    return GroundTruthData("shapes3d", FACTOR_NAMES, factor_sizes, np.load(array, mmap_mode="r"),
                           layout="NHWC", factor_values=values)
