"""The official-file dSprites loader, on small files written here in exactly the official format
(six latent columns with the constant colour first, metadata pickled as by Python 2), served
from disk, a file:// URL or a local HTTP server; and its failure paths."""
import functools
import hashlib
import http.server
import io
import pickle
import threading
import zipfile

import numpy as np
import pytest

from disentbench.bench.data import DatasetError, load
from disentbench.bench.data import dsprites
from disentbench.bench.data.download import ENV_OFFLINE

TINY = (1, 3, 2, 2, 3, 2)                      # colour, shape, scale, orientation, posX, posY
NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes, as the official metadata was pickled: loading
    such a pickle needs encoding='latin1'."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)
    dispatch[bytes] = save_bytes


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    if array.dtype == object:
        np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False,
                                                      "shape": array.shape})
        _Python2Pickler(buffer, protocol=2).dump(array)
    else:
        np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def write_official_format(path, latents_sizes=TINY, order=None, pixel_on=1):
    """Write an npz laid out like dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz; returns
    (imgs, md5). `order` permutes the rows (to test the row-order check)."""
    n = int(np.prod(latents_sizes))
    classes = np.stack(np.unravel_index(np.arange(n), latents_sizes), 1).astype(np.int64)
    possible = {"color": np.ones(1), "shape": np.arange(1.0, latents_sizes[1] + 1),
                "scale": np.linspace(0.5, 1, latents_sizes[2]),
                "orientation": np.linspace(0, 2 * np.pi, latents_sizes[3]),
                "posX": np.linspace(0, 1, latents_sizes[4]), "posY": np.linspace(0, 1, latents_sizes[5])}
    values = np.stack([possible[name][classes[:, k]] for k, name in enumerate(NAMES)], 1)
    imgs = np.random.default_rng(0).integers(0, 2, (n, 64, 64), dtype=np.uint8) * np.uint8(pixel_on)
    if order is not None:
        imgs, classes, values = imgs[order], classes[order], values[order]
    metadata = {"date": "April 2017", "description": "test file", "version": 1,
                "latents_names": NAMES, "latents_possible_values": possible,
                "latents_sizes": np.array(latents_sizes), "author": "test", "title": "dSprites"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in (("metadata", np.array(metadata, dtype=object)), ("imgs", imgs),
                           ("latents_classes", classes), ("latents_values", values)):
            archive.writestr(f"{key}.npy", _npy(array))
    return imgs, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A tiny official-format file in a folder of its own (the 'server side')."""
    folder = tmp_path / "server"
    folder.mkdir()
    path = folder / dsprites.FILENAME
    imgs, md5 = write_official_format(path)
    return path, imgs, md5


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_the_test_file_needs_latin1_like_the_official_one(served):
    path, _, _ = served
    with pytest.raises(UnicodeError):
        np.load(path, allow_pickle=True)["metadata"]
    metadata = np.load(path, allow_pickle=True, encoding="latin1")["metadata"].item()
    assert tuple(metadata["latents_sizes"]) == TINY


def test_local_file_is_loaded_with_the_colour_factor_dropped(served, tmp_path):
    path, imgs, md5 = served
    data = dsprites.load_file(path.parent, md5=md5, latents_sizes=TINY)
    assert data.name == "dsprites" and data.factor_names == dsprites.FACTOR_NAMES
    assert data.factor_sizes == TINY[1:] and data.pixel_max == 1 and data.image_shape == (1, 64, 64)
    assert tuple(data.images.shape) == (72, 512)                  # packed bits
    factors = data.factors_from_index(np.arange(72))
    np.testing.assert_array_equal(data.images_from_factors(factors)[:, 0].numpy(), imgs)
    np.testing.assert_array_equal(data.images_from_factors([[2, 1, 0, 2, 1]])[0, 0].numpy(),
                                  imgs[np.ravel_multi_index((0, 2, 1, 0, 2, 1), TINY)])
    np.testing.assert_array_equal(data.factor_values[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(data.factor_values[3], [0.0, 0.5, 1.0])


def test_download_by_file_url(served, tmp_path, monkeypatch, capsys):
    path, imgs, md5 = served
    monkeypatch.delenv(ENV_OFFLINE)
    data_dir = tmp_path / "data"
    data = dsprites.load_file(data_dir, url=path.as_uri(), md5=md5, latents_sizes=TINY)
    np.testing.assert_array_equal(data.images_from_factors([[0, 0, 0, 0, 0]])[0, 0].numpy(), imgs[0])
    assert "download dSprites" in capsys.readouterr().err          # the progress bar
    assert _files(data_dir) == [dsprites.FILENAME, dsprites.FILENAME + ".verified"]
    assert (data_dir / dsprites.FILENAME).read_bytes() == path.read_bytes()


def test_download_over_http_is_renamed_into_place_only_when_complete(served, tmp_path, monkeypatch):
    path, _, md5 = served
    destination = tmp_path / "data" / dsprites.FILENAME
    seen_while_sending = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            seen_while_sending.append(destination.exists())
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(path.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv(ENV_OFFLINE)
        url = f"http://127.0.0.1:{server.server_address[1]}/{dsprites.FILENAME}"
        data = dsprites.load_file(destination.parent, url=url, md5=md5, latents_sizes=TINY)
    finally:
        server.shutdown()
        server.server_close()
    assert seen_while_sending == [False] and len(data) == 72
    assert _files(destination.parent) == [dsprites.FILENAME, dsprites.FILENAME + ".verified"]


def test_missing_file_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        load("dsprites", data_dir=tmp_path)
    message = str(error.value)
    for part in (dsprites.URL, dsprites.MD5, str(tmp_path / dsprites.FILENAME), ENV_OFFLINE):
        assert part in message
    assert _files(tmp_path) == []


def test_missing_file_and_failed_download(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OFFLINE)
    url = (tmp_path / "nowhere" / dsprites.FILENAME).as_uri()
    with pytest.raises(DatasetError, match="could not download") as error:
        dsprites.load_file(tmp_path / "data", url=url, md5="0" * 32, latents_sizes=TINY)
    assert url in str(error.value) and str(tmp_path / "data" / dsprites.FILENAME) in str(error.value)
    assert _files(tmp_path / "data") == []


def test_download_with_the_wrong_checksum_saves_nothing(served, tmp_path, monkeypatch):
    path, _, _ = served
    monkeypatch.delenv(ENV_OFFLINE)
    with pytest.raises(DatasetError, match="not the expected file.*Nothing was saved") as error:
        dsprites.load_file(tmp_path / "data", url=path.as_uri(), md5="0" * 32, latents_sizes=TINY)
    assert str(tmp_path / "data" / dsprites.FILENAME) in str(error.value)
    assert _files(tmp_path / "data") == []


@pytest.mark.parametrize("damage", ["wrong checksum", "truncated"])
def test_bad_local_file_is_reported_with_url_and_path(served, damage):
    path, _, md5 = served
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
        expected_md5 = md5
    else:
        expected_md5 = "f" * 32
    with pytest.raises(DatasetError, match="is not the expected file") as error:
        dsprites.load_file(path.parent, url="https://example.invalid/d.npz", md5=expected_md5,
                           latents_sizes=TINY)
    message = str(error.value)
    assert str(path) in message and "https://example.invalid/d.npz" in message
    assert expected_md5 in message


def test_rows_out_of_row_major_order_are_refused(tmp_path):
    order = np.arange(72)
    order[[5, 6]] = order[[6, 5]]
    _, md5 = write_official_format(tmp_path / dsprites.FILENAME, order=order)
    with pytest.raises(DatasetError, match="row-major order"):
        dsprites.load_file(tmp_path, md5=md5, latents_sizes=TINY)


def test_sizes_other_than_expected_are_refused(tmp_path):
    _, md5 = write_official_format(tmp_path / dsprites.FILENAME, latents_sizes=(1, 3, 2, 2, 2, 2))
    with pytest.raises(DatasetError, match=r"latents_sizes \(1, 3, 2, 2, 2, 2\), expected"):
        dsprites.load_file(tmp_path, md5=md5, latents_sizes=TINY)


def test_a_file_that_is_not_an_npz_is_refused_clearly(tmp_path):
    path = tmp_path / dsprites.FILENAME
    path.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(DatasetError, match="not a usable dSprites file: it is not an npz") as error:
        dsprites.load_file(tmp_path, md5=None, latents_sizes=TINY)
    assert dsprites.URL in str(error.value)


def test_images_other_than_0_and_1_are_refused(tmp_path):
    _, md5 = write_official_format(tmp_path / dsprites.FILENAME, pixel_on=255)
    with pytest.raises(DatasetError, match="values other than 0 and 1"):
        dsprites.load_file(tmp_path, md5=md5, latents_sizes=TINY)


def test_images_are_packed_the_same_across_chunk_boundaries(served):
    path, imgs, _ = served
    packed = dsprites._read_packed_imgs(path, 72, chunk=10)
    np.testing.assert_array_equal(packed, np.packbits(imgs.reshape(72, -1), axis=1))
