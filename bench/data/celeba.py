"""CelebA, aligned and cropped (Liu et al., "Deep Learning Face Attributes in the Wild",
ICCV 2015; mmlab.ie.cuhk.edu.hk/projects/CelebA.html).

`img_align_celeba.zip` holds 202,599 JPEGs `img_align_celeba/000001.jpg ...` of 178x218. Each
is centre-cropped to 148x148 and area-resized to 64x64 once into the array cache (the crop of
the common PyTorch VAE code). Its licence forbids redistribution, so nothing is downloaded:
the file is only read where the user put it (the zip, or the folder it extracts to).

There are no ground-truth factors: the set has one "factor", the image index, and
`has_factors=False`, so it serves training, reconstructions and traversals while metrics
that need factors skip it.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from . import register
from .base import DatasetError, GroundTruthData
from .cache import cache_dir, image_cache, source_key
from .download import data_root, missing_message, verify

FILE = "img_align_celeba.zip"
FOLDER = "img_align_celeba"
URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"        # as pinned by torchvision.datasets.CelebA
BYTES = 1_443_490_838
COUNT = 202_599
CROP = 148
IMAGE_SIZE = (178, 218)


@register("celeba")
def celeba(data_dir=None, path=None) -> GroundTruthData:
    """CelebA from `<data>/img_align_celeba.zip` or `<data>/img_align_celeba/` (or `path`)."""
    root = data_root(data_dir)
    if path is None:
        path = root / FOLDER if (root / FOLDER).is_dir() and not (root / FILE).exists() \
            else root / FILE
    path = Path(path)
    if not path.exists():
        raise DatasetError(missing_message(path, URL, md5=MD5) + f"; or put the folder it "
                           f"extracts to at {root / FOLDER}. CelebA's licence forbids "
                           f"redistribution, so it is never downloaded")
    if not path.is_dir():
        verify(path, md5=MD5, size=BYTES, url=URL)
    return read_celeba(path, cache_dir(root), COUNT)


def read_celeba(path, cache, count=COUNT) -> GroundTruthData:
    """Load `count` aligned CelebA JPEGs from a zip in the official layout or a folder."""
    path = Path(path)
    names = [f"{i + 1:06d}.jpg" for i in range(count)]
    where = f"{path} (CelebA, from {URL})"
    if path.is_dir():
        if sorted(p.name for p in path.glob("*.jpg")) != names:
            raise DatasetError(f"{where}: expected exactly the {count:,} images "
                               f"{names[0]} ... {names[-1]} in this folder")
        images = _convert(path, cache, count, lambda i: (path / names[i]).read_bytes(),
                          lambda i: path / names[i])
    else:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DatasetError(f"{where} is not a readable zip file ({err}); put the original "
                               f"{FILE} there, or the folder it extracts to") from err
        with zf:
            members = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
            if [Path(m).name for m in members] != names:
                raise DatasetError(f"{where}: expected the {count:,} images "
                                   f"{FOLDER}/{names[0]} ... {names[-1]} in the zip, found "
                                   f"{len(members):,} .jpg files")
            images = _convert(path, cache, count, lambda i: zf.read(members[i]),
                              lambda i: f"{path}:{members[i]}")
    return GroundTruthData("celeba", ("index",), (count,), images, layout="NHWC",
                           has_factors=False)


def _convert(path, cache, count, read, name):
    def checked_read(i):
        try:
            return read(i)
        except (OSError, zipfile.BadZipFile) as err:
            raise DatasetError(f"cannot read {name(i)} ({err}); nothing was cached") from err
    return image_cache(Path(cache) / "celeba.npy", source_key(path), count, checked_read, name,
                       crop=CROP, expect_size=IMAGE_SIZE, desc="convert celeba")
