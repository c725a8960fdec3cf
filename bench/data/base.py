"""Ground-truth data: a full factor grid and its images in row-major factor order.

`index = numpy.ravel_multi_index(factors, factor_sizes)` is the row of `images`
that shows `factors`. Images stay uint8 (on the training device when they fit)
and are converted to float per batch by `to_float`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm


class DatasetError(Exception):
    """A dataset is missing, corrupt or misconfigured; the message says how to fix it."""


class GroundTruthData:
    """A factor grid with one image per grid point.

    `images` is either a uint8 torch tensor (N, C, H, W), or a uint8 numpy array
    (for example a memory map) in the layout named by `layout` ("NCHW" or "NHWC").
    `pixel_max` is the value of a fully-on pixel (1 for binary dSprites, 255 for RGB).
    `has_factors=False` marks a set without ground truth (CelebA): its one "factor" is the
    image index, good for training and traversals; metrics that need factors must skip it.
    Subclasses with another storage (packed bits, say) override `_gather`.
    """

    def __init__(self, name, factor_names, factor_sizes, images, *, pixel_max=255,
                 layout="NCHW", image_shape=None, factor_values=None, has_factors=True):
        self.name = name
        self.has_factors = has_factors
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(k) for k in factor_sizes)
        if len(self.factor_names) != len(self.factor_sizes):
            raise DatasetError(f"{name}: {len(self.factor_names)} factor names for "
                               f"{len(self.factor_sizes)} factor sizes")
        self.images = images
        self.pixel_max = pixel_max
        self.layout = layout
        if image_shape is None:
            shape = tuple(images.shape[1:])
            image_shape = shape if layout == "NCHW" else (shape[2], shape[0], shape[1])
        self.image_shape = tuple(image_shape)
        self.factor_values = factor_values
        if images is not None and len(images) != len(self):
            raise DatasetError(f"{name}: {len(images)} images, but the factor grid "
                               f"{self.factor_sizes} has {len(self)} points")
        self._strides = np.array([math.prod(self.factor_sizes[i + 1:])
                                  for i in range(len(self.factor_sizes))], dtype=np.int64)

    # --- factor grid -------------------------------------------------------------------
    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    def index_from_factors(self, factors):
        """Row-major index of each factor row; works on numpy arrays and torch tensors."""
        if isinstance(factors, torch.Tensor):
            return (factors.long() * torch.as_tensor(self._strides, device=factors.device)).sum(-1)
        return np.asarray(factors, dtype=np.int64) @ self._strides

    def factors_from_index(self, index):
        """Inverse of `index_from_factors`: (n,) -> (n, F) int64."""
        if isinstance(index, torch.Tensor):
            strides = torch.as_tensor(self._strides, device=index.device)
            sizes = torch.as_tensor(self.factor_sizes, device=index.device)
            return (index.long()[..., None] // strides) % sizes
        return np.stack(np.unravel_index(np.asarray(index, dtype=np.int64), self.factor_sizes), -1)

    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        """n factor rows, drawn one factor column at a time as disentanglement_lib does."""
        return np.stack([random_state.randint(k, size=n) for k in self.factor_sizes], axis=1)

    # --- images ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if isinstance(self.images, torch.Tensor):
            return self.images.device
        return torch.device("cpu")

    def to(self, device) -> "GroundTruthData":
        """Move the images to `device`.

        Numpy (memory-mapped) storage goes to a CUDA device only when it fits there with
        room to spare (`fits_on`); otherwise it stays mapped on the host and batches are
        gathered from the map.
        """
        device = torch.device(device)
        if isinstance(self.images, torch.Tensor):
            self.images = self.images.to(device)
        elif device.type == "cuda" and fits_on(device, self.images.nbytes):
            self.images = to_tensor(self.images, self.layout, device)
            self.layout = "NCHW"
        return self

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 images (n, C, H, W) at `index` (a LongTensor on `self.device`)."""
        if isinstance(self.images, torch.Tensor):
            return self.images[index]
        batch = torch.from_numpy(np.ascontiguousarray(self.images[index.cpu().numpy()]))
        return batch.permute(0, 3, 1, 2) if self.layout == "NHWC" else batch

    def images_from_factors(self, factors) -> torch.Tensor:
        """uint8 images (n, C, H, W) on this dataset's device for factor rows (n, F)."""
        index = torch.as_tensor(self.index_from_factors(factors), device=self.device)
        return self._gather(index)

    def observations_from_factors(self, factors, random_state=None) -> torch.Tensor:
        """The metric protocol's observations: the uint8 images of `factors` (no noise here)."""
        return self.images_from_factors(factors)

    def sample_batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n uint8 images drawn uniformly with `generator`, gathered on the generator's device."""
        index = torch.randint(len(self), (n,), generator=generator, device=generator.device)
        return self._gather(index.to(self.device))

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, C, H, W) -> float32 in [0, 1]."""
        return images.to(torch.float32).mul_(1.0 / self.pixel_max)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={k}" for n, k in zip(self.factor_names, self.factor_sizes))
        return f"<{type(self).__name__} {self.name}: {len(self)} images {self.image_shape}; {sizes}>"


def fits_on(device, nbytes: int, reserve: float = 0.15) -> bool:
    """True if `nbytes` fit in the free memory of CUDA `device`, keeping 2 GiB plus
    `reserve` of its total memory for the model, the batches and the metrics."""
    free, total = torch.cuda.mem_get_info(device)
    return nbytes <= free - 2 ** 31 - reserve * total


def to_tensor(images, layout: str, device, chunk: int = 1 << 14) -> torch.Tensor:
    """A uint8 (N, C, H, W) tensor on `device` from a numpy array or memory map, copied
    `chunk` images at a time so the host never holds a second full copy."""
    n = len(images)
    shape = images.shape[1:] if layout == "NCHW" else (images.shape[3], *images.shape[1:3])
    out = torch.empty((n, *shape), dtype=torch.uint8, device=device)
    for start in tqdm(range(0, n, chunk), desc=f"copy images to {device}", unit="chunk",
                      disable=images.nbytes < 2 ** 30):
        part = torch.from_numpy(np.array(images[start:start + chunk])).to(device)
        out[start:start + chunk] = part if layout == "NCHW" else part.permute(0, 3, 1, 2)
    return out
