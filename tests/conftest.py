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


def _md_row(text: str, *first: str) -> list[str]:
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if ln.lstrip().startswith("|") and cells[:len(first)] == list(first):
            return cells
    raise AssertionError(f"no table line starting with {first}")


@pytest.fixture
def md_row():
    """``md_row(text, *first)``: the cells (stripped) of the first Markdown table line of ``text``
    whose first cells are ``first``; AssertionError when there is none."""
    return _md_row


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


METAL_NUT_HOW = "build it with ../shared/data/get_metal_nut.sh (see ../shared/data/README.md)"


def metal_nut_root() -> Path:
    """$ATAC_DATA_ROOT when it holds MVTec AD metal_nut (``mvtec_ad/metal_nut/``), else skip, saying
    why: the shared data folder of CI has grid and Magnetic Tile only (metal_nut is too large for
    it), and a data root with metal_nut is built by ``../shared/data/get_metal_nut.sh``."""
    if not REAL_ROOT or not Path(REAL_ROOT).is_dir():
        pytest.skip(f"metal_nut not under ATAC_DATA_ROOT (not set): {METAL_NUT_HOW}")
    root = Path(REAL_ROOT)
    if not (root / "mvtec_ad" / "metal_nut" / "train" / "good").is_dir():
        pytest.skip(f"metal_nut not under ATAC_DATA_ROOT ({root} has no mvtec_ad/metal_nut/): {METAL_NUT_HOW}")
    return root


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
