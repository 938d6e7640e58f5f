"""Tests for the synthetic MVTec-layout generator (atac.data.synth, drawing in atac.data.textures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from atac.data import synth, textures
from atac.data.synth import CATEGORIES, make_synthetic

SMALL = dict(seed=0, image_size=64, n_train=6, n_test_good=3, n_test_per_type=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth"), **SMALL)


def test_three_categories_two_colour_one_gray():
    assert len(CATEGORIES) == 3
    for types in CATEGORIES.values():
        assert 3 <= len(types) <= 4 and len(set(types)) == len(types) and "good" not in types
    assert sorted(synth._params(c, **SMALL)["mode"] for c in CATEGORIES) == ["L", "RGB", "RGB"]


def test_layout_and_counts(small):
    assert small.name == "synthetic"
    assert sorted(p.name for p in small.iterdir() if not p.name.startswith(".")) == sorted(CATEGORIES)
    assert not [p for p in small.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    for cat, types in CATEGORIES.items():
        base = small / cat
        assert sorted(p.name for p in (base / "train" / "good").iterdir()) == [f"{i:03d}.png" for i in range(6)]
        assert sorted(p.name for p in (base / "test").iterdir()) == sorted(("good", *types))
        assert sorted(p.name for p in (base / "test" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
        assert sorted(p.name for p in (base / "ground_truth").iterdir()) == sorted(types)
        for t in types:
            assert sorted(p.name for p in (base / "test" / t).iterdir()) == ["000.png", "001.png", "002.png"]
            assert sorted(p.name for p in (base / "ground_truth" / t).iterdir()) == [
                "000_mask.png", "001_mask.png", "002_mask.png"]
        marker = json.loads((base / ".complete.json").read_text())
        assert marker["category"] == cat and marker["seed"] == 0 and marker["image_size"] == 64
        assert marker["n_train"] == 6 and marker["defect_types"] == list(types)


def test_image_modes_sizes_and_masks(small):
    for cat, types in CATEGORIES.items():
        mode = "L" if cat == "grid" else "RGB"
        for p in (small / cat).glob("t*/*/*.png"):
            with Image.open(p) as im:
                assert im.mode == mode and im.size == (64, 64), p
        for t in types:
            for i in range(3):
                with Image.open(small / cat / "ground_truth" / t / f"{i:03d}_mask.png") as im:
                    assert im.mode == "L" and im.size == (64, 64)
                    m = np.asarray(im)
                assert set(np.unique(m)) <= {0, 255}
                frac = (m > 0).mean()
                assert 0.002 < frac < 0.08, (cat, t, i, frac)   # small-ish but present


def test_normal_images_differ(small):
    for cat in CATEGORIES:
        a = _load(small / cat / "train" / "good" / "000.png").astype(float)
        b = _load(small / cat / "train" / "good" / "001.png").astype(float)
        assert np.abs(a - b).mean() > 5, cat


def test_deterministic_bytes(small, tmp_path):
    again = make_synthetic(tmp_path, **SMALL)
    for cat in CATEGORIES:
        assert _files(again / cat) == _files(small / cat), cat


def test_seed_changes_images(small, tmp_path):
    other = make_synthetic(tmp_path, ["weave", "grid"], **{**SMALL, "seed": 1})
    for cat in ("weave", "grid"):
        for rel in ("train/good/000.png", "test/good/002.png", f"test/{CATEGORIES[cat][0]}/001.png"):
            assert not np.array_equal(_load(other / cat / rel), _load(small / cat / rel)), (cat, rel)


def test_skip_when_complete(tmp_path, monkeypatch):
    base = make_synthetic(tmp_path, "dots", **SMALL)          # a single name is accepted too
    before = {p: p.stat().st_mtime_ns for p in (base / "dots").rglob("*")}

    def boom(*a, **k):
        raise AssertionError("regenerated a complete category")

    monkeypatch.setattr(synth, "render", boom)
    assert make_synthetic(tmp_path, ["dots"], **SMALL) == base
    assert {p: p.stat().st_mtime_ns for p in (base / "dots").rglob("*")} == before


def test_param_mismatch_raises_then_overwrite(tmp_path):
    base = make_synthetic(tmp_path, ["grid"], **SMALL)
    old = _files(base / "grid")
    with pytest.raises(FileExistsError, match=str(base / "grid")):
        make_synthetic(tmp_path, ["grid"], **{**SMALL, "n_train": 4})
    assert _files(base / "grid") == old                        # untouched
    make_synthetic(tmp_path, ["grid"], **{**SMALL, "n_train": 4}, overwrite=True)
    assert len(list((base / "grid" / "train" / "good").iterdir())) == 4
    assert json.loads((base / "grid" / ".complete.json").read_text())["n_train"] == 4
    assert not [p for p in base.iterdir() if p.name.startswith(".")]


def test_foreign_folder_needs_overwrite(tmp_path):
    foreign = tmp_path / "synthetic" / "weave"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("not generated")
    with pytest.raises(FileExistsError, match="weave"):
        make_synthetic(tmp_path, ["weave"], **SMALL)
    assert (foreign / "mine.txt").exists()
    make_synthetic(tmp_path, ["weave"], **SMALL, overwrite=True)
    assert not (foreign / "mine.txt").exists() and (foreign / ".complete.json").exists()


def test_interrupted_run_leaves_no_category(tmp_path, monkeypatch):
    real, calls = synth._save_png, []

    def flaky(arr, path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        real(arr, path)

    monkeypatch.setattr(synth, "_save_png", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path, ["weave"], **SMALL)
    out = tmp_path / "synthetic"
    assert list(out.iterdir()) == []                          # no category, no temporary folder
    monkeypatch.setattr(synth, "_save_png", real)
    make_synthetic(tmp_path, ["weave"], **SMALL)
    assert (out / "weave" / ".complete.json").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="weave.*dots.*grid|valid names"):
        make_synthetic(tmp_path, ["weave", "carpet"])
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic(tmp_path, ["weave"], image_size=16)
    with pytest.raises(ValueError, match="seed"):
        make_synthetic(tmp_path, ["weave"], seed=-1)
    assert not (tmp_path / "synthetic").exists()


def test_unknown_category_lists_valid_names(tmp_path):
    with pytest.raises(ValueError) as err:
        make_synthetic(tmp_path, ["carpet"])
    for name in CATEGORIES:
        assert name in str(err.value)


def test_mask_is_exactly_where_the_defect_was_drawn():
    for cat, types in CATEGORIES.items():
        for t in types:
            for i in range(3):
                clean, img, mask = textures.render(cat, t, textures.image_rng(5, cat, "test", t, i), 64)
                assert mask.any()
                assert np.array_equal(img[~mask], clean[~mask]), (cat, t, i)
                diff = np.abs(img.astype(float) - clean.astype(float))
                diff = diff.mean(-1) if diff.ndim == 3 else diff
                assert diff[mask].mean() > 8, (cat, t, i, diff[mask].mean())


def _patches(img: np.ndarray, k: int = 11) -> np.ndarray:
    a = img.astype(np.float32) / 255
    a = a[..., None] if a.ndim == 2 else a
    w = sliding_window_view(a, (k, k), axis=(0, 1))[::2, ::2]
    return w.reshape(w.shape[0], w.shape[1], -1)


def test_defects_are_localised(small):
    """A raw-pixel nearest-neighbour patch detector, fit on the written normals, scores the
    masked region of every defect type higher than the rest of the image."""
    for cat, types in CATEGORIES.items():
        base = small / cat
        bank = np.concatenate([_patches(_load(p)).reshape(-1, _patches(_load(p)).shape[-1])
                               for p in sorted((base / "train" / "good").iterdir())])
        bank_sq = (bank**2).sum(1)
        for t in types:
            inside, outside = [], []
            for i in range(3):
                q = _patches(_load(base / "test" / t / f"{i:03d}.png"))
                h, w, d = q.shape
                q = q.reshape(-1, d)
                d2 = (q**2).sum(1)[:, None] + bank_sq[None] - 2 * q @ bank.T
                score = np.sqrt(np.maximum(d2.min(1), 0)).reshape(h, w)
                m = _load(base / "ground_truth" / t / f"{i:03d}_mask.png") > 0
                centre = sliding_window_view(m, (11, 11))[::2, ::2][..., 5, 5]
                inside.append(score[centre].mean())
                outside.append(score[~centre].mean())
            assert np.mean(inside) > 1.05 * np.mean(outside), (cat, t, np.mean(inside), np.mean(outside))


def test_progress_bar(tmp_path, capsys):
    make_synthetic(tmp_path, ["grid"], **{**SMALL, "n_train": 2, "n_test_per_type": 1}, progress=True)
    assert "synthetic data" in capsys.readouterr().err
