"""Algorithm 1 of the supplement: the attention crop ("zoomed view").

1. A = the attention map (B, h, w), each map divided by its maximum.
2. Bilinear upsampling to the input size (H, W); mask = A_up >= w.
3. The bounding box of the mask; the input is cropped to it and resized back to (H, W).
4. An empty mask (a map whose maximum is not positive, or one with a non-finite value) or a box
   covering at least ``full_fraction`` of the image means "no zoom": the crop is the image itself
   (supplement: for genuine samples "the full image is cropped so no zooming").

Everything is batched tensor code (no per-image Python loop, no host-device synchronisation): the
crop-and-resize is ``torchvision.ops.roi_align`` (bilinear). Boxes are computed without gradient;
the crop indexes pixels and is not differentiated through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


@torch.no_grad()
def attention_boxes(attn: torch.Tensor, size: tuple[int, int], threshold: float = 0.5,
                    full_fraction: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop boxes from attention maps (Algorithm 1, lines 1–4).

    Args:
        attn: (B, h, w) attention maps (any real values).
        size: (H, W) of the input images.
        threshold: w in (0, 1]: pixels with A_up >= w * max(A) are kept.
        full_fraction: boxes covering at least this fraction of H*W mean "no zoom".
    Returns:
        boxes: float (B, 4) ``(x0, y0, x1, y1)`` in pixel edges (x1, y1 exclusive); the full image
            where there is no zoom.
        zoom: bool (B,), True where the crop differs from the image.
    """
    if attn.ndim != 3:
        raise ValueError(f"attention_boxes expects (B, h, w), got {tuple(attn.shape)}")
    H, W = size
    B = attn.shape[0]
    a = attn.float()
    peak = a.flatten(1).amax(dim=1)                                     # (B,)
    valid = torch.isfinite(a).flatten(1).all(dim=1) & (peak > 0)
    a = a / torch.where(valid, peak, torch.ones_like(peak))[:, None, None]
    up = F.interpolate(a[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    # the mask up >= threshold is read only through its rows and columns: row i has a pixel in
    # the mask exactly when its largest value reaches the threshold (up is finite where valid), and two
    # reductions of up cost far less than forming the (B, H, W) mask
    rows = (up.amax(dim=2) >= threshold) & valid[:, None]               # (B, H)
    cols = (up.amax(dim=1) >= threshold) & valid[:, None]               # (B, W)
    nonempty = rows.any(dim=1)
    ar_h = torch.arange(H, device=attn.device)
    ar_w = torch.arange(W, device=attn.device)
    big = torch.full_like(ar_h, H), torch.full_like(ar_w, W)
    y0 = torch.where(rows, ar_h, big[0]).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    x0 = torch.where(cols, ar_w, big[1]).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    area = (y1 - y0).clamp(min=0) * (x1 - x0).clamp(min=0)
    zoom = nonempty & (area < full_fraction * H * W)
    full = torch.zeros(B, 4, device=attn.device)   # filled on the device: no host-to-device copy
    full[:, 2], full[:, 3] = W, H
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(zoom[:, None], boxes, full), zoom


def crop_and_resize(x: torch.Tensor, boxes: torch.Tensor, zoom: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image to its box and resize it back to (H, W), batched (bilinear ``roi_align``,
    one sample at each output pixel's centre: ``aligned=True, sampling_ratio=1``).

    Args:
        x: (B, C, H, W) images.
        boxes: (B, 4) ``(x0, y0, x1, y1)`` pixel edges.
        zoom: optional bool (B,); where False the image is returned unchanged (exactly).
    Returns:
        (B, C, H, W) zoomed views, with the dtype and the memory format (channels-last or not) of
        ``x``: the second pass reads them as they come.
    """
    B, _, H, W = x.shape
    rois = torch.cat([torch.arange(B, device=x.device, dtype=boxes.dtype)[:, None], boxes.to(x.device)], 1)
    rois = rois.float()
    # roi_align reads a channels-last input more slowly on CPU than this NCHW copy costs
    src = x.float().contiguous() if x.device.type == "cpu" else x.float()
    if torch.is_grad_enabled() and x.requires_grad:  # differentiable, one call (not used by atac)
        crops = roi_align(src, rois, output_size=(H, W), spatial_scale=1.0, sampling_ratio=1,
                          aligned=True).to(x.dtype)
        if zoom is not None:
            crops = torch.where(zoom.to(x.device)[:, None, None, None], crops, x)
        return crops.contiguous(memory_format=_memory_format(x))
    # the crops go straight into x's memory format (channels-last for the second pass): no copy
    # after, and the images without zoom are copied in (on CPU) rather than a where over the batch
    with torch.no_grad():
        crops = roi_align(src, rois, output_size=(H, W), spatial_scale=1.0, sampling_ratio=1, aligned=True)
        out = torch.empty_like(x)
        if zoom is None:
            return out.copy_(crops)                # the cast to x's dtype is .to()'s
        if x.device.type != "cpu":                 # no host-device synchronisation
            return torch.where(zoom.to(x.device)[:, None, None, None], crops.to(x.dtype), x, out=out)
        out.copy_(crops)
        keep = (~zoom.cpu()).nonzero().flatten()   # the images themselves where there is no zoom
        if len(keep):
            out[keep] = x[keep]
        return out


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


@torch.no_grad()
def box_coverage(boxes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The fraction of each mask's pixels that lie inside its crop box (beyond the paper: does the
    zoomed view still contain the defect?).

    Args:
        boxes: (N, 4) ``(x0, y0, x1, y1)`` pixel edges (x1, y1 exclusive), as
            :func:`attention_boxes` returns them (the full image where there is no zoom).
        masks: bool (N, 1, H, W) or (N, H, W) ground-truth masks on the same pixel grid.
    Returns:
        float32 (N,) in [0, 1]: defect pixels inside the box / defect pixels; NaN for an empty
        mask (a normal image, or an anomaly without a mask), where coverage is undefined.
    Raises:
        ValueError: the lengths differ or ``boxes`` is not (N, 4).
    """
    m = masks.reshape(masks.shape[0], masks.shape[-2], masks.shape[-1]).bool()
    if boxes.ndim != 2 or boxes.shape != (len(m), 4):
        raise ValueError(f"box_coverage: expected boxes (N={len(m)}, 4), got {tuple(boxes.shape)}")
    H, W = m.shape[-2:]
    ys = torch.arange(H, device=m.device)[None, :, None]                # (1, H, 1)
    xs = torch.arange(W, device=m.device)[None, None, :]                # (1, 1, W)
    b = boxes.to(m.device).float()
    inside = ((ys >= b[:, 1, None, None]) & (ys < b[:, 3, None, None])
              & (xs >= b[:, 0, None, None]) & (xs < b[:, 2, None, None]))  # (N, H, W)
    total = m.flatten(1).sum(1).float()
    hit = (m & inside).flatten(1).sum(1).float()
    return torch.where(total > 0, hit / total.clamp(min=1), torch.full_like(total, float("nan")))
