"""dSprites (Matthey et al., 2017): 737,280 binary 64x64 sprites on the grid
shape 3 (square, ellipse, heart) x scale 6 x orientation 40 x posX 32 x posY 32.

Two datasets, both held as packed bits (one row of 512 bytes per image, ~377 MB in all):

* ``dsprites-procedural``: rendered here by a vectorised numpy renderer that follows the
  geometry measured from the original images (see ../shared/data/dsprites/README.md):
  a pixel is on iff its centre (col + 0.5, row + 0.5) lies inside the sprite; the pivot is
  (16 + 32 posX, 16 + 32 posY); local coordinates q = R(theta) (p - pivot) / scale. The
  result is cached in the data folder with a sidecar (renderer version, sha256).
* ``dsprites``: the official npz file, downloaded once and pinned by md5; its constant colour
  factor is dropped.

``python -m disentbench.bench.data.dsprites [--data-dir DIR]`` renders the full set and prints its speed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
import time
import zipfile

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io import atomic_path, write_json
from . import register
from .base import DatasetError, GroundTruthData
from .cache import npy_header
from .download import data_root, fetch

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
CANVAS = 64
ROW_BYTES = CANVAS * CANVAS // 8            # one packed image

URL = "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
FILE_LATENTS_SIZES = (1,) + FACTOR_SIZES     # the file's colour factor comes first

RENDERER_VERSION = 1                         # bump when the rendered pixels change
SQUARE_HALF = 9.6                            # px at scale 1 (side 0.3 * 64)
ELLIPSE_AXES = (12.76, 7.22)                 # semi-axes px at scale 1, long axis horizontal
HEART_BOX = (19.19, 19.15)                   # bounding box (w, h) px at scale 1
HEART_DY = 0.244                             # px: the heart's box centre lies below the pivot
HEART_ROWS = 8191                            # rows of the heart span table over [-10, 10); a prime
                                             # count keeps row edges off the grid's rational y values
WINDOW = 32                                  # every sprite fits a 32x32 pixel window


def factor_values(factor_sizes=FACTOR_SIZES) -> tuple:
    """The value of each grid index, as in the official file (shape 1, 2, 3)."""
    shapes, scales, orientations, xs, ys = factor_sizes
    return (np.arange(1.0, shapes + 1), np.linspace(0.5, 1.0, scales),
            np.linspace(0.0, 2 * np.pi, orientations), np.linspace(0.0, 1.0, xs),
            np.linspace(0.0, 1.0, ys))


# --- renderer ----------------------------------------------------------------------------------
def _heart_spans():
    """Table (4, HEART_ROWS + 2): for each row of the heart's local frame over y in [-10, 10),
    the (at most two) intervals [start0, stop0), [start1, stop1) of x inside the classic heart
    curve x = 16 sin^3 t (lobes up). An empty interval is (inf, -inf); the first and last
    columns are empty rows for points above or below the table."""
    t = np.linspace(0.0, 2.0 * np.pi, 2000, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    x = (x - (x.max() + x.min()) / 2) / (x.max() - x.min()) * HEART_BOX[0]
    y = (y - (y.max() + y.min()) / 2) / (y.max() - y.min()) * HEART_BOX[1] + HEART_DY
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    row_y = -10.0 + (np.arange(HEART_ROWS) + 0.5) * (20.0 / HEART_ROWS)
    crosses = (y[None] > row_y[:, None]) != (y2[None] > row_y[:, None])
    assert crosses.sum(1).max() <= 4, "the heart outline crosses a row more than four times"
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x[None] + (row_y[:, None] - y[None]) * (x2 - x)[None] / (y2 - y)[None]
    x_at = np.sort(np.where(crosses, x_at, np.inf), axis=1)[:, :4].T     # (4, rows), inf padded
    x_at[1::2][np.isinf(x_at[1::2])] = -np.inf                           # empty = (inf, -inf)
    empty = np.array([[np.inf], [-np.inf], [np.inf], [-np.inf]])
    return np.concatenate([empty, x_at, empty], axis=1)


_HEART_SPANS = _heart_spans()


def _inside(shape: int, qx, qy):
    """Whether local points (qx, qy) lie inside sprite `shape` (0 square, 1 ellipse, 2 heart).

    A point is inside the heart iff it lies in a span of its row of the span table, the same
    rule as an even-odd crossing test against the heart outline at the row's centre line."""
    if shape == 0:
        return (np.abs(qx) <= SQUARE_HALF) & (np.abs(qy) <= SQUARE_HALF)
    if shape == 1:
        return (qx / ELLIPSE_AXES[0]) ** 2 + (qy / ELLIPSE_AXES[1]) ** 2 <= 1.0
    row = np.floor((qy + 10.0) * (HEART_ROWS / 20.0))
    row = np.clip(row, -1, HEART_ROWS, out=row).astype(np.intp) + 1
    start0, stop0, start1, stop1 = (column.take(row) for column in _HEART_SPANS)
    return ((start0 <= qx) & (qx < stop0)) | ((start1 <= qx) & (qx < stop1))


