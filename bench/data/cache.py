"""The array cache that real datasets are converted into once, and the checks on their files.

A converted set is one uint8 `.npy` array (N, 64, 64, 3) in the data folder's `cache/`,
loaded memory-mapped. Beside it a `<name>.json` stamp records what it was built from (the
source's size and mtime, the conversion settings) and the array file's own size and mtime;
any difference rebuilds it. The array is written to a temporary file that is renamed only
once complete, and the stamp is written after the rename, so a crash or a bad input never
leaves a cache that is used.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..io import atomic_path, write_json
from .base import DatasetError

SIZE = 64                                # side of the cached images
RESAMPLE = Image.Resampling.BOX          # area average; 128 -> 64 is an exact 2x2 mean
CACHE_VERSION = 1                        # bump when the conversion changes


def cache_dir(root) -> Path:
    return Path(root) / "cache"


def source_key(path) -> dict:
    """What identifies a source file or folder: its path, size and modification time."""
    path = Path(path)
    stat = path.stat()
    return {"source": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cached_file(path, key: dict, build) -> Path:
    """`path`, first (re)built by `build(tmp_path)` unless its stamp matches `key`."""
    path = Path(path)
    stamp = path.with_name(path.name + ".json")
    try:
        stat = path.stat()
        if json.loads(stamp.read_text()) == {**key, "cache_bytes": stat.st_size,
                                             "cache_mtime_ns": stat.st_mtime_ns}:
            return path
    except (OSError, ValueError):
        pass
    try:
        stamp.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            build(tmp)
    except OSError as err:
        raise DatasetError(f"building the cache {path} failed ({err}); nothing was cached. It "
                           f"lives in the data folder: pass --data-dir or set DISENTBENCH_DATA "
                           f"to a writable folder with room") from err
    stat = path.stat()
    write_json(stamp, {**key, "cache_bytes": stat.st_size, "cache_mtime_ns": stat.st_mtime_ns})
    return path


def ensure_free_space(folder, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        raise DatasetError(f"the cache needs {nbytes / 1e9:.1f} GB in {folder}, but only "
                           f"{free / 1e9:.1f} GB are free; free some space or pass --data-dir "
                           f"(or set DISENTBENCH_DATA) to a larger disk")


def image_cache(path, key: dict, n: int, read, name, crop=None, expect_size=None,
                desc="convert") -> np.ndarray:
    """The (n, 64, 64, 3) uint8 memory map at `path`, built once from encoded images.

    `read(i)` returns the bytes of image i (PNG or JPEG) and `name(i)` names it in errors;
    each is decoded to RGB, checked to be `expect_size` (width, height) when given,
    centre-cropped to `crop` x `crop` when given, and resized to 64 x 64 by area averaging.
    Decoding runs on a thread pool (Pillow releases the GIL while decoding and resizing).
    """
    shape = (n, SIZE, SIZE, 3)

    def build(tmp):
        ensure_free_space(tmp.parent, int(np.prod(shape)))
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        block = 4096
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool, \
                tqdm(total=n, unit="img", desc=desc) as bar:
            for start in range(0, n, block):
                index = range(start, min(start + block, n))
                raw = [(i, read(i)) for i in index]
                out[index.start:index.stop] = list(pool.map(lambda r: _decode(*r), raw))
                bar.update(len(index))
            out.flush()
        del out

    def _decode(i, data):
        try:
            with Image.open(io.BytesIO(data)) as img:
                if expect_size is not None and img.size != tuple(expect_size):
                    raise DatasetError(f"{name(i)} is {img.width}x{img.height}, expected "
                                       f"{expect_size[0]}x{expect_size[1]}; nothing was cached")
                img = img.convert("RGB")
                if crop is not None:
                    left, top = round((img.width - crop) / 2), round((img.height - crop) / 2)
                    img = img.crop((left, top, left + crop, top + crop))
                return np.asarray(img.resize((SIZE, SIZE), RESAMPLE))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"cannot decode image {name(i)} ({err}); replace it with the "
                               f"original file and run again (nothing was cached)") from err

    settings = {"shape": list(shape), "resample": RESAMPLE.name.lower(), "crop": crop,
                "version": CACHE_VERSION}
    path = cached_file(path, {**key, **settings}, build)
    return np.load(path, mmap_mode="r")


def npy_header(f, where):
    """(shape, dtype, data offset) of the .npy stream `f` (format 1.0 or 2.0, C order, no
    objects); anything else is a DatasetError naming `where`."""
    version = np.lib.format.read_magic(f)
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise DatasetError(f"{where}: unsupported .npy format version {version}")
    shape, fortran_order, dtype = readers[version](f)
    if fortran_order or dtype.hasobject:
        raise DatasetError(f"{where}: the array is Fortran-ordered or holds objects; "
                           f"expected a C-ordered uint8 array")
    return shape, dtype, f.tell()


def grid_labels(labels, factor_sizes, factor_names, where) -> tuple:
    """Check that `labels` (N, F) enumerate the factor grid in row-major order.

    Row i must carry the factors of index i: in column f the value depends only on factor f
    of the grid point and takes `factor_sizes[f]` distinct values. The direction of the
    values is not assumed. Returns each factor's values in index order.
    """
    labels = np.asarray(labels)
    n = int(np.prod(factor_sizes))
    if labels.shape != (n, len(factor_sizes)) or labels.dtype.kind not in "fiu":
        raise DatasetError(f"{where}: labels have shape {labels.shape} and dtype {labels.dtype}; "
                           f"expected numbers of shape ({n}, {len(factor_sizes)}) for the grid "
                           f"{dict(zip(factor_names, factor_sizes))}")
    values = []
    stride = n
    for f, (size, fname) in enumerate(zip(factor_sizes, factor_names)):
        stride //= size
        column = np.round(labels[:, f].astype(np.float64), 6)
        first = column[np.arange(size) * stride]         # factor f = k, all others 0
        grid = (np.arange(n) // stride) % size
        if len(np.unique(first)) != size or not np.array_equal(column, first[grid]):
            raise DatasetError(f"{where}: label column {f} ({fname}) does not follow the "
                               f"row-major factor grid {dict(zip(factor_names, factor_sizes))}; "
                               f"this is not the expected file or the factor order differs")
        values.append(labels[np.arange(size) * stride, f])
    return tuple(values)
