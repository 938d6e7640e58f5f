"""Runs on the real images in $ATAC_DATA_ROOT (MVTec AD grid and metal_nut, Magnetic Tile); skipped
when absent. metal_nut is not in the shared data folder (CI's): its tests skip there, saying how to
build a data root that has it (../shared/data/get_metal_nut.sh)."""

import json

import cv2
import numpy as np
import pytest

from atac.cli import main
from atac.config import preset
from atac.data.datasets import load_index
from atac.data.images import read_image, read_mask
from atac.data.preprocess import apply_clahe, is_grayscale, prepare
from atac.data.splits import make_split
from atac.run import run
from conftest import metal_nut_root, real_root

pytestmark = pytest.mark.realdata


def test_grid_and_magnetic_tile_indexes():
    root = real_root()
    grid = load_index("mvtec_ad", "grid", root)
    assert (len(grid.train), len(grid.test)) == (264, 78)
    assert grid.defect_types == ["bent", "broken", "glue", "metal_contamination", "thread"]
    s = make_split(grid, 10, 0)
    assert (sum(x.label == 0 for x in s.test), sum(x.label for x in s.test)) == (21, 47)
    mt = load_index("magnetic_tile", "magnetic_tile", root)
    assert (len(mt.train), sum(x.label == 0 for x in mt.test)) == (400, 100)
    assert mt.defect_types == ["blowhole", "break", "crack", "fray", "uneven"]
    assert not {x.path for x in mt.train} & {x.path for x in mt.test}


# MVTec AD metal_nut as ../shared/data/get_metal_nut.sh builds it (its SOURCES.md and manifest):
# test images per type ("good" = the test normals)
METAL_NUT_TEST = {"bent": 25, "color": 22, "flip": 23, "good": 22, "scratch": 23}
METAL_NUT_TYPES = ["bent", "color", "flip", "scratch"]


def test_metal_nut_index_layout_and_masks():
    idx = load_index("mvtec_ad", "metal_nut", metal_nut_root())
    assert (idx.dataset, idx.category, idx.root.name) == ("mvtec_ad", "metal_nut", "metal_nut")
    assert len(idx.train) == 220 and all(s.rel.startswith("train/good/") for s in idx.train)
    assert idx.summary()["test_per_type"] == METAL_NUT_TEST and idx.defect_types == METAL_NUT_TYPES
    assert (idx.summary()["test_normal"], idx.summary()["test_anomalous"]) == (22, 93)
    # every anomaly has its mask, <category>/ground_truth/<type>/<stem>_mask.png; normals have none
    anomalies = [s for s in idx.test if s.label == 1]
    assert all(s.mask_path for s in anomalies) and not any(s.mask_path for s in idx.test if s.label == 0)
    for s in anomalies:
        stem = s.rel.split("/")[-1].rsplit(".", 1)[0]
        assert s.mask_path.endswith(f"ground_truth/{s.defect_type}/{stem}_mask.png")
    # each mask is the size of its image (700 x 700) and marks some, never all, of it
    for s in anomalies:
        m = read_mask(s.mask_path, shape=(700, 700))
        assert 0 < m.mean() < 1, s.rel
    assert read_image(idx.train[0].path).shape == (700, 700, 3)


def test_metal_nut_splits_per_setting_and_known_type():
    idx = load_index("mvtec_ad", "metal_nut", metal_nut_root())
    for seed in (0, 1, 2):
        ten, one = make_split(idx, 10, seed), make_split(idx, 1, seed)
        assert (len(ten.train_normal), len(ten.train_anomalous)) == (220, 10)
        assert (sum(x.label == 0 for x in ten.test), sum(x.label for x in ten.test)) == (22, 83)
        # one anomaly: the first of the same ten, and the same test set (NOTES.md)
        assert one.train_anomalous == ten.train_anomalous[:1] and one.test == ten.test
    for t in METAL_NUT_TYPES:
        for shots in (10, 1):
            s = make_split(idx, shots, 0, setting="hard", known_type=t)
            assert len(s.train_anomalous) == shots and {x.defect_type for x in s.train_anomalous} == {t}
            assert sum(x.label == 0 for x in s.test) == 22
            assert sum(x.label for x in s.test) == 93 - METAL_NUT_TEST[t]   # the whole type leaves
            assert t not in {x.defect_type for x in s.test}
            assert not {x.path for x in s.train_anomalous} & {x.path for x in s.test}


