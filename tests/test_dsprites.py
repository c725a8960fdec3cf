"""Procedural dSprites: renderer vs the real images in ../shared, grid order, symmetries, the
packed dataset and its on-disk cache."""
import json
import time

import numpy as np
import pytest
import torch

from disentbench.bench.data import DatasetError, GroundTruthData, available, load
from disentbench.bench.data import dsprites
from disentbench.bench.data.dsprites import FACTOR_NAMES, FACTOR_SIZES, factor_values, render, render_values

SHAPES = ("square", "ellipse", "heart")
COARSE = (3, 2, 4, 4, 3)                      # a 288-image grid over the same value ranges


def _load_real(shared_dir, name):
    return np.load(shared_dir / "data" / "dsprites" / name, allow_pickle=True, encoding="latin1")


@pytest.fixture(scope="session")
def real_subset(shared_dir):
    """20,000 real images with full-grid factor indices, and our renders of them."""
    real = _load_real(shared_dir, "dsprites_subset.npz")
    factors = real["latents_classes"]
    return factors, real["imgs"], render(factors), real


@pytest.fixture(scope="session")
def real_downsampled(shared_dir):
    """The complete real sub-grid 3x6x10x16x16 mapped to full-grid indices, and our renders."""
    real = _load_real(shared_dir, "dsprites_downsampled.npz")
    factors = real["latents_classes"] * np.array([1, 1, 4, 2, 2])
    return factors, real["imgs"], render(factors), real


def _accuracy_per_shape(factors, real, mine):
    errors = (real != mine).reshape(len(real), -1).sum(1)
    return {SHAPES[s]: (1 - errors[factors[:, 0] == s].sum() / ((factors[:, 0] == s).sum() * 4096),
                        np.mean(errors[factors[:, 0] == s] == 0)) for s in range(3)}


@pytest.mark.parametrize("which", ["real_subset", "real_downsampled"])
def test_render_matches_real_images_per_shape(which, request):
    factors, real, mine, _ = request.getfixturevalue(which)
    for shape, (pixel_accuracy, identical) in _accuracy_per_shape(factors, real, mine).items():
        assert pixel_accuracy >= 0.9999, (shape, pixel_accuracy)
        assert identical >= 0.85, (shape, identical)


def test_accuracy_figures_on_the_subset(real_subset):
    """The measured figures (README): bit-identical square 96.1 %, ellipse 89.5 %, heart 94.2 %."""
    factors, real, mine, _ = real_subset
    figures = _accuracy_per_shape(factors, real, mine)
    assert figures["square"][1] == pytest.approx(0.9612, abs=0.001)
    assert figures["ellipse"][1] == pytest.approx(0.8945, abs=0.001)
    assert figures["heart"][1] == pytest.approx(0.9422, abs=0.001)


@pytest.mark.parametrize("which", ["real_subset", "real_downsampled"])
def test_grid_values_and_row_order_match_the_official_file(which, request):
    factors, _, _, real = request.getfixturevalue(which)
    values = factor_values()
    ours = np.stack([values[k][factors[:, k]] for k in range(5)], 1)
    np.testing.assert_allclose(ours, real["latents_values"], rtol=0, atol=1e-12)
    official_index = (245760 * factors[:, 0] + 40960 * factors[:, 1] + 1024 * factors[:, 2]
                      + 32 * factors[:, 3] + factors[:, 4])
    np.testing.assert_array_equal(official_index, real["original_dataset_indices"])
    grid = GroundTruthData("x", FACTOR_NAMES, FACTOR_SIZES, None, image_shape=(1, 64, 64))
    np.testing.assert_array_equal(grid.index_from_factors(factors), official_index)


def test_index_factor_round_trip_over_the_full_grid():
    grid = GroundTruthData("x", FACTOR_NAMES, FACTOR_SIZES, None, image_shape=(1, 64, 64))
    index = np.arange(737280)
    factors = grid.factors_from_index(index)
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(index, FACTOR_SIZES), 1))
    np.testing.assert_array_equal(grid.index_from_factors(factors), index)
    np.testing.assert_array_equal(grid.factors_from_index(torch.tensor([737279, 1024 + 5])),
                                  [[2, 5, 39, 31, 31], [0, 0, 1, 0, 5]])


