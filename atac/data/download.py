"""Download the real datasets the paper uses: MVTec AD and Magnetic Tile.

``atac data download mvtec_ad|magnetic_tile --root DIR`` calls :func:`download`, which

1. returns at once when ``<root>/<dataset>/.download.json`` exists (a finished earlier run);
2. uses ``<root>/<archive filename>`` when it is already there (placed by hand, or kept from an
   earlier run) after checking its checksum, or else fetches it from the official URL into
   ``<root>/<archive filename>.part``, resuming a partial file with an HTTP ``Range`` request
   (and starting over when the server ignores ranges), and renames it to its final name only
   once the checksum matches;
3. unpacks it into a temporary folder inside ``root`` (refusing members that would land outside
   it), checks the expected layout, writes ``.download.json`` (URL, checksums, date) and renames
   the folder into place, so a half-unpacked dataset is never taken for a finished one.

The archive is kept next to the dataset folder; delete it by hand to reclaim the space.

Sources (see :data:`ARCHIVES`):

* **MVTec AD** -- the official archive ``mvtec_anomaly_detection.tar.xz`` (about 4.9 GB) from
  mydrive.ch, md5 ``eefca59f2cede9c3fc5b6befbfec275e`` as used by common loaders (anomalib's
  ``DownloadInfo``, among others). Categories sit at the archive's top level, so the result is
  ``<root>/mvtec_ad/<category>/{train,test,ground_truth}/...``. Licence CC BY-NC-SA 4.0.
* **Magnetic Tile** -- the GitHub archive of ``github.com/abin24/Magnetic-tile-defect-datasets.``
  (the repository name ends with a dot) pinned to commit
  ``cc4eb530b57b9cb7225bf76023873043ffd50655``. No checksum is published, so none is checked;
  the SHA-256 of what was downloaded is reported and recorded in ``.download.json``. The zip's
  single top-level folder is stripped: ``<root>/magnetic_tile/MT_Free/Imgs/...``.

Errors: every failure a user can act on (offline, unreachable server, HTTP error, interrupted
transfer, checksum mismatch, unsafe or malformed archive, unknown dataset) raises
:class:`DownloadError` with a message that names the URL or file and says what to do. Network
failures include the manual route: download the archive on a machine with internet access,
place it at ``<root>/<filename>`` and re-run (it is then verified and unpacked without any
network access), or point ``--root``/``ATAC_DATA_ROOT`` at an existing copy.

Only the standard library (``urllib.request``, ``hashlib``, ``tarfile``, ``zipfile``,
``shutil``) and ``tqdm`` are used.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import secrets
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

__all__ = ["ARCHIVES", "Archive", "DownloadError", "download", "extract", "fetch"]

logger = logging.getLogger(__name__)

MARKER = ".download.json"
_CHUNK = 1 << 20  # 1 MiB per read
_USER_AGENT = "atac-downloader (+https://arxiv.org/abs/2406.14398)"


@dataclass(frozen=True)
class Archive:
    """One downloadable dataset archive.

    ``md5``/``sha256`` are the published checksums (None when nothing is published, in which
    case the download is not verified but its SHA-256 is recorded). ``strip`` names a single
    top-level folder inside the archive whose contents become the dataset folder.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    strip: str | None = None
    citation: str = ""
    license: str = ""


_MT_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"

ARCHIVES: dict[str, Archive] = {
    "mvtec_ad": Archive(
        url=(
            "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
            "420938113-1629952094/mvtec_anomaly_detection.tar.xz"
        ),
        filename="mvtec_anomaly_detection.tar.xz",
        # md5 of the official archive as pinned by anomalib (anomalib.data...mvtec DOWNLOAD_INFO)
        # and several other public loaders; MVTec itself publishes no checksum on its page.
        md5="eefca59f2cede9c3fc5b6befbfec275e",
        citation=(
            "P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger, C. Steger. The MVTec Anomaly "
            "Detection Dataset: A Comprehensive Real-World Dataset for Unsupervised Anomaly "
            "Detection. IJCV 129(4):1038-1059, 2021; and P. Bergmann, M. Fauser, D. Sattlegger, "
            "C. Steger. MVTec AD -- A Comprehensive Real-World Dataset for Unsupervised Anomaly "
            "Detection. CVPR 2019."
        ),
        license="CC BY-NC-SA 4.0 (non-commercial use only); https://www.mvtec.com/company/research/datasets/mvtec-ad",
    ),
    "magnetic_tile": Archive(
        url=f"https://github.com/abin24/Magnetic-tile-defect-datasets./archive/{_MT_COMMIT}.zip",
        filename=f"Magnetic-tile-defect-datasets.-{_MT_COMMIT}.zip",
        md5=None,
        sha256=None,  # nothing published; the computed SHA-256 goes into .download.json
        strip=f"Magnetic-tile-defect-datasets.-{_MT_COMMIT}",
        citation=(
            "Y. Huang, C. Qiu, K. Yuan. Surface defect saliency of magnetic tile. The Visual "
            "Computer 36:85-96, 2020 (also IEEE CASE 2018)."
        ),
        license=(
            "No licence file in the repository; the authors welcome research use and ask to be "
            "cited (https://github.com/abin24/Magnetic-tile-defect-datasets.)"
        ),
    ),
}