def test_metal_nut_clahe_equalises_lightness_and_keeps_colour():
    """metal_nut is RGB (grid is gray): CLAHE works on LAB lightness and leaves hue and chroma."""
    idx = load_index("mvtec_ad", "metal_nut", metal_nut_root())
    color = next(s for s in idx.test if s.defect_type == "color")
    for s in (idx.train[0], color):
        raw = read_image(s.path)
        assert not is_grayscale(raw)
        out = apply_clahe(raw, 2.0, 8)
        assert out.shape == raw.shape and out.dtype == np.uint8 and not is_grayscale(out)
        lab0 = cv2.cvtColor(raw, cv2.COLOR_RGB2LAB).astype(float)
        lab1 = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(float)
        # lightness: CLAHE's equalisation of the input's L (up to the LAB -> RGB -> LAB round trip),
        # with a wider spread than before
        want = cv2.createCLAHE(2.0, (8, 8)).apply(np.ascontiguousarray(lab0[..., 0].astype(np.uint8)))
        assert np.abs(lab1[..., 0] - want).mean() < 1.0
        assert lab1[..., 0].std() > 1.1 * lab0[..., 0].std()
        # colour: a and b (8-bit LAB, 128 = neutral) move by under one level on average
        for c in (1, 2):
            assert np.abs(lab1[..., c] - lab0[..., c]).mean() < 1.0
            assert np.percentile(np.abs(lab1[..., c] - lab0[..., c]), 99) <= 3
        # hue and chroma of the coloured pixels (chroma > 10) are kept
        a0, b0, a1, b1 = lab0[..., 1] - 128, lab0[..., 2] - 128, lab1[..., 1] - 128, lab1[..., 2] - 128
        chroma0, chroma1 = np.hypot(a0, b0), np.hypot(a1, b1)
        coloured = chroma0 > 10
        assert coloured.mean() > 0.05
        hue_shift = np.abs(np.angle(np.exp(1j * (np.arctan2(b1, a1) - np.arctan2(b0, a0)))))[coloured]
        assert np.degrees(hue_shift.mean()) < 2.0
        assert np.abs(chroma1 - chroma0)[coloured].mean() < 0.05 * chroma0[coloured].mean()
    # the cached pipeline the runs use: three different channels, masks where the defects are
    samples = [idx.train[0], color]
    prep = prepare(samples, 64, clahe=True, use_cache=False, progress=False)
    x = prep.images.long()
    assert prep.images.shape == (2, 3, 64, 64)
    assert all((x[i, 0] != x[i, 1]).any() and (x[i, 1] != x[i, 2]).any() for i in range(2))
    assert prep.has_mask.tolist() == [False, True] and prep.masks[1].any() and not prep.masks[0].any()


def test_metal_nut_data_info(capsys):
    root = metal_nut_root()
    assert main(["data", "info", "--dataset", "mvtec_ad", "--category", "metal_nut",
                 "--data-root", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["dataset"], info["category"]) == ("mvtec_ad", "metal_nut")
    assert info["root"].endswith("mvtec_ad/metal_nut")
    assert (info["train_normal"], info["test_normal"], info["test_anomalous"], info["masks"]) == (220, 22, 93, 93)
    assert info["test_per_type"] == METAL_NUT_TEST


@pytest.mark.slow
@pytest.mark.parametrize("dataset,category", [("mvtec_ad", "grid"), ("mvtec_ad", "metal_nut"),
                                              ("magnetic_tile", "magnetic_tile")])
def test_short_real_run(dataset, category, tmp_path):
    cfg = preset("smoke")
    root = metal_nut_root() if category == "metal_nut" else real_root()
    cfg.dataset, cfg.category, cfg.data_root = dataset, category, str(root)
    cfg.backbone, cfg.weights, cfg.shots = "mobilenet_v2", "none", 10
    run(cfg, tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= m["image_auroc"] <= 1.0 and m["pixel_auroc"] is not None
    assert m["n_train_anomalous"] == 10 and m["dataset"] == dataset
