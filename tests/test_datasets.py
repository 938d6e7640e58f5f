"""Dataset readers: masks that are not found are warned about with the paths looked for."""

import warnings

import numpy as np
import pytest
from PIL import Image

from atac.data.datasets import DataWarning, read_magnetic_tile, read_mvtec


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def _mvtec(root, gt_folder="ground_truth", mask_name="{}_mask.png"):
    cat = root / "cat"
    _png(cat / "train" / "good" / "000.png")
    _png(cat / "test" / "good" / "000.png")
    for i in range(2):
        _png(cat / "test" / "crack" / f"00{i}.png")
        _png(cat / gt_folder / "crack" / mask_name.format(f"00{i}"), 255)
    return cat


def test_mvtec_masks_in_the_expected_place_give_no_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idx = read_mvtec(_mvtec(tmp_path))
    assert all(s.mask_path for s in idx.test if s.label == 1)


@pytest.mark.parametrize("gt_folder,mask_name", [("ground_truth", "{}_mask.PNG"),
                                                 ("groundtruth", "{}_mask.png")])
def test_mvtec_masks_not_found_are_warned_about_with_the_paths_looked_for(tmp_path, gt_folder, mask_name):
    cat = _mvtec(tmp_path, gt_folder, mask_name)
    with pytest.warns(DataWarning, match="no mask found for 2 of its 2 anomalous test images") as rec:
        idx = read_mvtec(cat)
    assert len(rec) == 1
    msg = str(rec[0].message)
    for i in range(2):
        assert str(cat / "ground_truth" / "crack" / f"00{i}_mask.png") in msg
    assert "pixel metrics leave them out" in msg
    assert not any(s.mask_path for s in idx.test)


def test_a_long_list_of_missing_masks_is_cut_short(tmp_path):
    cat = _mvtec(tmp_path, "nowhere")
    for i in range(2, 14):
        _png(cat / "test" / "crack" / f"{i:03d}.png")
    with pytest.warns(DataWarning, match=r"no mask found for 14 of its 14 .*009_mask\.png and 4 more$") as rec:
        read_mvtec(cat)
    assert "010_mask.png" not in str(rec[0].message)


def test_magnetic_tile_masks_not_found_are_warned_about(tmp_path):
    for i in range(3):
        _png(tmp_path / "MT_Free" / "Imgs" / f"f{i}.jpg")
    _png(tmp_path / "MT_Crack" / "Imgs" / "c0.jpg")
    _png(tmp_path / "MT_Crack" / "Imgs" / "c0.png", 255)
    _png(tmp_path / "MT_Crack" / "Imgs" / "c1.jpg")
    with pytest.warns(DataWarning, match=r"no mask found for 1 of its 2 .*looked for: .*MT_Crack/Imgs/c1\.png$"):
        idx = read_magnetic_tile(tmp_path)
    assert [bool(s.mask_path) for s in idx.test if s.label == 1] == [True, False]