def _render_packed_one_shape(shape: int, scale, orientation, pos_x, pos_y) -> np.ndarray:
    """Packed images (n, 512) of one shape; the other arguments are (n,) float arrays.

    Only a 32x32 window around each pivot is evaluated; its rows become 64-bit words shifted
    to the window's column and placed at its rows, in np.packbits order (MSB = column 0).
    """
    n = len(scale)
    cx, cy = 16.0 + 32.0 * pos_x, 16.0 + 32.0 * pos_y
    col0 = np.clip(np.floor(cx).astype(np.int64) - 16, 0, CANVAS - WINDOW)
    row0 = np.clip(np.floor(cy).astype(np.int64) - 16, 0, CANVAS - WINDOW)
    offsets = np.arange(WINDOW)
    dx = (col0[:, None] + offsets + 0.5) - cx[:, None]         # (n, cols)
    dy = (row0[:, None] + offsets + 0.5) - cy[:, None]         # (n, rows)
    cos, sin = np.cos(orientation)[:, None], np.sin(orientation)[:, None]
    scale = scale[:, None, None]
    qx = ((cos * dx)[:, None, :] - (sin * dy)[:, :, None]) / scale
    qy = ((sin * dx)[:, None, :] + (cos * dy)[:, :, None]) / scale
    window = np.packbits(_inside(shape, qx, qy), axis=-1)      # (n, rows, 4) bytes
    words = window.view(">u4")[..., 0].astype(np.uint64) << (32 - col0)[:, None].astype(np.uint64)
    image = np.zeros((n, CANVAS), np.uint64)
    image[np.arange(n)[:, None], row0[:, None] + offsets] = words
    return image.astype(">u8").view(np.uint8).reshape(n, ROW_BYTES)


def render_values_packed(shape, scale, orientation, pos_x, pos_y, chunk=2048) -> np.ndarray:
    """Packed images (n, 512) uint8 for factor values: shape index 0 square / 1 ellipse /
    2 heart, scale, orientation in radians, posX and posY in [0, 1] (arrays broadcast)."""
    shape, scale, orientation, pos_x, pos_y = np.broadcast_arrays(
        np.asarray(shape, np.int64), *(np.asarray(v, np.float64)
                                       for v in (scale, orientation, pos_x, pos_y)))
    shape, scale, orientation, pos_x, pos_y = (v.ravel() for v in (shape, scale, orientation,
                                                                    pos_x, pos_y))
    if np.any((shape < 0) | (shape > 2)):
        raise DatasetError(f"shape must be 0 (square), 1 (ellipse) or 2 (heart); got "
                           f"{sorted(set(shape.tolist()) - {0, 1, 2})}")
    if np.any((scale <= 0) | (scale > 1) | (pos_x < 0) | (pos_x > 1) | (pos_y < 0) | (pos_y > 1)):
        raise DatasetError("scale must lie in (0, 1] and posX, posY in [0, 1] (larger sprites "
                           "or positions would not fit the 32x32 window the renderer draws in)")
    packed = np.empty((len(shape), ROW_BYTES), np.uint8)
    for s in np.unique(shape):
        rows = np.flatnonzero(shape == s)
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            packed[part] = _render_packed_one_shape(int(s), scale[part], orientation[part],
                                                    pos_x[part], pos_y[part])
    return packed


def render_values(shape, scale, orientation, pos_x, pos_y) -> np.ndarray:
    """Images (n, 64, 64) uint8 {0, 1} for factor values (see `render_values_packed`)."""
    packed = render_values_packed(shape, scale, orientation, pos_x, pos_y)
    return np.unpackbits(packed, axis=1).reshape(-1, CANVAS, CANVAS)


def render(factors) -> np.ndarray:
    """Images (n, 64, 64) uint8 {0, 1} for factor index rows (n, 5) of the full grid."""
    factors = np.asarray(factors, np.int64).reshape(-1, len(FACTOR_SIZES))
    if np.any((factors < 0) | (factors >= FACTOR_SIZES)):
        raise DatasetError(f"factor indices must lie in [0, {FACTOR_SIZES}) per column")
    values = factor_values()
    return render_values(factors[:, 0], *(values[k][factors[:, k]] for k in range(1, 5)))


