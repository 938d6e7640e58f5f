import pytest
import torch

from atac.cropping import attention_boxes, crop_and_resize


def test_peak_gives_a_tight_box():
    attn = torch.zeros(1, 7, 7)
    attn[0, 2, 4] = 1.0
    boxes, zoom = attention_boxes(attn, (70, 70), threshold=0.5)
    assert zoom.tolist() == [True]
    x0, y0, x1, y1 = boxes[0].tolist()
    assert 30 <= x0 < 45 < x1 <= 60 and 10 <= y0 < 25 < y1 <= 40  # around cell (row 2, col 4)


def test_empty_mask_means_no_zoom():
    for attn in (torch.zeros(2, 7, 7), -torch.ones(2, 7, 7), torch.full((2, 7, 7), float("nan"))):
        boxes, zoom = attention_boxes(attn, (32, 32))
        assert not zoom.any()
        assert boxes.tolist() == [[0, 0, 32, 32]] * 2


def test_full_mask_means_no_zoom():
    boxes, zoom = attention_boxes(torch.ones(3, 7, 7), (64, 48), threshold=0.5)
    assert not zoom.any() and boxes[0].tolist() == [0, 0, 48, 64]
    # a box just under the full-image fraction still zooms, one above does not
    attn = torch.ones(1, 10, 10)
    attn[0, :, 0] = 0
    _, zoom = attention_boxes(attn, (100, 100), threshold=0.99, full_fraction=0.95)
    assert zoom.tolist() == [True]
    _, zoom = attention_boxes(attn, (100, 100), threshold=0.99, full_fraction=0.8)
    assert zoom.tolist() == [False]


def test_one_pixel_box_crops_to_a_constant_image():
    attn = torch.zeros(1, 4, 4)
    attn[0, 1, 2] = 1.0
    boxes, zoom = attention_boxes(attn, (4, 4), threshold=1.0)
    assert zoom.item() and boxes[0].tolist() == [2, 1, 3, 2]
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = crop_and_resize(x, boxes, zoom)
    # the zoomed view of one pixel is that pixel, bilinearly blended with its neighbours' edges
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.mean().item() == pytest.approx(x[0, 0, 1, 2].item(), abs=1e-4)
    assert (out - x[0, 0, 1, 2]).abs().max().item() <= 2.0


def test_crop_and_resize_full_box_is_identity_and_batch_is_independent():
    x = torch.rand(3, 3, 20, 30)
    full = torch.tensor([[0, 0, 30, 20]] * 3, dtype=torch.float32)
    assert torch.allclose(crop_and_resize(x, full), x, atol=1e-6)
    boxes = torch.tensor([[0, 0, 15, 10], [0, 0, 30, 20], [10, 5, 20, 15]], dtype=torch.float32)
    zoom = torch.tensor([True, False, True])
    out = crop_and_resize(x, boxes, zoom)
    assert torch.equal(out[1], x[1])  # no zoom: exactly the image
    one = crop_and_resize(x[2:], boxes[2:], zoom[2:])
    assert torch.allclose(out[2:], one)
    # a half-size crop of the top-left corner, upsampled: its top-left pixel is the image's
    assert torch.allclose(out[0, :, 0, 0], x[0, :, 0, 0], atol=0.3)
