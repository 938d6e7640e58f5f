"""Shared fixtures. Every test gets its own atac cache (ATAC_CACHE) unless it asks for the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_ROOT = os.environ.get("ATAC_DATA_ROOT", "").strip()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    if "user_cache" in request.keywords:
        return
    monkeypatch.setenv("ATAC_CACHE", str(tmp_path_factory.getbasetemp() / "atac-cache"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (64 px), made once per session."""
    from atac.data.synth import make_synthetic

    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root, ["weave", "grid"], image_size=64, n_train=16, n_test_good=8, n_test_per_type=4)
    return root


def real_root() -> Path:
    if not REAL_ROOT or not Path(REAL_ROOT).is_dir():
        pytest.skip("ATAC_DATA_ROOT not set (real MVTec grid / Magnetic Tile images)")
    return Path(REAL_ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "user_cache: use the user's atac cache (fetched weights)")


def count_training_steps(monkeypatch) -> dict:
    """From now on, count training steps (``BalancedBatches.next`` calls) in ``counter["n"]``."""
    import atac.train as train_mod

    counter = {"n": 0}
    real_next = train_mod.BalancedBatches.next

    def counting_next(self):
        counter["n"] += 1
        return real_next(self)

    monkeypatch.setattr(train_mod.BalancedBatches, "next", counting_next)
    return counter
