"""Downloads with checksums: resumable (HTTP Range), progress bar, atomic rename.

:func:`download` writes ``<dest>.part`` while fetching; a later call resumes from its size with a
``Range`` request (a server answering 200 instead of 206 restarts the file), checks the MD5 of
the whole file and only then renames it to ``dest``. :func:`fetch_lfw` fetches the official LFW
deep-funneled tarball and pair lists (published MD5s, as torchvision records them) and extracts
them into the layout ``cqa_core`` reads: ``<dest>/lfw-deepfunneled/Name/Name_NNNN.jpg`` plus the
pair lists beside the identity folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from cqa_core.data import cache_place
from cqa_core.settings import LFW_DIR

LFW_URL = "http://vis-www.cs.umass.edu/lfw/"
LFW_FILES = {  # file name -> md5 (official, as recorded by torchvision.datasets.LFWPairs)
    f"{LFW_DIR}.tgz": "68331da3eb755a505a502b5aacb3c201",
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
}
CHUNK = 1 << 16


class ChecksumError(RuntimeError):
    """A downloaded file whose MD5 is not the published one."""


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, md5: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (resuming a ``.part`` file), verify ``md5``, rename atomically.

    Returns ``dest``; an existing ``dest`` with the right MD5 is kept without a request.

    Raises:
        ChecksumError: the finished file's MD5 differs (the ``.part`` is deleted).
        urllib.error.URLError / HTTPError: network failures (the ``.part`` is kept for resuming).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the part is already complete
            raise
        resp = None
    if resp is not None:
        with resp:
            if have and resp.status != 206:
                have = 0  # the server ignored Range: start over
            total = resp.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise ChecksumError(f"{url}: md5 {got} != expected {md5}; the partial file was removed, retry")
    os.replace(part, dest)
    return dest


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a tar archive, refusing members that escape ``dest`` (links, absolute, ``..``)."""
    dest = Path(dest).resolve()
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            if not (m.isfile() or m.isdir()) or dest not in (target, *target.parents):
                raise ValueError(f"{archive}: refusing unsafe member {m.name!r}")
        tar.extractall(dest)


def fetch_lfw(dest: str | os.PathLike | None = None, base_url: str | None = None,
              files: dict[str, str] | None = None, progress: bool = True,
              cache_root: str | os.PathLike | None = None) -> Path:
    """Download and extract LFW deep-funneled with its pair lists; returns the image folder.

    Args:
        dest: where to put it (default ``<cache_root>/raw``); the result is ``dest/lfw-deepfunneled``.
        base_url: mirror prefix (``Settings.lfw_url``, passed down; default: the official site).
        files: ``{file name: md5}`` to fetch (default :data:`LFW_FILES`); exactly one ``.tgz``.
        progress: tqdm bars.
        cache_root: ``Settings.cache_root`` (None: its default), for the default ``dest``.
    """
    dest = Path(dest) if dest is not None else cache_place(cache_root) / "raw"
    base = (base_url or LFW_URL).rstrip("/") + "/"
    files = files or LFW_FILES
    downloads = dest / "downloads"
    got = {name: download(base + name, downloads / name, md5, progress) for name, md5 in files.items()}
    archive = next(p for n, p in got.items() if n.endswith((".tgz", ".tar.gz", ".tar")))
    out = dest / LFW_DIR
    if not (out / ".extracted").exists():
        tmp = dest / ".extract.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        safe_extract(archive, tmp)
        tops = [p for p in tmp.iterdir()]
        src = tops[0] if len(tops) == 1 and tops[0].is_dir() else tmp
        shutil.rmtree(out, ignore_errors=True)
        os.replace(src, out)
        shutil.rmtree(tmp, ignore_errors=True)
        (out / ".extracted").write_text(archive.name)
    for name, path in got.items():
        if name.endswith(".txt"):
            shutil.copyfile(path, out / name)
    return out
