"""bench/data/download.py: data folder lookup, checksum stamps, messages, atomic downloads."""
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest

from disentbench.bench.data import DatasetError
from disentbench.bench.data import download
from disentbench.bench.data.download import ENV_DATA, ENV_OFFLINE, data_root, fetch, missing_message, verify

CONTENT = b"disentbench test file\n" * 100
MD5 = hashlib.md5(CONTENT).hexdigest()
SHA256 = hashlib.sha256(CONTENT).hexdigest()
URL = "https://example.invalid/files/data.bin"


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture
def digest_calls(monkeypatch):
    calls = []
    original = download.file_digest

    def counting(path, algorithm):
        calls.append(algorithm)
        return original(path, algorithm)
    monkeypatch.setattr(download, "file_digest", counting)
    return calls


def test_data_root_order(tmp_path, monkeypatch):
    assert data_root(tmp_path / "arg") == tmp_path / "arg" and (tmp_path / "arg").is_dir()
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv(ENV_DATA)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "disentbench"


def test_data_root_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match=f"cannot create the data folder.*{ENV_DATA}"):
        data_root(tmp_path / "file" / "sub")


def test_verify_writes_a_stamp_and_reuses_it(data_file, digest_calls):
    assert verify(data_file, md5=MD5, sha256=SHA256) == data_file
    assert digest_calls == ["md5", "sha256"]
    stamp = data_file.with_name("data.bin.verified")
    assert stamp.is_file()
    verify(data_file, md5=MD5, sha256=SHA256)
    assert digest_calls == ["md5", "sha256"]                  # not hashed again


def test_stamp_is_not_reused_for_another_checksum(data_file, digest_calls):
    verify(data_file, md5=MD5)
    with pytest.raises(DatasetError, match="its md5 is"):
        verify(data_file, md5="0" * 32)
    assert digest_calls == ["md5", "md5"]


@pytest.mark.parametrize("change", ["content and size", "same size, new mtime"])
def test_stamp_is_invalidated_when_the_file_changes(data_file, digest_calls, change):
    verify(data_file, md5=MD5)
    if change == "content and size":
        data_file.write_bytes(CONTENT + b"x")
    else:
        data_file.write_bytes(CONTENT.replace(b"test", b"TEST"))
        stat = data_file.stat()
        os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DatasetError, match="is not the expected file"):
        verify(data_file, md5=MD5)
    assert digest_calls == ["md5", "md5"]


def test_checksum_error_names_path_url_and_both_digests(data_file):
    with pytest.raises(DatasetError) as error:
        verify(data_file, sha256="a" * 64, url=URL)
    message = str(error.value)
    assert str(data_file) in message and URL in message
    assert SHA256 in message and "a" * 64 in message


def test_size_mismatch_is_reported_before_hashing(data_file, digest_calls):
    with pytest.raises(DatasetError, match=f"it has {len(CONTENT):,} bytes, expected 10"):
        verify(data_file, md5=MD5, size=10, url=URL)
    assert digest_calls == []


def test_missing_file_message(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(DatasetError) as error:
        verify(path, md5=MD5, url=URL)
    assert str(error.value) == missing_message(path, URL, md5=MD5)
    for part in (URL, MD5, str(path), "--data-dir", ENV_DATA):
        assert part in str(error.value)


def test_fetch_offline_refuses_to_download(tmp_path):
    with pytest.raises(DatasetError, match=f"downloads are off because {ENV_OFFLINE} is set"):
        fetch(URL, tmp_path / "data.bin", md5=MD5)


def test_fetch_existing_file_does_not_download(data_file, monkeypatch):
    monkeypatch.delenv(ENV_OFFLINE)
    monkeypatch.setattr(download, "_download", lambda *a: pytest.fail("downloaded"))
    assert fetch(URL, data_file, md5=MD5) == data_file


def test_fetch_downloads_atomically_and_checks(data_file, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OFFLINE)
    target = tmp_path / "out" / "data.bin"
    assert fetch(data_file.as_uri(), target, md5=MD5, size=len(CONTENT)) == target
    assert target.read_bytes() == CONTENT
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin", "data.bin.verified"]
    target.unlink()
    with pytest.raises(DatasetError, match="Nothing was saved"):
        fetch(data_file.as_uri(), target, sha256="b" * 64)
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin.verified"]


def test_interrupted_download_leaves_nothing(data_file, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_OFFLINE)

    def cut_off(url, dest, desc):
        Path(dest).write_bytes(CONTENT[:10])
        raise OSError("connection closed after 10 of 2,200 bytes")
    monkeypatch.setattr(download, "_download", cut_off)
    target = tmp_path / "out" / "data.bin"
    with pytest.raises(DatasetError, match="could not download .*connection closed") as error:
        fetch(URL, target, md5=MD5)
    assert str(target) in str(error.value)
    assert list(target.parent.iterdir()) == []


def test_connection_closed_early_is_a_failed_download(tmp_path, monkeypatch):
    class ShortBody(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(CONTENT)))
            self.end_headers()
            self.wfile.write(CONTENT[:10])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ShortBody)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv(ENV_OFFLINE)
    target = tmp_path / "out" / "data.bin"
    try:
        with pytest.raises(DatasetError, match=f"connection closed after 10 of {len(CONTENT):,}"):
            fetch(f"http://127.0.0.1:{server.server_address[1]}/data.bin", target, md5=MD5)
    finally:
        server.shutdown()
        server.server_close()
    assert list(target.parent.iterdir()) == []


def test_atomic_files_get_the_usual_permissions(tmp_path):
    from disentbench.bench import io
    io.write_text(tmp_path / "f.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask
