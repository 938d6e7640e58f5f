"""Pseudo-anomalies: a CutMix paste that changes no pixel is no pseudo-anomaly; every other batch is
what it was."""

import pytest
import torch

import atac.data.pseudo as pseudo
from atac.config import RunConfig, preset
from atac.data.pseudo import cutmix
from atac.losses import SLOT_NORMAL, SLOT_PSEUDO
from atac.run import load_run_data
from atac.train import BalancedBatches


@pytest.mark.parametrize("value,jitter", [(0.5, 0.0), (0.0, 0.1)])  # uniform; black survives jitter
def test_a_paste_that_changes_no_pixel_is_not_a_pseudo_anomaly(value, jitter):
    image = torch.full((3, 32, 32), value)
    gen = torch.Generator().manual_seed(0)
    out, box = cutmix(image, gen, jitter=jitter)
    assert box is None and out is image
    cfg = RunConfig(batch_size=8, pseudo_prob=1.0, image_size=32, patch_jitter=jitter)
    normals = torch.full((4, 3, 32, 32), round(255 * value), dtype=torch.uint8)
    b = BalancedBatches(normals, torch.zeros((2, 3, 32, 32), dtype=torch.uint8), cfg,
                        torch.Generator().manual_seed(0)).next()
    assert b.y[:4].tolist() == [0.0] * 4 and b.slots[:4].tolist() == [SLOT_NORMAL] * 4


def test_a_paste_that_changes_pixels_still_is_one():
    image = torch.zeros((3, 32, 32))
    image[:, ::2] = 1.0                                        # stripes: a moved patch changes pixels
    out, box = cutmix(image, torch.Generator().manual_seed(1), jitter=0.0)
    assert box is not None and not torch.equal(out, image)


@pytest.mark.parametrize("source", ["same", "other"])
def test_ordinary_batches_and_the_generator_stream_are_unchanged(synth_root, monkeypatch, source):
    cfg = preset("smoke")
    cfg.data_root, cfg.category, cfg.shots, cfg.patch_source = str(synth_root), "weave", 2, source
    data = load_run_data(cfg, progress=False)

    def batches():
        gen = torch.Generator().manual_seed(0)
        bb = BalancedBatches(data.train_normal, data.train_anomalous, cfg, gen)
        return [bb.next() for _ in range(40)], gen.get_state()

    now, state_now = batches()
    monkeypatch.setattr(pseudo, "_changed", lambda new, old: True)  # every paste a pseudo-anomaly
    before, state_before = batches()
    assert torch.equal(state_now, state_before)
    assert sum(int((b.slots == SLOT_PSEUDO).sum()) for b in now) >= 20
    for a, b in zip(now, before):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.slots, b.slots)
