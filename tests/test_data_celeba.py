"""CelebA on a tiny img_align_celeba.zip in the official layout (`img_align_celeba/000001.jpg`,
178x218 JPEGs). Real faces cannot be shipped; each JPEG holds a real Falcor3D/Isaac3D image in
its central 148x148 square and a magenta frame outside it, so a crop that is off shows."""
import zipfile

import numpy as np
import pytest
from PIL import Image

from disentbench.bench.data import DatasetError, load
from disentbench.bench.data.celeba import COUNT, MD5, read_celeba

MAGENTA = (255, 0, 255)


@pytest.fixture(scope="module")
def faces(request):
    """Five 178x218 images and the 64x64 a centre crop of 148 must give."""
    shared = request.getfixturevalue("shared_dir") / "data" / "falcor3d_isaac3d_samples"
    sample = np.load(shared / "isaac3d_traversals_128.npz")["images"][[0, 5, 12, 20, 33]]
    frames, expected = [], []
    for image in sample:
        centre = Image.fromarray(image).resize((148, 148), Image.Resampling.BICUBIC)
        frame = Image.new("RGB", (178, 218), MAGENTA)
        frame.paste(centre, (15, 35))
        frames.append(frame)
        expected.append(np.asarray(centre.resize((64, 64), Image.Resampling.BOX), np.float64))
    return frames, np.stack(expected)


def write_zip(path, frames, size=None):
    with zipfile.ZipFile(path, "w") as zf:
        for i, frame in enumerate(frames):
            with zf.open(f"img_align_celeba/{i + 1:06d}.jpg", "w") as f:
                (frame.resize(size) if size else frame).save(f, format="JPEG", quality=95,
                                                             subsampling=0)


def check(data, expected):
    assert (data.name, data.factor_names, data.factor_sizes, data.image_shape, data.pixel_max) \
        == ("celeba", ("index",), (len(expected),), (3, 64, 64), 255)
    assert data.has_factors is False
    got = data.images_from_factors(np.arange(len(expected))[:, None]).numpy()
    diff = np.abs(got.transpose(0, 2, 3, 1) - expected)
    assert diff.mean() < 1.5                              # JPEG noise only (0.6 measured)
    edges = np.concatenate([diff[:, 0], diff[:, -1], diff[:, :, 0], diff[:, :, -1]])
    assert edges.mean() < 4      # 0.8 measured; a crop off by one pixel gives 36


def test_zip_is_cropped_resized_in_file_order(tmp_path, faces):
    frames, expected = faces
    write_zip(tmp_path / "img_align_celeba.zip", frames)
    data = read_celeba(tmp_path / "img_align_celeba.zip", tmp_path / "cache", count=5)
    check(data, expected)
    assert isinstance(data.images, np.memmap)
    first = (tmp_path / "cache" / "celeba.npy").stat().st_mtime_ns
    read_celeba(tmp_path / "img_align_celeba.zip", tmp_path / "cache", count=5)
    assert (tmp_path / "cache" / "celeba.npy").stat().st_mtime_ns == first


def test_extracted_folder_gives_the_same_set(tmp_path, faces):
    frames, expected = faces
    write_zip(tmp_path / "img_align_celeba.zip", frames)
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip") as zf:
        zf.extractall(tmp_path)
    check(read_celeba(tmp_path / "img_align_celeba", tmp_path / "cache", count=5), expected)


def test_wrong_count_or_image_size_is_rejected_without_a_cache(tmp_path, faces):
    frames, _ = faces
    write_zip(tmp_path / "a.zip", frames)
    with pytest.raises(DatasetError, match="expected the 6 images img_align_celeba/000001.jpg"):
        read_celeba(tmp_path / "a.zip", tmp_path / "cache", count=6)
    write_zip(tmp_path / "b.zip", frames, size=(218, 178))
    with pytest.raises(DatasetError, match="b.zip:img_align_celeba/000001.jpg is 218x178, "
                                           "expected 178x218"):
        read_celeba(tmp_path / "b.zip", tmp_path / "cache", count=5)
    assert list((tmp_path / "cache").iterdir()) == []


def test_registered_loader_reads_only_where_the_user_put_it(tmp_path, faces):
    with pytest.raises(DatasetError) as err:
        load("celeba", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "img_align_celeba.zip") in message and MD5 in message
    assert "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in message
    assert "never downloaded" in message
    write_zip(tmp_path / "img_align_celeba.zip", faces[0])
    with pytest.raises(DatasetError, match="img_align_celeba.zip is not the expected file"):
        load("celeba", tmp_path)
    (tmp_path / "img_align_celeba.zip").unlink()
    (tmp_path / "img_align_celeba").mkdir()
    faces[0][0].save(tmp_path / "img_align_celeba" / "000001.jpg")
    with pytest.raises(DatasetError, match=f"expected exactly the {COUNT:,} images"):
        load("celeba", tmp_path)