def test_hand_computed_pixels():
    """Square at scale 1, orientation 0, pos (0, 0): pivot (16, 16), half side 9.6, so pixel
    centres 6.5 ... 25.5 are inside: rows and columns 6..25, 20 x 20 = 400 pixels."""
    image = render([[0, 5, 0, 0, 0]])[0]
    expected = np.zeros((64, 64), np.uint8)
    expected[6:26, 6:26] = 1
    np.testing.assert_array_equal(image, expected)
    # the ellipse's long axis is horizontal at orientation 0; posX moves along columns
    ellipse = render_values(1, 1.0, 0.0, 1.0, 0.0)[0]
    rows, cols = np.nonzero(ellipse)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (35, 60, 9, 22)
    # the heart's lobes point up (to row 0): its top rows have two runs of pixels
    heart = render_values(2, 1.0, 0.0, 0.5, 0.5)[0]
    top = heart[np.nonzero(heart.any(1))[0][1]]
    assert np.count_nonzero(np.diff(np.r_[0, top, 0]) == 1) == 2


def test_exact_turns_among_the_grid_orientations_are_only_0_and_2pi():
    """linspace(0, 2 pi, 40) steps by 2 pi / 39: no grid value is a quarter or half turn."""
    orientation = factor_values()[2]
    turns = orientation / (np.pi / 2)
    assert np.flatnonzero(np.abs(turns - np.round(turns)) < 1e-9).tolist() == [0, 39]


@pytest.mark.parametrize("shape, quarter_turns", [(0, (1, 2, 3, 4)), (1, (2, 4)), (2, (4,))])
def test_symmetric_orientations_give_identical_images(shape, quarter_turns):
    _, scales, _, xs, ys = factor_values()
    scale, pos_x, pos_y = (v.ravel() for v in np.meshgrid(scales, xs[::3], ys[::3], indexing="ij"))
    upright = render_values(shape, scale, 0.0, pos_x, pos_y)
    assert upright.any(axis=(1, 2)).all()
    for turns in quarter_turns:
        np.testing.assert_array_equal(render_values(shape, scale, turns * np.pi / 2, pos_x, pos_y),
                                      upright, err_msg=f"{SHAPES[shape]} {turns} quarter turns")
    grid = np.stack(np.meshgrid([shape], range(6), [39], range(0, 32, 3), range(0, 32, 3),
                                indexing="ij"), -1).reshape(-1, 5)
    np.testing.assert_array_equal(render(grid), upright)          # index 39 = 2 pi


def test_a_non_symmetric_turn_changes_the_image():
    assert np.any(render_values(0, 1.0, 0.3, 0.5, 0.5) != render_values(0, 1.0, 0.0, 0.5, 0.5))
    assert np.any(render_values(2, 1.0, np.pi, 0.5, 0.5) != render_values(2, 1.0, 0.0, 0.5, 0.5))


def test_render_rejects_bad_input():
    with pytest.raises(DatasetError, match="factor indices"):
        render([[3, 0, 0, 0, 0]])
    with pytest.raises(DatasetError, match="shape must be"):
        render_values(5, 1.0, 0.0, 0.5, 0.5)
    with pytest.raises(DatasetError, match="scale must lie"):
        render_values(0, 1.5, 0.0, 0.5, 0.5)


def test_procedural_dataset_is_packed_and_in_row_major_order(tmp_path):
    data = dsprites.load_procedural(tmp_path, factor_sizes=COARSE, progress=False)
    assert (data.factor_names, data.factor_sizes, data.image_shape) == (
        FACTOR_NAMES, COARSE, (1, 64, 64))
    assert data.pixel_max == 1 and data.num_channels == 1
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (288, 512)
    np.testing.assert_array_equal(data.factor_values[2], np.linspace(0, 2 * np.pi, 4))
    factors = data.factors_from_index(np.arange(len(data)))
    values = [data.factor_values[k][factors[:, k]] for k in range(5)]
    expected = render_values(factors[:, 0], *values[1:])
    np.testing.assert_array_equal(data.images_from_factors(factors)[:, 0].numpy(), expected)


