import pytest
import torch

from atac.losses import bce_loss, deviation_loss, weighted_ce_loss


def test_deviation_loss_values_hinge_form():
    ref = torch.tensor([-1.0, 1.0])  # mean 0, std sqrt(2)
    s2 = 2 ** 0.5
    scores = torch.tensor([s2 * 2, s2 * 2, s2 * 10])
    labels = torch.tensor([0, 1, 1])
    loss = deviation_loss(scores, labels, margin=5.0, reference=ref)
    # normal: |dev| = 2; anomaly dev=2: 5-2 = 3; anomaly dev=10: clamped at 0 (not -5)
    assert loss.item() == pytest.approx((2 + 3 + 0) / 3, rel=1e-5)


def test_deviation_loss_default_reference_is_standard_normal():
    g = torch.Generator().manual_seed(0)
    loss = deviation_loss(torch.zeros(4), torch.zeros(4), generator=g)
    assert loss.item() < 0.05  # |0 - ~0| / ~1
    with pytest.raises(ValueError, match="shape"):
        deviation_loss(torch.zeros(3), torch.zeros(2))


def test_bce_and_weighted_ce():
    logits, y = torch.tensor([0.0, 0.0]), torch.tensor([0, 1])
    assert bce_loss(logits, y).item() == pytest.approx(0.693147, rel=1e-5)
    # weighted: anomalies weigh 20, genuine 0.5 -> wrong anomaly costs much more
    bad_anom = weighted_ce_loss(torch.tensor([3.0, -3.0]), y)
    bad_norm = weighted_ce_loss(torch.tensor([3.0, 3.0]), y)
    assert bad_anom.item() > 3 * bad_norm.item()
    ref = torch.nn.functional.cross_entropy(torch.stack([torch.zeros(2), torch.tensor([3.0, -3.0])], 1), y,
                                            weight=torch.tensor([0.5, 20.0]))
    assert bad_anom.item() == pytest.approx(ref.item(), rel=1e-5)
