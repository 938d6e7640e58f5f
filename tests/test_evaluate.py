import numpy as np
import pytest
import torch

from atac.evaluate import SingleClassError, image_metrics, pixel_auroc


def test_image_metrics_values():
    m = image_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["image_auroc"] == pytest.approx(0.75)
    assert 0.5 < m["image_auprc"] <= 1.0


def test_single_class_test_set_is_an_error_not_a_number():
    with pytest.raises(SingleClassError, match="undefined.*normal"):
        image_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(SingleClassError, match="anomalous"):
        image_metrics(np.ones(4), np.arange(4))
    with pytest.raises(ValueError, match="not finite"):
        image_metrics([0, 1], [0.0, float("nan")])


def test_pixel_auroc_perfect_map_and_no_masks():
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[1, 0, :4, :4] = True
    maps = torch.zeros(2, 2, 2)
    maps[1, 0, 0] = 1.0
    assert pixel_auroc(maps, masks) > 0.9
    assert pixel_auroc(maps, torch.zeros_like(masks)) is None
    # an anomalous image without a mask is left out, not counted as all-normal
    labels, has = torch.tensor([1, 1]), torch.tensor([False, True])
    assert pixel_auroc(maps, masks, has, labels) is None or pixel_auroc(maps, masks, has, labels) > 0.9
