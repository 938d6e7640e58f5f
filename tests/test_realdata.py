"""Runs on the real images in $ATAC_DATA_ROOT (MVTec AD grid, Magnetic Tile); skipped when absent."""

import json

import pytest

from atac.config import preset
from atac.data.datasets import load_index
from atac.data.splits import make_split
from atac.train import run
from conftest import real_root

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


@pytest.mark.slow
@pytest.mark.parametrize("dataset,category", [("mvtec_ad", "grid"), ("magnetic_tile", "magnetic_tile")])
def test_short_real_run(dataset, category, tmp_path):
    cfg = preset("smoke")
    cfg.dataset, cfg.category, cfg.data_root = dataset, category, str(real_root())
    cfg.backbone, cfg.weights, cfg.shots = "mobilenet_v2", "none", 10
    run(cfg, tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= m["image_auroc"] <= 1.0 and m["pixel_auroc"] is not None
    assert m["n_train_anomalous"] == 10 and m["dataset"] == dataset
