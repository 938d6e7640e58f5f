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


def test_summary_over_seeds(tmp_path, capsys):
    import json

    from atac.cli import main
    from atac.results import load_records, summarize

    recs = [{"dataset": "d", "category": "c", "setting": "general", "known_type": None, "method": "atac",
             "backbone": "b", "shots": 10, "seed": s, "image_auroc": v} for s, v in [(0, 0.9), (1, 0.8)]]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    (row,) = summarize(load_records(path))
    assert row["mean"] == pytest.approx(0.85) and row["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert main(["summary", str(path), "--metrics", "image_auroc"]) == 0
    assert "0.850 ± 0.071" in capsys.readouterr().out
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        load_records(path)
