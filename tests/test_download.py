"""Tests of atac.data.download, offline: a local HTTP server on 127.0.0.1 stands in for the web."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atac.data.download import ARCHIVES, MARKER, DownloadError, download, extract, fetch

MT = ARCHIVES["magnetic_tile"]
MV = ARCHIVES["mvtec_ad"]


# ------------------------------------------------------------------------------------------
# a small file server with Range support and switches for misbehaviour


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "not found")
            return
        data = path.read_bytes()
        size, start, status = len(data), 0, 200
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if srv.drop_after is not None:  # simulate a connection that breaks off, once
            cut, srv.drop_after = srv.drop_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.drop_after: int | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=2)


@pytest.fixture
def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mvtec_anomaly_detection.tar.xz"


# ------------------------------------------------------------------------------------------
# archives built in the test


def _payload(seed: int, n: int = 40_000) -> bytes:
    return random.Random(seed).randbytes(n)  # incompressible, so the archive has a real size


def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None, **attrs) -> None:
    info = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(info, k, v)
    if data is not None:
        info.size = len(data)
    tf.addfile(info, io.BytesIO(data) if data is not None else None)


MVTEC_FILES = {
    "grid/train/good/000.png": 1,
    "grid/train/good/001.png": 2,
    "grid/test/good/000.png": 3,
    "grid/test/broken/000.png": 4,
    "grid/ground_truth/broken/000_mask.png": 5,
}


def _mvtec_tar(dest: Path) -> Path:
    # random-ish bytes so the .tar.xz stays ~200 kB and an interruption can cut it mid-way
    with tarfile.open(dest, "w:xz") as tf:
        for name, seed in MVTEC_FILES.items():
            _add(tf, name, _payload(seed, 40_000 if "train" in name else 4_000))
    return dest


def _mt_zip(dest: Path, top: str = MT.strip) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr(f"{top}/README.md", "magnetic tiles")
        zf.writestr(f"{top}/MT_Free/Imgs/x.jpg", _payload(10, 5_000))
        zf.writestr(f"{top}/MT_Free/Imgs/x.png", _payload(11, 500))
        zf.writestr(f"{top}/MT_Blowhole/Imgs/y.jpg", _payload(12, 5_000))
    return dest


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mvtec(server):
    path = _mvtec_tar(server.root / MV.filename)
    return path, server.url(MV.filename)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".part" in p.name or "extracting" in p.name)


# ------------------------------------------------------------------------------------------
# tests


def test_registry():
    assert set(ARCHIVES) == {"mvtec_ad", "magnetic_tile"}
    assert MV.md5 == "eefca59f2cede9c3fc5b6befbfec275e"
    assert MV.url.endswith("/mvtec_anomaly_detection.tar.xz") and MV.strip is None
    commit = "cc4eb530b57b9cb7225bf76023873043ffd50655"
    assert "Magnetic-tile-defect-datasets./archive/" + commit in MT.url
    assert MT.md5 is None and MT.sha256 is None and MT.strip.endswith(commit)
    assert all(a.citation and a.license for a in ARCHIVES.values())


def test_mvtec_download_extract_layout_provenance(server, mvtec, tmp_path):
    src, url = mvtec
    root = tmp_path / "data"
    out = download("mvtec_ad", root, url=url, md5=_md5(src), progress=True)
    assert out == root / "mvtec_ad"
    for name in MVTEC_FILES:
        assert (out / name).read_bytes() == (
            _payload(MVTEC_FILES[name], 40_000 if "train" in name else 4_000))
    assert (root / MV.filename).read_bytes() == src.read_bytes()
    assert _leftovers(root) == []
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700

    record = json.loads((out / MARKER).read_text())
    assert record["url"] == url and record["verified"] is True
    assert record["md5"] == _md5(src) and record["sha256"] == _sha(src)
    assert record["date"] and record["dataset"] == "mvtec_ad"

    # a second call returns immediately, without touching the network
    n = len(server.requests)
    t0 = time.monotonic()
    assert download("mvtec_ad", root, url=url, md5=_md5(src), progress=False) == out
    assert len(server.requests) == n and time.monotonic() - t0 < 0.5


def test_magnetic_tile_zip_strips_top_folder_and_records_sha256(server, tmp_path):
    src = _mt_zip(server.root / MT.filename)
    root = tmp_path / "data"
    out = download("magnetic_tile", root, url=server.url(MT.filename), progress=False)
    assert out == root / "magnetic_tile"
    assert (out / "MT_Free/Imgs/x.jpg").read_bytes() == _payload(10, 5_000)
    assert (out / "MT_Blowhole/Imgs/y.jpg").is_file()
    record = json.loads((out / MARKER).read_text())
    assert record["verified"] is False and record["md5_expected"] is None
    assert record["sha256"] == _sha(src)


def test_mirror_with_other_top_folder_name(server, tmp_path):
    _mt_zip(server.root / "mirror.zip", top="Magnetic-tile-defect-datasets.-master")
    out = download("magnetic_tile", tmp_path / "d", url=server.url("mirror.zip"), progress=False)
    assert (out / "MT_Free/Imgs/x.jpg").is_file()


def test_checksum_mismatch_keeps_nothing(server, mvtec, tmp_path):
    src, url = mvtec
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download("mvtec_ad", root, url=url, md5="0" * 32, progress=False)
    msg = str(info.value)
    assert MV.filename in msg and "0" * 32 in msg and _md5(src) in msg
    assert not (root / MV.filename).exists()
    assert not (root / "mvtec_ad").exists()
    assert _leftovers(root) == []


def test_sha256_override_checked(server, mvtec, tmp_path):
    src, url = mvtec
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(url, tmp_path / "a.tar.xz", sha256="f" * 64, progress=False)
    assert fetch(url, tmp_path / "a.tar.xz", sha256=_sha(src), progress=False).is_file()


def test_interrupted_download_resumes_with_range(server, mvtec, tmp_path):
    src, url = mvtec
    dest = tmp_path / "dl" / MV.filename
    server.drop_after = 30_000
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, md5=_md5(src), progress=False, retries=0)
    assert "interrupted" in str(info.value) and url in str(info.value)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 30_000 and not dest.exists()

    fetch(url, dest, md5=_md5(src), progress=False)
    assert server.requests[-1][1] == "bytes=30000-"
    assert _sha(dest) == _sha(src) and not part.exists()


def test_interruption_is_resumed_automatically_within_one_call(server, mvtec, tmp_path):
    src, url = mvtec
    server.drop_after = 50_000
    out = download("mvtec_ad", tmp_path / "d", url=url, md5=_md5(src), progress=False)
    assert (out / "grid/train/good/000.png").is_file()
    assert [r for _, r in server.requests] == [None, "bytes=50000-"]


def test_server_without_range_support_starts_over(server, mvtec, tmp_path):
    src, url = mvtec
    dest = tmp_path / MV.filename
    server.ignore_range, server.drop_after = True, 25_000
    with pytest.raises(DownloadError):
        fetch(url, dest, md5=_md5(src), progress=False, retries=0)
    fetch(url, dest, md5=_md5(src), progress=False, retries=0)
    assert server.requests[-1][1] == "bytes=25000-"  # asked, got a plain 200
    assert _md5(dest) == _md5(src)


def test_complete_part_file_answered_416(server, mvtec, tmp_path):
    src, url = mvtec
    dest = tmp_path / MV.filename
    shutil.copy(src, dest.with_name(dest.name + ".part"))
    fetch(url, dest, md5=_md5(src), progress=False)
    assert _md5(dest) == _md5(src)


def test_unreachable_url_fails_fast_with_hint(closed_port_url, tmp_path):
    root = tmp_path / "data"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download("mvtec_ad", root, url=closed_port_url, progress=False, timeout=3)
    assert time.monotonic() - t0 < 2
    msg = str(info.value)
    assert closed_port_url in msg
    assert str(root / MV.filename) in msg and "ATAC_DATA_ROOT" in msg and "re-run" in msg
    assert not (root / "mvtec_ad").exists() and _leftovers(root) == []


def test_http_error_is_reported(server, tmp_path):
    url = server.url("missing.tar.xz")
    with pytest.raises(DownloadError, match="404") as info:
        download("mvtec_ad", tmp_path, url=url, progress=False)
    assert url in str(info.value)


def test_preplaced_archive_is_verified_and_extracted_offline(server, mvtec, closed_port_url, tmp_path):
    src, _ = mvtec
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(src, root / MV.filename)
    out = download("mvtec_ad", root, url=closed_port_url, md5=_md5(src), progress=False)
    assert (out / "grid/test/broken/000.png").is_file()
    assert server.requests == []

    # a pre-placed file that does not match is reported, and left alone
    other = tmp_path / "other"
    other.mkdir()
    (other / MV.filename).write_bytes(b"not the archive")
    with pytest.raises(DownloadError, match="mismatch"):
        download("mvtec_ad", other, md5=_md5(src), progress=False)
    assert (other / MV.filename).exists() and server.requests == []


def test_existing_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mvtec_ad" / "grid").mkdir(parents=True)
    with pytest.raises(DownloadError, match="not made by"):
        download("mvtec_ad", tmp_path, progress=False)


def test_unknown_dataset(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset"):
        download("visa", tmp_path)


def test_wrong_archive_layout_is_rejected(server, tmp_path):
    path = server.root / "wrong.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "something/else.txt", b"x")
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match="train/good"):
        download("mvtec_ad", root, url=server.url("wrong.tar.gz"), md5=_md5(path), progress=False)
    assert not (root / "mvtec_ad").exists() and _leftovers(root) == []


@pytest.mark.parametrize(
    "members",
    [
        [("../evil.txt", {})],
        [("/tmp/abs-evil.txt", {})],
        [("ok/../../evil.txt", {})],
        [("link", {"type": tarfile.SYMTYPE, "linkname": "../.."}), ("link/evil.txt", {})],
        [("hard", {"type": tarfile.LNKTYPE, "linkname": "../evil.txt"})],
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-escape", "hardlink-escape"],
)
def test_tar_path_traversal_rejected(tmp_path, members):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "fine.txt", b"fine")
        for name, attrs in members:
            _add(tf, name, None if attrs else b"evil", **attrs)
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(DownloadError, match="unsafe"):
        extract(archive, dest)
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_zip_path_traversal_rejected(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr("../evil.txt", "evil")
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="unsafe"):
        extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not (dest / "fine.txt").exists()


def test_traversal_via_download_leaves_nothing(server, tmp_path):
    path = server.root / "evil.tar.xz"
    with tarfile.open(path, "w:xz") as tf:
        _add(tf, "grid/train/good/000.png", b"png")
        _add(tf, "../escaped.txt", b"evil")
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match="unsafe"):
        download("mvtec_ad", root, url=server.url("evil.tar.xz"), md5=_md5(path), progress=False)
    assert not (root / "mvtec_ad").exists() and not (tmp_path / "escaped.txt").exists()
    assert _leftovers(root) == []


def test_corrupt_archive_reported(tmp_path):
    bad = tmp_path / "x.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(DownloadError, match="could not unpack"):
        extract(bad, tmp_path / "out")