# Globs (relative to the dataset folder) of which at least one must match after unpacking.
_EXPECTED_LAYOUT: dict[str, str] = {
    "mvtec_ad": "*/train/good",
    "magnetic_tile": "MT_Free/Imgs",
}


class DownloadError(RuntimeError):
    """A dataset could not be downloaded, verified or unpacked; the message says what to do."""


# --------------------------------------------------------------------------------------------
# checksums


def _digests(path: Path) -> dict[str, str]:
    """md5 and sha256 of a file, computed in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _mismatch(path: Path, got: dict[str, str], md5: str | None, sha256: str | None) -> str | None:
    """Describe the first checksum that does not match, or None when all given ones match."""
    for kind, want in (("md5", md5), ("sha256", sha256)):
        if want and got[kind].lower() != want.strip().lower():
            return f"{kind} mismatch for {path}: expected {want.strip().lower()}, got {got[kind]}"
    return None


# --------------------------------------------------------------------------------------------
# fetching


def _network_error(url: str, what: str, hint: str) -> DownloadError:
    return DownloadError(
        f"Could not download {url}: {what}.\n"
        "This machine may be offline, or the server may be unreachable or refusing the request.\n"
        f"{hint}"
    )


def _generic_hint(dest: Path) -> str:
    return (
        f"Download it by hand on a machine with internet access, place the file at {dest}, "
        "and re-run: an existing file is verified instead of downloaded."
    )


def _open(url: str, offset: int, timeout: float, hint: str):
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return err  # handled by the caller: the .part may already be complete
        raise _network_error(url, f"HTTP error {err.code} {err.reason}", hint) from err
    except urllib.error.URLError as err:
        raise _network_error(url, f"{type(err.reason).__name__}: {err.reason}", hint) from err
    except (TimeoutError, socket.timeout) as err:
        raise _network_error(url, f"no answer within {timeout:g} s (timeout)", hint) from err
    except (OSError, http.client.HTTPException) as err:
        raise _network_error(url, f"{type(err).__name__}: {err}", hint) from err


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a ``Content-Range`` header; None where absent or '*'."""
    m = re.match(r"\s*bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", header or "")
    if not m:
        return None, None
    start = None if m.group(1) == "*" else int(m.group(1))
    total = None if m.group(2) == "*" else int(m.group(2))
    return start, total


def _transfer(url: str, part: Path, *, progress: bool, timeout: float, hint: str) -> None:
    """One attempt: bring ``part`` to the full size of ``url``, resuming what is there.

    Raises DownloadError on failure; a partial ``part`` is kept for the next attempt.
    """
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout, hint)
    if isinstance(response, urllib.error.HTTPError):  # 416: range not satisfiable
        _, total = _content_range(response.headers.get("Content-Range"))
        response.close()
        if total is not None and total == offset:
            return  # the .part already holds everything
        logger.info("server rejected resume from byte %d of %s; starting over", offset, url)
        part.unlink()
        offset = 0
        response = _open(url, 0, timeout, hint)

    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(
                    f"{url} answered a resume request from byte {offset} with "
                    f"Content-Range {response.headers.get('Content-Range')!r}; delete {part} "
                    "and re-run to download from scratch."
                )
            mode = "ab"
            expected = total if total is not None else (offset + length if length is not None else None)
        else:
            if offset:
                logger.info("%s does not support resuming; downloading from scratch", url)
            offset, mode = 0, "wb"
            expected = length

        received = offset
        bar = tqdm(
            total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        )
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        raise _interrupted(url, part, received, expected, err, hint) from err
                    if not block:
                        break
                    fh.write(block)
                    received += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
        if expected is not None and received < expected:
            raise _interrupted(url, part, received, expected, "connection closed early", hint)


def _interrupted(url, part, received, expected, cause, hint) -> DownloadError:
    of = f" of {expected}" if expected is not None else ""
    return DownloadError(
        f"Download of {url} was interrupted after {received}{of} bytes ({cause}).\n"
        f"The partial file is kept at {part}; re-run the same command to resume.\n{hint}"
    )


