"""Downloader against a local HTTP server (127.0.0.1 only) that honours Range requests."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from cqa_core.data.fetch import ChecksumError, download, fetch_lfw, safe_extract


class _Server:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = outer.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def lfw_like() -> dict[str, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"):
            data = f"fake jpeg {name}".encode() * 50
            info = tarfile.TarInfo(f"lfw-deepfunneled/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"lfw-deepfunneled.tgz": buf.getvalue(), "pairs.txt": b"1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n"}


@pytest.fixture()
def server(lfw_like: dict[str, bytes]):
    s = _Server(lfw_like)
    yield s
    s.close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_download_resumes_with_range(server: _Server, lfw_like: dict[str, bytes], tmp_path: Path) -> None:
    body = lfw_like["lfw-deepfunneled.tgz"]
    dest = tmp_path / "a.tgz"
    (tmp_path / "a.tgz.part").write_bytes(body[:100])  # an interrupted earlier run
    download(server.url + "lfw-deepfunneled.tgz", dest, _md5(body), progress=False)
    assert dest.read_bytes() == body and not (tmp_path / "a.tgz.part").exists()
    assert server.requests == [("/lfw-deepfunneled.tgz", "bytes=100-")]
    download(server.url + "lfw-deepfunneled.tgz", dest, _md5(body), progress=False)
    assert len(server.requests) == 1  # already there and verified: no request


def test_checksum_mismatch_removes_the_part(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="md5"):
        download(server.url + "pairs.txt", tmp_path / "p.txt", "0" * 32, progress=False)
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / "p.txt.part").exists()


def test_fetch_lfw_layout(server: _Server, lfw_like: dict[str, bytes], tmp_path: Path) -> None:
    files = {k: _md5(v) for k, v in lfw_like.items()}
    out = fetch_lfw(tmp_path / "raw", base_url=server.url, files=files, progress=False)
    assert out == tmp_path / "raw" / "lfw-deepfunneled"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"]
    from cqa_core.data.pairs import pair_paths, read_pairs

    pairs = read_pairs(out / "pairs.txt")
    assert len(pairs) == 2 and all(a.exists() and b.exists() for a, b in pair_paths(pairs, out))
    n = len(server.requests)
    fetch_lfw(tmp_path / "raw", base_url=server.url, files=files, progress=False)
    assert len(server.requests) == n  # everything cached


def test_unsafe_tar_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.tar"
    with tarfile.open(p, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsafe"):
        safe_extract(p, tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists()
