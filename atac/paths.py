"""Where atac keeps what it makes: caches, generated data, fetched weights.

``ATAC_CACHE`` overrides the cache root (default ``~/.cache/atac``); ``ATAC_DATA_ROOT`` names the
folder that holds real datasets (``<root>/mvtec_ad/<category>``, ``<root>/magnetic_tile``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root (``$ATAC_CACHE`` or ``~/.cache/atac``), created if missing."""
    root = Path(os.environ.get("ATAC_CACHE", Path.home() / ".cache" / "atac")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def env_data_root() -> Path | None:
    """``$ATAC_DATA_ROOT`` as a path, or None when unset or empty."""
    value = os.environ.get("ATAC_DATA_ROOT", "").strip()
    return Path(value).expanduser() if value else None


def synthetic_root() -> Path:
    """Default folder of the generated (synthetic) dataset: ``<cache>/data``."""
    return cache_dir() / "data"


def display_path(path, repo: str | Path | None = None) -> str:
    """A path as a reader of the repository knows it: relative to ``repo`` (POSIX separators) when
    inside it, else as given.

    Args:
        path: a file or folder (need not exist).
        repo: the repository's root; None: the parent of the current folder (a chapter of the book
            runs in ``book/``).
    Example:
        >>> display_path("/repo/paper_runs/results/x.jsonl", repo="/repo")
        'paper_runs/results/x.jsonl'
    """
    p = Path(path).resolve()
    root = (Path.cwd().parent if repo is None else Path(repo)).resolve()
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(path)