def test_gather_unpacks_like_numpy_and_sample_batch_is_seeded():
    packed = np.random.default_rng(0).integers(0, 256, (10, 512), dtype=np.uint8)
    data = dsprites.PackedBinaryData("t", (1, 1, 1, 2, 5), packed)
    index = torch.tensor([3, 0, 9, 3])
    expected = np.unpackbits(packed[[3, 0, 9, 3]], axis=1).reshape(4, 1, 64, 64)
    np.testing.assert_array_equal(data._gather(index).numpy(), expected)
    batch = data.sample_batch(64, torch.Generator().manual_seed(1))
    again = data.sample_batch(64, torch.Generator().manual_seed(1))
    assert batch.dtype == torch.uint8 and batch.shape == (64, 1, 64, 64)
    assert torch.equal(batch, again)
    assert set(data.to_float(batch).unique().tolist()) <= {0.0, 1.0}
    assert data.to("cpu").images.device.type == "cpu" and data._byte_bits.device.type == "cpu"


def test_registered_names():
    assert {"dsprites", "dsprites-procedural"} <= set(available())


# --- cache ---------------------------------------------------------------------------------------
def _count_renders(monkeypatch):
    calls = []
    original = dsprites.render_all

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(dsprites, "render_all", counting)
    return calls


def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_cache_round_trip(tmp_path, monkeypatch, capsys):
    calls = _count_renders(monkeypatch)
    first = dsprites.load_procedural(tmp_path, factor_sizes=COARSE)
    assert "rendered in" in capsys.readouterr().err
    second = dsprites.load_procedural(tmp_path, factor_sizes=COARSE)
    assert len(calls) == 1 and torch.equal(first.images, second.images)
    stem = "dsprites_procedural_v1_3x2x4x4x3"
    assert _cache_files(tmp_path) == [f"{stem}.json", f"{stem}.npy"]
    meta = json.loads((tmp_path / f"{stem}.json").read_text())
    assert meta["renderer_version"] == dsprites.RENDERER_VERSION and meta["shape"] == [288, 512]
    assert (tmp_path / f"{stem}.npy").stat().st_size < 288 * 512 + 200


def test_registered_loader_is_the_full_grid(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(dsprites, "load_procedural", lambda *a, **k: calls.append((a, k)))
    load("dsprites-procedural", data_dir=tmp_path)
    assert calls == [((tmp_path,), {})]                 # no options: the default full grid
    assert FACTOR_SIZES == (3, 6, 40, 32, 32)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "stale version", "no sidecar"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, monkeypatch, damage):
    good = dsprites.load_procedural(tmp_path, factor_sizes=COARSE, progress=False).images.clone()
    path, sidecar = dsprites._cache_paths(tmp_path, COARSE)
    if damage == "flip a byte":
        raw = bytearray(path.read_bytes())
        raw[-1000] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:50_000])
    elif damage == "stale version":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "renderer_version": 0}))
    else:
        sidecar.unlink()
    calls = _count_renders(monkeypatch)
    rebuilt = dsprites.load_procedural(tmp_path, factor_sizes=COARSE, progress=False)
    assert len(calls) == 1 and torch.equal(rebuilt.images, good)
    dsprites.load_procedural(tmp_path, factor_sizes=COARSE, progress=False)
    assert len(calls) == 1                              # the rebuilt cache is used again
    assert len(_cache_files(tmp_path)) == 2


def test_failed_cache_write_leaves_no_file(tmp_path, monkeypatch):
    def half_then_fail(f, array):
        f.write(b"\x93NUMPY half")
        raise OSError("disk full")
    monkeypatch.setattr(dsprites.np, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        dsprites.load_procedural(tmp_path, factor_sizes=COARSE, progress=False)
    assert _cache_files(tmp_path) == []


def test_bad_factor_sizes():
    with pytest.raises(DatasetError, match="factor_sizes"):
        dsprites.load_procedural(factor_sizes=(4, 6, 40, 32, 32))


@pytest.mark.slow
def test_full_render_shape_timing_and_agreement(tmp_path, shared_dir):
    """Render all 737,280 images (about 10-20 s on 2 busy cores), cache, reload and compare."""
    start = time.perf_counter()
    data = dsprites.load_procedural(tmp_path)
    render_seconds = time.perf_counter() - start
    assert render_seconds < 60
    assert tuple(data.images.shape) == (737280, 512) and data.images.dtype == torch.uint8
    start = time.perf_counter()
    again = dsprites.load_procedural(tmp_path)
    assert time.perf_counter() - start < 10 and torch.equal(again.images, data.images)
    real = _load_real(shared_dir, "dsprites_subset.npz")
    mine = data.images_from_factors(real["latents_classes"])[:, 0].numpy()
    np.testing.assert_array_equal(mine, render(real["latents_classes"]))
    assert np.mean(mine != real["imgs"]) < 1e-4