def _fetch(
    url: str, dest: Path, *, md5: str | None, sha256: str | None, progress: bool,
    timeout: float, retries: int, hint: str,
) -> dict[str, str]:
    """fetch() proper; returns the computed digests of ``dest``."""
    dest = Path(dest)
    if dest.exists():
        got = _digests(dest)
        problem = _mismatch(dest, got, md5, sha256)
        if problem:
            raise DownloadError(
                f"{problem}.\nThe existing file is not the expected archive (incomplete or a "
                f"different version); delete it and re-run to download it again."
            )
        logger.info("%s already present and verified; not downloading", dest)
        return got

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, progress=progress, timeout=timeout, hint=hint)
            break
        except DownloadError:
            after = part.stat().st_size if part.exists() else 0
            # Retry only transfers that were making progress; a server that cannot be reached
            # at all fails at once (so being offline is reported quickly).
            if attempt >= retries or after <= before:
                raise
            attempt += 1
            logger.warning("download of %s interrupted at %d bytes; resuming (retry %d/%d)",
                           url, after, attempt, retries)
            time.sleep(min(0.2 * attempt, 2.0))

    got = _digests(part)
    problem = _mismatch(dest, got, md5, sha256)
    if problem:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{problem}.\nThe downloaded data was discarded. Re-run to try again; if it keeps "
            f"failing, the server may serve a different file than {url} used to."
        )
    os.replace(part, dest)
    return got