def render_all(factor_sizes=FACTOR_SIZES, progress=True) -> tuple[np.ndarray, float]:
    """Every image of the grid, packed (N, 512) in row-major factor order, and the seconds taken."""
    start = time.perf_counter()
    _, scales, orientations, xs, ys = factor_values(factor_sizes)
    pos_x, pos_y = (v.ravel() for v in np.meshgrid(xs, ys, indexing="ij"))
    per_pose = len(pos_x)
    packed = np.empty((math.prod(factor_sizes), ROW_BYTES), np.uint8)
    poses = [(s, k, r) for s in range(factor_sizes[0]) for k in range(len(scales))
             for r in range(len(orientations))]
    for block, (s, k, r) in enumerate(tqdm(poses, desc="render dSprites", unit="pose",
                                           disable=not progress, mininterval=1.0)):
        packed[block * per_pose:(block + 1) * per_pose] = _render_packed_one_shape(
            s, np.full(per_pose, scales[k]), np.full(per_pose, orientations[r]), pos_x, pos_y)
    return packed, time.perf_counter() - start


# --- dataset -----------------------------------------------------------------------------------
class PackedBinaryData(GroundTruthData):
    """Binary images kept as packed bits (N, H*W/8) uint8, np.packbits order; a batch is
    unpacked on the packed tensor's device when it is gathered."""

    def __init__(self, name, factor_sizes, packed, factor_values=None):
        super().__init__(name, FACTOR_NAMES, factor_sizes, torch.from_numpy(packed),
                         pixel_max=1, image_shape=(1, CANVAS, CANVAS), factor_values=factor_values)
        # byte value -> its 8 bits (MSB first) as the bytes of one int64, so that unpacking
        # is a single index_select (3x faster on a CPU than shifting every byte 8 times)
        bits = (torch.arange(256)[:, None] >> torch.arange(7, -1, -1)) & 1
        self._byte_bits = bits.to(torch.uint8).view(torch.int64).squeeze(1).to(self.device)

    def to(self, device) -> "PackedBinaryData":
        super().to(device)
        self._byte_bits = self._byte_bits.to(device)
        return self

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        rows = self.images[index]
        bits = self._byte_bits.index_select(0, rows.flatten().int())
        return bits.view(torch.uint8).view(len(index), *self.image_shape)


def _cache_paths(root, factor_sizes):
    stem = f"dsprites_procedural_v{RENDERER_VERSION}_{'x'.join(map(str, factor_sizes))}"
    return root / f"{stem}.npy", root / f"{stem}.json"


def _read_cache(path, sidecar, factor_sizes):
    """The cached packed images, or None with the reason they cannot be used."""
    try:
        meta = json.loads(sidecar.read_text())
        packed = np.load(path)
    except FileNotFoundError:
        return None, "no cache yet"
    except (OSError, ValueError) as err:
        return None, f"unreadable cache ({err})"
    expected = (math.prod(factor_sizes), ROW_BYTES)
    if (meta.get("renderer_version") != RENDERER_VERSION or packed.shape != expected
            or packed.dtype != np.uint8):
        return None, "stale cache"
    if hashlib.sha256(packed.data).hexdigest() != meta.get("sha256"):
        return None, "corrupt cache (checksum mismatch)"
    return packed, None


def load_procedural(data_dir=None, *, factor_sizes=FACTOR_SIZES, progress=True) -> PackedBinaryData:
    """Procedural dSprites, rendered on first use and cached in `data_root(data_dir)`.

    `factor_sizes` other than the default gives a coarser grid over the same value ranges
    (for tests); the cache is checked against its sha256 on every load and re-rendered if
    missing, stale or corrupt.
    """
    factor_sizes = tuple(int(k) for k in factor_sizes)
    if len(factor_sizes) != 5 or factor_sizes[0] not in (1, 2, 3) or min(factor_sizes) < 1:
        raise DatasetError(f"dsprites-procedural: factor_sizes must be 5 positive sizes with at "
                           f"most 3 shapes, got {factor_sizes}")
    path, sidecar = _cache_paths(data_root(data_dir), factor_sizes)
    packed, reason = _read_cache(path, sidecar, factor_sizes)
    if packed is None:
        if progress:
            print(f"dsprites-procedural: {reason}; rendering {math.prod(factor_sizes):,} images "
                  f"into {path}", file=sys.stderr)
        packed, seconds = render_all(factor_sizes, progress=progress)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, packed)
        write_json(sidecar, {"renderer_version": RENDERER_VERSION, "factor_sizes": factor_sizes,
                             "shape": packed.shape, "sha256": hashlib.sha256(packed.data).hexdigest(),
                             "render_seconds": round(seconds, 2)})
        if progress:
            print(f"dsprites-procedural: rendered in {seconds:.1f} s "
                  f"({len(packed) / seconds:,.0f} images/s)", file=sys.stderr)
    return PackedBinaryData("dsprites-procedural", factor_sizes, packed, factor_values(factor_sizes))


