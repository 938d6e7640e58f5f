"""Results records: atomic writes, provenance (git commit, package versions, machine).

A results file (``.jsonl``, one run record per line) keeps each record's split — the files of its
training and test sets, as provenance — in a store beside it, ``<stem>.splits.json``: the record's
``split`` keeps its setting, shots, seed and known type and names its file lists by their SHA-256
(``"files": "sha256:…"``). Runs of one sweep share splits (every method of a seed draws the same),
so each list is stored once. :func:`load_records` puts the lists back: a loaded record is whole.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

PROVENANCE_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "opencv-python-headless",
                       "pillow", "atac")


class WriteError(OSError):
    """A file could not be written (a full disk, no permission, ...). The message names the file
    and the cause; the temporary file was removed and the file itself, if it existed, is as it was."""


# torch's own writer reports a failed write (a full disk among others) as a RuntimeError, e.g.
# "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/3: file write failed"
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed")
_NEARLY_FULL = 1 << 20  # bytes: a filesystem with less than this free to us counts as full


def _write_cause(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        text = exc.strerror or os.strerror(exc.errno)
        return text[:1].lower() + text[1:]
    try:
        if shutil.disk_usage(folder).free < _NEARLY_FULL:
            return "no space left on device"
    except OSError:
        pass
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"the write failed ({first})"


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[str]:
    """Write a file atomically: yields the path of a temporary file in ``path``'s folder (made, and
    empty); when the block ends without error, the file gets the mode an ordinary new file gets and
    replaces ``path`` (one rename). The folder is made when missing.

    Raises:
        WriteError: an ``OSError`` (``ENOSPC``: "no space left on device", ``EACCES``, ...) or
            torch's writer error (``[enforce fail at inline_container.cc...]``) while making,
            writing or renaming the file; it names ``path`` and the cause. On any error (an
            interruption too) the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, WriteError) or (isinstance(exc, RuntimeError) and
                                           not any(m in str(exc) for m in _TORCH_WRITE_FAILURES)):
            raise
        cause = _write_cause(exc, path.parent)  # while the temporary file still takes its space
        kept = f"; the earlier {path.name} is kept" if path.exists() else ""
        raise WriteError(f"cannot write {path}: {cause} (its temporary file was removed{kept})") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`replacing`: temp file in the same folder, then
    rename).

    Raises:
        WriteError: the file could not be written (names it and the cause; nothing is lost).
    """
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`replacing`).

    Raises:
        WriteError: the file could not be written (names it and the cause; nothing is lost).
    """
    import torch

    with replacing(path) as tmp:
        torch.save(obj, tmp)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


_COMMITS: dict[Path, str | None] = {}


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the atac source tree, or None outside a git checkout.

    ``+dirty`` is added when files under ``cwd`` (default: the ``atac`` package, i.e. the library's
    code, not results files a sweep is writing) differ from that commit. The answer is the one
    found by this process's first call for that folder: a long-lived process (a sweep's pool
    worker) runs the code it loaded then, whatever the checkout's HEAD later becomes.
    """
    here = (Path(cwd) if cwd else Path(__file__).resolve().parent).resolve()
    if here not in _COMMITS:
        _COMMITS[here] = _ask_git(here)
    return _COMMITS[here]


def _ask_git(here: Path) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=here, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """The machine a run ran on. ``cpu_capability`` is the widest vector instruction set PyTorch's
    CPU kernels use here (``torch.backends.cpu.get_cpu_capability()``: e.g. ``AVX512``, ``AVX2``):
    with the thread count it decides whether float results can be bit-identical to another run's."""
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cpu_type(machine: dict | None) -> str | None:
    """A record's CPU type as "model, capability" (its ``machine`` dict's ``cpu_model`` and
    ``cpu_capability``); None when it lacks either (records written before they were recorded)."""
    if not machine or machine.get("cpu_model") is None or machine.get("cpu_capability") is None:
        return None
    return f"{machine['cpu_model']}, {machine['cpu_capability']}"


def same_machine_type(a: dict | None, b: dict | None) -> bool | None:
    """Whether two records' ``machine`` dicts name the same CPU type (:func:`cpu_type`); None when
    either lacks it."""
    ta, tb = cpu_type(a), cpu_type(b)
    return None if ta is None or tb is None else ta == tb


# Fractions a record holds: a number in [0, 1] (``image_auroc`` always; the others may be absent or
# null), and the fractions it holds by name (view -> AUROC, head -> AUROC).
FRACTIONS = ("image_auroc", "image_auprc", "pixel_auroc", "zoom_rate_normal", "zoom_rate_anomalous",
             "train_zoom_rate_normal", "train_zoom_rate_anomalous")
