"""Results records: atomic writes, provenance (git commit, package versions, machine)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

PROVENANCE_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "opencv-python-headless",
                       "pillow", "atac")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def load_records(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl`` results file (one ``metrics.json`` record per line).

    Raises:
        ValueError: a line is not a JSON object (names the file and line).
    """
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {i}: not JSON ({exc})") from exc
        if not isinstance(rec, dict):
            raise ValueError(f"{path}, line {i}: not a record")
        out.append(rec)
    return out


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
