"""MPI3D (Gondal et al., "On the Transfer of Inductive Bias from Simulation to the Real World:
a New Disentanglement Dataset", NeurIPS 2019). CC BY 4.0.

Each release is one `.npz` whose array `images` is (N, 64, 64, 3) uint8 in row-major factor
order. toy, realistic and real: object_color 6, object_shape 6, object_size 2,
camera_height 3, background_color 3, horizontal_axis 40, vertical_axis 40 (1,036,800 images;
an early release and libraries copied from it had 4 colours x 4 shapes = 460,800).
complex (real-world complex shapes): the same factors with 4 colours and 4 shapes (460,800).

The files are ~12.7 GB (5.7 GB for complex) as uint8. An uncompressed `.npz` member is
memory-mapped where it lies; a compressed one is extracted once into the array cache.
The original Google Cloud links died; the authors now host toy/realistic/real on Hugging Face
(linked from github.com/rr-learning/disentanglement_dataset) and complex on Google Drive.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import register
from .base import DatasetError, GroundTruthData
from .cache import cache_dir, cached_file, ensure_free_space, npy_header, source_key
from .download import data_root, fetch, missing_message

FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height",
                "background_color", "horizontal_axis", "vertical_axis")
SIZES = (6, 6, 2, 3, 3, 40, 40)
COMPLEX_SIZES = (4, 4, 2, 3, 3, 40, 40)
MIRROR = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
COMPLEX_URL = "https://drive.google.com/file/d/1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm/view"

# name: (file, url, factor sizes, whether the host allows a scripted download)
RELEASES = {
    "mpi3d-toy": ("mpi3d_toy.npz", MIRROR + "mpi3d_toy.npz", SIZES, True),
    "mpi3d-realistic": ("mpi3d_realistic.npz", MIRROR + "mpi3d_realistic.npz", SIZES, True),
    "mpi3d-real": ("mpi3d_real.npz", MIRROR + "mpi3d_real.npz", SIZES, True),
    "mpi3d-complex": ("real3d_complicated_shapes_ordered.npz", COMPLEX_URL, COMPLEX_SIZES, False),
}


def _loader(name, file, url, sizes, downloadable):
    def load(data_dir=None, path=None) -> GroundTruthData:
        root = data_root(data_dir)
        path = Path(path) if path else root / file
        if downloadable:
            fetch(url, path)
        elif not path.is_file():
            raise DatasetError(missing_message(path, url) + " (Google Drive allows no scripted "
                               "download of a file this large: fetch it in a browser)")
        return read_mpi3d(path, cache_dir(root), name, sizes, url)
    load.__doc__ = f"{name}: {file} from {url} (or at `path`), memory-mapped."
    return load


for _name, _release in RELEASES.items():
    register(_name)(_loader(_name, *_release))


def read_mpi3d(path, cache, name, factor_sizes, url=None) -> GroundTruthData:
    """Load an MPI3D-format `.npz` whose grid is `factor_sizes`."""
    path = Path(path)
    where = f"{path} ({name}{', from ' + url if url else ''})"
    images = npz_array(path, "images", cache, where)
    n = int(np.prod(factor_sizes))
    if images.dtype != np.uint8 or images.shape[1:] != (64, 64, 3):
        raise DatasetError(f"{where}: 'images' has shape {images.shape} and dtype "
                           f"{images.dtype}; expected (N, 64, 64, 3) uint8")
    if len(images) != n:
        hint = (" (this looks like the early 4-colour x 4-shape release; the current one has "
                "6 x 6)" if len(images) == 460_800 and n == 1_036_800 else "")
        raise DatasetError(f"{where}: {len(images):,} images, but the factor grid "
                           f"{dict(zip(FACTOR_NAMES, factor_sizes))} has {n:,}{hint}")
    return GroundTruthData(name, FACTOR_NAMES, factor_sizes, images, layout="NHWC")


def npz_array(path, key, cache, where) -> np.ndarray:
    """Array `key` of the `.npz` at `path`, memory-mapped without reading it into memory."""
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(key + ".npy")
            except KeyError:
                names = [n.removesuffix(".npy") for n in zf.namelist()]
                raise DatasetError(f"{where}: no array {key!r} in the file (it has {names})")
            if info.compress_type != zipfile.ZIP_STORED:
                return _extracted(path, zf, info, cache, where)
        return _mapped_member(path, info, where)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise DatasetError(f"{where} is not a readable .npz file ({err}); download it again "
                           f"and put it at {path}") from err


def _mapped_member(path, info, where) -> np.ndarray:
    """Memory-map an uncompressed `.npy` member in place (its data follow its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise DatasetError(f"{where}: damaged zip entry {info.filename}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        shape, dtype, offset = npy_header(f, where)
    if offset - start + int(np.prod(shape)) * dtype.itemsize != info.file_size:
        raise DatasetError(f"{where}: member {info.filename} is {info.file_size:,} bytes, which "
                           f"does not match its header {shape} {dtype} (truncated file?)")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _extracted(path, zf, info, cache, where) -> np.ndarray:
    """A compressed member, extracted once into the array cache and memory-mapped."""
    def build(tmp):
        ensure_free_space(tmp.parent, info.file_size)
        with zf.open(info) as src, open(tmp, "wb") as dst, \
                tqdm(total=info.file_size, unit="B", unit_scale=True,
                     desc=f"extract {path.name}") as bar:
            for block in iter(lambda: src.read(1 << 24), b""):
                dst.write(block)
                bar.update(len(block))

    target = Path(cache) / f"{path.stem}.{info.filename}"
    target = cached_file(target, {**source_key(path), "member": info.filename}, build)
    return np.load(target, mmap_mode="r")