NAMED_FRACTIONS = ("view_auroc", "head_auroc")
WHOLE_NUMBERS = ("shots", "seed", "n_train_normal", "n_train_anomalous", "n_test_normal", "n_test_anomalous")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_record(record: Any, where: str) -> dict:
    """``record`` itself when it is a run record whose metrics can be trusted: a mapping with an
    ``image_auroc``; every fraction (:data:`FRACTIONS`, the values of :data:`NAMED_FRACTIONS`) a
    number (not a string) in [0, 1] or, except ``image_auroc``, null; the counts and ``shots`` /
    ``seed`` whole numbers.

    Raises:
        ValueError: the first field that is not so, named with ``where`` (a file, and a line).
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a record (a JSON object of a run's fields)")
    if "image_auroc" not in record:
        raise ValueError(f"{where}: no image_auroc; a run record has its image AUROC (fields: "
                         f"{', '.join(list(record)[:8]) or 'none'}{', ...' if len(record) > 8 else ''})")

    def fraction(name: str, v: Any) -> None:
        if not (_is_number(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{where}: {name} must be a number in [0, 1], got {v!r}")

    for name in FRACTIONS:
        if name in record and (record[name] is not None or name == "image_auroc"):
            fraction(name, record[name])
    for name in NAMED_FRACTIONS:
        if record.get(name) is not None:
            if not isinstance(record[name], dict):
                raise ValueError(f"{where}: {name} must map names to numbers in [0, 1], got {record[name]!r}")
            for k, v in record[name].items():
                fraction(f"{name}.{k}", v)
    for name in WHOLE_NUMBERS:
        if record.get(name) is not None and not (isinstance(record[name], int) and not isinstance(record[name], bool)):
            raise ValueError(f"{where}: {name} must be a whole number, got {record[name]!r}")
    return record


def load_record(path: str | Path) -> dict:
    """One run record, a ``metrics.json`` file, checked with :func:`check_record`.

    Raises:
        ValueError: the file cannot be read, is not JSON, or is not a run record (names the file).
    """
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as a run record ({exc})") from exc
    return check_record(rec, str(path))


def load_records(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl`` results file (one ``metrics.json`` record per line), each split's
    file lists restored from the file's split store (see the module docstring), each checked with
    :func:`check_record`.

    Raises:
        ValueError: a line is not JSON or not a run record whose metrics can be trusted (names the
            file, line and field); a record names split files that its store lacks, or the store is
            not valid (names both files).
    """
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {i}: not JSON ({exc})") from exc
        out.append(check_record(rec, f"{path}, line {i}"))
    if any(_split_key(r) for r in out):
        store = read_split_store(path)
        for i, r in enumerate(out):
            key = _split_key(r)
            if key:
                if key not in store:
                    raise ValueError(f"{path}, record {i + 1}: its split files {key} are not in "
                                     f"{split_store_path(path)}")
                r["split"] = {**{k: v for k, v in r["split"].items() if k != "files"}, **store[key]}
    return out


SPLIT_FILES = ("train_normal", "train_anomalous", "test")


def split_store_path(results: str | Path) -> Path:
    """The split store of a results file: ``<stem>.splits.json`` beside it."""
    p = Path(results)
    return p.with_name(p.stem + ".splits.json")


def _files_hash(files: dict) -> str:
    text = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _split_key(record: dict) -> str | None:
    s = record.get("split")
    return s["files"] if isinstance(s, dict) and isinstance(s.get("files"), str) else None


def read_split_store(results: str | Path) -> dict[str, dict]:
    """hash → file lists of a results file's split store; empty when there is none.

    Raises:
        ValueError: the store is not a JSON mapping, or an entry does not match its hash.
    """
    path = split_store_path(results)
    if not path.is_file():
        return {}
    try:
        store = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(store, dict):
        raise ValueError(f"{path}: not a mapping of split hashes to file lists")
    for key, files in store.items():
        if not isinstance(files, dict) or _files_hash(files) != key:
            raise ValueError(f"{path}: the entry {key} does not match its hash (edited by hand?)")
    return store


def pack_split(record: dict, store: dict[str, dict]) -> dict:
    """``record`` with its split's file lists moved into ``store`` (added under their hash unless
    there): the record's ``split`` names them by ``"files": "sha256:…"``. A record without a whole
    split comes back unchanged. ``record`` itself is not modified."""
    s = record.get("split")
    if not isinstance(s, dict) or not all(isinstance(s.get(k), list) for k in SPLIT_FILES):
        return record
    files = {k: s[k] for k in SPLIT_FILES}
    key = _files_hash(files)
    store.setdefault(key, files)
    return {**record, "split": {**{k: v for k, v in s.items() if k not in SPLIT_FILES}, "files": key}}


def write_records(results: str | Path, records: list[dict]) -> None:
    """Write ``records`` as the results file ``results``, their split file lists in its store (the
    store first, so that the results file never names lists the store lacks). Lists already in the
    store stay; both writes are atomic. Callers that may race hold a lock (``atac.sweep``)."""
    store = read_split_store(results)
    before = len(store)
    packed = [pack_split(r, store) for r in records]
    if len(store) != before:
        atomic_write_text(split_store_path(results), json.dumps(store, indent=1) + "\n")
    atomic_write_text(results, "".join(json.dumps(r, sort_keys=False) + "\n" for r in packed))


SUMMARY_KEYS = ("dataset", "category", "setting", "known_type", "method", "backbone", "shots")


def summarize(records: list[dict], metric: str = "image_auroc") -> list[dict]:
    """Mean ± sample standard deviation of ``metric`` over seeds, per (dataset, category, setting,
    known type, method, backbone, shots). Returns one dict per group, with the seeds and values."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in SUMMARY_KEYS), []).append(r)
    rows = []
    for key, recs in groups.items():
        vals = [float(r[metric]) for r in recs if r.get(metric) is not None]
        rows.append({**dict(zip(SUMMARY_KEYS, key)), "metric": metric, "n": len(vals),
                     "seeds": [r.get("seed") for r in recs], "values": vals,
                     "mean": statistics.fmean(vals) if vals else None,
                     "std": statistics.stdev(vals) if len(vals) > 1 else None})
    return rows