def fetch(
    url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
    progress: bool = True, timeout: float = 30.0, retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest``, resumably, and verify its checksum(s).

    Data goes to ``<dest>.part`` first. An existing ``.part`` is resumed with a
    ``Range: bytes=N-`` request (appended when the server answers 206 Partial Content, started
    over when it answers 200). A transfer that breaks off after making progress is resumed up to
    ``retries`` times. Only when the file is complete and every given checksum (``md5``,
    ``sha256``) matches is ``.part`` renamed to ``dest``. An existing ``dest`` that matches is
    returned without any network access.

    Raises:
        DownloadError: the server cannot be reached or answers an HTTP error (the message names
            the URL and says how to place the file by hand); the transfer broke off (the
            ``.part`` is kept for resuming); the checksum does not match (the ``.part`` is
            deleted; the message names the file, expected and computed values); an existing
            ``dest`` does not match.
    """
    dest = Path(dest)
    _fetch(url, dest, md5=md5, sha256=sha256, progress=progress, timeout=timeout,
           retries=retries, hint=_generic_hint(dest))
    return dest


# --------------------------------------------------------------------------------------------
# extracting

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member(root: Path, name: str, archive: Path) -> Path:
    """Target of archive member ``name`` under ``root`` (resolved); DownloadError if it escapes."""
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    if norm.startswith("/") or _DRIVE.match(norm) or ".." in parts:
        raise DownloadError(f"unsafe member {name!r} in {archive}: it would be written outside "
                            "the extraction folder; refusing to unpack this archive.")
    target = (root / norm).resolve()
    if not target.is_relative_to(root):
        raise DownloadError(f"unsafe member {name!r} in {archive}: it resolves to {target}, "
                            f"outside {root}; refusing to unpack this archive.")
    return target


def _extract_tar(archive: Path, root: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:  # streaming: each member is checked before it is written
            _check_member(root, member.name, archive)
            if member.issym() or member.islnk():
                link = member.linkname
                base = (PurePosixPath(member.name).parent if member.issym() else PurePosixPath(""))
                if link.startswith("/") or _DRIVE.match(link):
                    raise DownloadError(f"unsafe link {member.name!r} -> {link!r} in {archive}; "
                                        "refusing to unpack this archive.")
                _check_member(root, str(base / link), archive)
            elif not (member.isfile() or member.isdir()):
                logger.warning("skipping special member %r in %s", member.name, archive)
                continue
            try:
                tf.extract(member, root, set_attrs=False, filter="data")
            except tarfile.FilterError as err:  # belt and braces: the stdlib's own check
                raise DownloadError(f"unsafe member in {archive}: {err}; refusing to unpack.") from err


def _extract_zip(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # the central directory is at hand: check everything first
            _check_member(root, info.filename, archive)
        for info in infos:
            zf.extract(info, root)


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack ``archive`` (.tar.xz, .tar.gz, .tgz, .tar.bz2, .tar or .zip) into ``dest``.

    Every member is checked before it is written: absolute paths, ``..`` components, drive
    letters, and links pointing outside ``dest`` are refused; device files and FIFOs are skipped.

    Raises:
        DownloadError: the archive is unsafe, corrupt or of an unknown format. Members written
            before the problem was found stay in ``dest`` (:func:`download` unpacks into a
            temporary folder it deletes on failure).
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(archive, root)
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")):
            _extract_tar(archive, root)
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, root)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, root)
        else:
            raise DownloadError(f"{archive}: unknown archive format (expected .tar.xz, .tar.gz, "
                                ".tar or .zip)")
    except DownloadError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, EOFError, OSError) as err:
        raise DownloadError(f"could not unpack {archive}: {type(err).__name__}: {err}. "
                            "The file may be corrupt; delete it and re-run.") from err


# --------------------------------------------------------------------------------------------
# datasets


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)


def download(
    dataset: str, root: str | os.PathLike, *, url: str | None = None, md5: str | None = None,
    sha256: str | None = None, progress: bool = True, timeout: float = 30.0,
) -> Path:
    """Download, verify and unpack ``dataset`` ("mvtec_ad" or "magnetic_tile") under ``root``.

    Returns the dataset folder ``<root>/<dataset>``: for mvtec_ad it holds
    ``<category>/train/good`` etc.; for magnetic_tile ``MT_Free/Imgs``, ``MT_Blowhole/Imgs`` ...
    A second call returns at once (``<root>/<dataset>/.download.json`` marks a finished run).

    ``url`` overrides the registry URL (a mirror). ``md5``/``sha256`` override the registry
    checksums; when either is given, only the given ones are checked. With no checksum at all
    (Magnetic Tile) the archive is not verified, and its SHA-256 is reported and recorded.
    The archive ``<root>/<filename>`` is kept; if it is already there (e.g. placed by hand) it
    is verified and unpacked without any network access.

    Raises:
        DownloadError: unknown dataset; network failure (message names the URL and how to place
            the archive by hand); checksum mismatch; unsafe or malformed archive; or
            ``<root>/<dataset>`` exists but was not made by this function.
    """
    if dataset not in ARCHIVES:
        raise DownloadError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(ARCHIVES))}")
    spec = ARCHIVES[dataset]
    root = Path(root).expanduser()
    target = root / dataset
    marker = target / MARKER
    if marker.is_file():
        logger.info("%s already downloaded (%s)", dataset, marker)
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(
            f"{target} already exists but has no {MARKER}, so it was not made by "
            f"`atac data download` (or it is not a finished download). Use it as it is by "
            f"pointing --root/ATAC_DATA_ROOT at {root}, or move it away and re-run."
        )

    url = url or spec.url
    if md5 is None and sha256 is None:
        md5, sha256 = spec.md5, spec.sha256
    archive = root / spec.filename
    hint = (
        f"To install by hand: download {url} on a machine with internet access, place the file "
        f"at {archive}, and re-run `atac data download {dataset} --root {root}` (it will verify "
        f"and extract it without network access). Or, if you already have the dataset unpacked, "
        f"point --root (or ATAC_DATA_ROOT) at the folder that contains {dataset}/."
    )
    root.mkdir(parents=True, exist_ok=True)
    if archive.exists():
        _say(f"verifying existing {archive}", progress)
    got = _fetch(url, archive, md5=md5, sha256=sha256, progress=progress, timeout=timeout,
                 retries=3, hint=hint)
    verified = bool(md5 or sha256)
    if verified:
        _say(f"{archive.name}: checksum OK", progress)
    else:
        _say(f"{archive.name}: no published checksum to verify against; "
             f"sha256 {got['sha256']} (recorded in {marker})", progress)

    # Not tempfile.mkdtemp: its 0700 mode would stick to the dataset folder after the rename.
    staging = root / f".{dataset}.extracting-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        _say(f"unpacking {archive.name} ...", progress)
        extract(archive, staging)
        source = _strip(staging, spec.strip, archive)
        if not any(source.glob(_EXPECTED_LAYOUT[dataset])):
            raise DownloadError(
                f"{archive} unpacked, but no {_EXPECTED_LAYOUT[dataset]} was found in it: it is "
                f"not the {dataset} archive this tool expects. Delete it and re-run."
            )
        record = {
            "dataset": dataset,
            "url": url,
            "filename": spec.filename,
            "md5_expected": md5,
            "sha256_expected": sha256,
            "verified": verified,
            "md5": got["md5"],
            "sha256": got["sha256"],
            "size": archive.stat().st_size,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "citation": spec.citation,
            "license": spec.license,
        }
        (source / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(f"{dataset} ready at {target}", progress)
    return target


def _strip(staging: Path, strip: str | None, archive: Path) -> Path:
    """The folder inside ``staging`` that becomes the dataset folder."""
    if not strip:
        return staging
    if (staging / strip).is_dir():
        return staging / strip
    # A mirror may name the top folder differently (e.g. "<repo>-master"): accept a lone folder.
    entries = [p for p in staging.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    raise DownloadError(f"{archive}: expected a single top-level folder {strip!r}, found "
                        f"{sorted(p.name for p in entries)[:5]}")
