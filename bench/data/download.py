"""Where dataset files live, how they are downloaded, and how they are checked.

Lookup order for the data folder: the `data_dir` argument (`--data-dir`), the environment
variable DISENTBENCH_DATA, then the user cache folder (`$XDG_CACHE_HOME/disentbench` or
`~/.cache/disentbench`). Downloads go to a temporary file that is renamed only after its
checksum matched, so a half-written file is never left behind. A file that verified once gets a
small `<name>.verified` stamp (size, mtime, digest) so large files are not re-hashed each load.
Set DISENTBENCH_OFFLINE=1 to forbid downloads.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..io import atomic_path
from .base import DatasetError

ENV_DATA = "DISENTBENCH_DATA"
ENV_OFFLINE = "DISENTBENCH_OFFLINE"


def data_root(data_dir=None) -> Path:
    """The folder that holds dataset files and caches (created if missing)."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_DATA)
    if data_dir is None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        data_dir = Path(cache) / "disentbench"
    root = Path(data_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create the data folder {root} ({err.strerror}); "
                           f"pass --data-dir or set {ENV_DATA} to a writable folder") from err
    return root


def file_digest(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, *, md5=None, sha256=None, size=None) -> str | None:
    """None if `path` matches; else a sentence saying what is wrong."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"it has {actual:,} bytes, expected {size:,} (truncated or a different file)"
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            digest = file_digest(path, algorithm)
            if digest != expected:
                return f"its {algorithm} is {digest}, expected {expected} (corrupt or a different file)"
    return None


def verify(path, *, md5=None, sha256=None, size=None, url=None) -> Path:
    """Raise DatasetError unless `path` exists and matches; remembers a successful check."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(missing_message(path, url, md5=md5, sha256=sha256))
    stamp = path.with_name(path.name + ".verified")
    stat = path.stat()
    want = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5, "sha256": sha256}
    try:
        if json.loads(stamp.read_text()) == want:
            return path
    except (OSError, ValueError):
        pass
    problem = _check(path, md5=md5, sha256=sha256, size=size)
    if problem:
        where = f" Download it again from {url}" if url else " Replace it with the original file"
        raise DatasetError(f"{path} is not the expected file: {problem}.{where} and put it at "
                           f"{path} (delete the bad file first).")
    try:
        with atomic_path(stamp) as tmp:
            tmp.write_text(json.dumps(want))
    except OSError:
        pass                                   # a read-only data folder still works, just slower
    return path


def missing_message(path, url=None, *, md5=None, sha256=None) -> str:
    pin = f" (md5 {md5})" if md5 else f" (sha256 {sha256})" if sha256 else ""
    source = f"download it from {url}{pin}" if url else f"obtain it{pin}"
    return (f"dataset file {Path(path).name} not found: {source} and put it at {path} "
            f"(or pass --data-dir / set {ENV_DATA} to the folder that holds it)")


def fetch(url: str, path, *, md5=None, sha256=None, size=None, desc=None) -> Path:
    """Return `path`, downloading `url` to it first if it is absent; always verified."""
    path = Path(path)
    if path.is_file():
        return verify(path, md5=md5, sha256=sha256, size=size, url=url)
    if os.environ.get(ENV_OFFLINE):
        raise DatasetError(missing_message(path, url, md5=md5, sha256=sha256)
                           + f"; downloads are off because {ENV_OFFLINE} is set")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            _download(url, tmp, desc or path.name)
            problem = _check(tmp, md5=md5, sha256=sha256, size=size)
            if problem:
                raise DatasetError(f"the download of {url} is not the expected file: {problem}. "
                                   f"Nothing was saved; try again, or download it by hand and "
                                   f"put it at {path}.")
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise DatasetError(f"could not download {url} ({reason}). "
                           + missing_message(path, url, md5=md5, sha256=sha256)) from err
    return verify(path, md5=md5, sha256=sha256, size=size, url=url)


def _download(url: str, dest: Path, desc: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "disentbench"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {desc}") as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise OSError(f"connection closed after {received:,} of {total:,} bytes")
