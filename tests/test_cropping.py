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


def _reference_boxes(attn, size, threshold=0.5, full_fraction=0.95):
    """Algorithm 1 read literally: form the (B, H, W) mask, take its bounding box."""
    import torch.nn.functional as F

    H, W = size
    out_boxes, out_zoom = [], []
    for a in attn.float():
        peak = a.max()
        if not torch.isfinite(a).all() or peak <= 0:
            out_boxes.append([0.0, 0.0, W, H]), out_zoom.append(False)
            continue
        up = F.interpolate((a / peak)[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        ys, xs = torch.nonzero(up >= threshold, as_tuple=True)
        if len(ys) == 0:                                 # no pixel reaches the threshold
            out_boxes.append([0.0, 0.0, W, H]), out_zoom.append(False)
            continue
        box = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        zoom = (box[2] - box[0]) * (box[3] - box[1]) < full_fraction * H * W
        out_boxes.append([float(v) for v in box] if zoom else [0.0, 0.0, W, H]), out_zoom.append(zoom)
    return torch.tensor(out_boxes), torch.tensor(out_zoom)


def test_boxes_equal_the_literal_mask_bounding_box():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        h, w = (int(v) for v in torch.randint(2, 12, (2,), generator=g))
        attn = torch.randn(6, h, w, generator=g) ** 3
        size = tuple(int(v) for v in torch.randint(16, 90, (2,), generator=g))
        thr = [0.3, 0.5, 0.9, 1.0][trial % 4]
        boxes, zoom = attention_boxes(attn, size, thr)
        ref_boxes, ref_zoom = _reference_boxes(attn, size, thr)
        assert torch.equal(zoom, ref_zoom) and torch.equal(boxes, ref_boxes), trial


def test_a_map_with_an_infinite_value_means_no_zoom():
    attn = torch.zeros(2, 7, 7)
    attn[:, 3, 3] = 1.0
    attn[0, 0, 0] = float("-inf")
    boxes, zoom = attention_boxes(attn, (28, 28))
    assert zoom.tolist() == [False, True] and boxes[0].tolist() == [0, 0, 28, 28]


def _roi_align_reference(x, boxes, zoom):
    """One torchvision call over the whole batch, then the images where there is no zoom."""
    from torchvision.ops import roi_align

    B, _, H, W = x.shape
    rois = torch.cat([torch.arange(B, dtype=torch.float32)[:, None], boxes.float()], 1)
    out = roi_align(x.float().contiguous(), rois, output_size=(H, W), spatial_scale=1.0,
                    sampling_ratio=1, aligned=True).to(x.dtype)
    return out if zoom is None else torch.where(zoom[:, None, None, None], out, x)


@pytest.mark.parametrize("threads", [1, 2])
def test_crops_are_one_roi_align_call_bit_for_bit(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(threads)
        for B in (1, 2, 5):
            x = torch.rand(B, 3, 40, 56, generator=g)
            boxes, zoom = attention_boxes(torch.randn(B, 7, 7, generator=g) ** 3, (40, 56), 0.4)
            zoom[0] = False                                  # at least one image unzoomed
            for inp in (x, x.contiguous(memory_format=torch.channels_last), (x * 255).to(torch.uint8)):
                for z in (zoom, None):
                    ref = _roi_align_reference(inp, boxes, z)
                    for ctx in (torch.no_grad, torch.inference_mode, torch.enable_grad):
                        with ctx():
                            out = crop_and_resize(inp, boxes, z)
                        assert out.dtype == inp.dtype and torch.equal(out, ref)
                        # the crops come in the input's memory format
                        assert out.is_contiguous(memory_format=torch.channels_last) == \
                            inp.is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.set_num_threads(old)


def test_crops_feed_a_training_graph_and_stay_differentiable_when_asked():
    x = torch.rand(4, 3, 32, 32)
    boxes = torch.tensor([[0, 0, 16, 16], [8, 8, 32, 32], [0, 0, 32, 32], [4, 0, 20, 30]]).float()
    zoom = torch.tensor([True, True, False, True])
    conv = torch.nn.Conv2d(3, 2, 3)
    conv(crop_and_resize(x, boxes, zoom)).sum().backward()      # crops are ordinary tensors
    assert conv.weight.grad is not None
    xg = x.clone().requires_grad_(True)
    crop_and_resize(xg, boxes, zoom).sum().backward()           # roi_align's gradient reaches x
    assert xg.grad is not None and xg.grad[2].eq(1).all() and xg.grad[0].abs().sum() > 0