def load_file(data_dir=None, *, url=URL, md5=MD5, filename=FILENAME,
              latents_sizes=FILE_LATENTS_SIZES) -> PackedBinaryData:
    """The official dSprites npz from `data_root(data_dir)`, downloaded from `url` if absent
    and checked against `md5`; the colour factor (first column, size 1) is dropped.
    Tests pass a small `latents_sizes` grid and their own md5/url."""
    path = fetch(url, data_root(data_dir) / filename, md5=md5, desc="dSprites")
    latents_sizes = tuple(int(k) for k in latents_sizes)
    factor_sizes, n = latents_sizes[1:], math.prod(latents_sizes)
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("it is not an npz (zip) archive")
        with np.load(path, allow_pickle=True, encoding="latin1") as npz:
            metadata = npz["metadata"].item()
            classes = npz["latents_classes"]
        file_sizes = tuple(int(k) for k in metadata["latents_sizes"])
        if file_sizes != latents_sizes:
            raise ValueError(f"metadata latents_sizes {file_sizes}, expected {latents_sizes}")
        if classes.shape != (n, len(latents_sizes)) or np.any(classes[:, 0] != 0):
            raise ValueError(f"latents_classes has shape {classes.shape} or a non-constant "
                             f"colour column")
        if not np.array_equal(np.ravel_multi_index(classes.T, latents_sizes), np.arange(n)):
            raise ValueError("its rows are not in row-major order of latents_classes")
        values = tuple(np.asarray(metadata["latents_possible_values"][name], np.float64)
                       for name in FACTOR_NAMES)
        packed = _read_packed_imgs(path, n)
    except (DatasetError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        raise DatasetError(f"{path} is not a usable dSprites file: {err}. Delete it and "
                           f"download it again from {url} (md5 {md5}) to {path}.") from err
    return PackedBinaryData("dsprites", factor_sizes, packed, values)


def _read_packed_imgs(path, n, chunk=16384) -> np.ndarray:
    """Stream `imgs` (n, 64, 64) uint8 {0, 1} out of the npz and pack it, chunk by chunk, so
    the 3 GB of unpacked images are never in memory at once."""
    with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as f:
        shape, dtype, _ = npy_header(f, "imgs")
        if shape != (n, CANVAS, CANVAS) or dtype != np.uint8:
            raise ValueError(f"imgs is {dtype} {shape}, expected uint8 {(n, CANVAS, CANVAS)}")
        packed = np.empty((n, ROW_BYTES), np.uint8)
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            block = np.frombuffer(f.read(count * CANVAS * CANVAS), np.uint8)
            if block.size != count * CANVAS * CANVAS:
                raise ValueError("imgs ends early")
            if block.max(initial=0) > 1:
                raise ValueError("imgs has values other than 0 and 1")
            packed[start:start + count] = np.packbits(block.reshape(count, -1), axis=1)
    return packed


@register("dsprites-procedural")
def _dsprites_procedural(data_dir=None) -> PackedBinaryData:
    return load_procedural(data_dir)


@register("dsprites")
def _dsprites(data_dir=None) -> PackedBinaryData:
    return load_file(data_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Render procedural dSprites and time it; with --data-dir, load (or build) "
                    "the cache there and time loading and batch gathering.")
    parser.add_argument("--data-dir", help="data folder of the cache (default: render only)")
    parser.add_argument("--threads", type=int, help="torch threads for gathering batches")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data_dir:
        packed, seconds = render_all()
        print(f"rendered {len(packed):,} images in {seconds:.1f} s "
              f"({len(packed) / seconds:,.0f} images/s, {packed.nbytes / 2**20:.0f} MiB packed)")
        return
    start = time.perf_counter()
    data = load_procedural(args.data_dir)
    print(f"{data}\nloaded in {time.perf_counter() - start:.2f} s "
          f"({data.images.numel() / 2**20:.0f} MiB packed)")
    generator, batches = torch.Generator().manual_seed(0), 2000
    start = time.perf_counter()
    for _ in range(batches):
        data.sample_batch(64, generator)
    seconds = time.perf_counter() - start
    print(f"sample_batch(64) on {data.device}: {seconds / batches * 1e6:.0f} us per batch "
          f"({64 * batches / seconds:,.0f} images/s)")


if __name__ == "__main__":
    main()
