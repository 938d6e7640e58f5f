"""Ladder step IV: crops around Grad-CAM activations, and the two-stage network that scores them.

Supplement §3, step IV: "retrain on crops around Grad-CAM activations" (computed with
pytorch-grad-cam, package ``grad-cam``, import name ``pytorch_grad_cam``). The supplement's Fig. 1
shows these crops to be unreliable, and the step is not in Table 1; it is here so that the ladder
can be walked step by step. Where the supplement is silent, the choices are:

- Grad-CAM (Selvaraju et al., ICCV 2017, arXiv 1610.02391) of the network's *full-image* anomaly
  score (``ATACNet.score_pass``, no zoom pass), taken at the last backbone block
  (``model.backbone[-1]``): channel weights = spatial mean of d score / d activation, CAM =
  ReLU(Σ_c weight_c · activation_c), upsampled to the input size by the library (bilinear, OpenCV)
  and min-max normalised per image to [0, 1] by it.
- The crop box is Algorithm 1 applied to the CAM instead of the attention map
  (:func:`atac.cropping.attention_boxes`, same threshold ``crop_threshold`` and ``crop_full_fraction``).
  A CAM that is zero everywhere (the ReLU removed every pixel, or a constant CAM that the min-max
  normalisation sends to zero) means "no zoom": the crop is the image itself.
- Crops are resized back to the input size (:func:`atac.cropping.crop_and_resize`) and rounded to
  ``uint8``, so the retrained network sees them exactly like any other pre-processed image.
- The final score mirrors ATAC-Net's mean of two views: (stage-1 score of the image + stage-2 score
  of its Grad-CAM crop) / 2, see :class:`GradCAMZoomNet`. ``atac.run`` trains both stages with
  the same ``fit`` as every other recipe.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from .config import RunConfig
from .cropping import attention_boxes, crop_and_resize
from .models import ATACNet, Output, build_model


class _FullImageScore(nn.Module):
    """(B, 3, H, W) images in [0, 1] → (B, 1) full-image anomaly scores of ``model`` (no zoom pass).

    pytorch-grad-cam expects a module returning (B, classes); ATACNet returns an ``Output``.
    """

    def __init__(self, model: ATACNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score, _, _ = self.model.score_pass(x)                          # (B,)
        return score[:, None]                                           # (B, 1)


class _ScoreTarget:
    """Grad-CAM target: the one scalar score of one image (its row of the (B, 1) output)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., 0]


def _make_autograd_safe(model: nn.Module) -> None:
    """Replace inference tensors among the parameters and buffers by equal ordinary tensors.

    A module moved (``.to``) inside ``torch.inference_mode`` — e.g. by :func:`atac.evaluate.predict`
    changing its memory format — holds inference tensors, which autograd cannot save for backward
    ("Inference tensors do not track version counter"). Assigning ``.data`` is not enough (the
    tensor keeps its missing version counter): the entries are replaced by clones, with the same
    values and ``requires_grad``.
    """
    with torch.inference_mode(False):
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None and p.is_inference():
                    module._parameters[name] = nn.Parameter(p.clone(), requires_grad=p.requires_grad)
            for name, b in module._buffers.items():
                if b is not None and b.is_inference():
                    module._buffers[name] = b.clone()


def gradcam_batch(model: ATACNet, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps of one batch (see :func:`gradcam_maps`).

    Args:
        model: the (stage-1) network; its parameters' device is used.
        x: float (B, 3, H, W) images in [0, 1] (any memory format; inference tensors allowed).
    Returns:
        float32 (B, H, W) CAMs in [0, 1] on the CPU; all zero where the CAM is empty.
    """
    was_training = model.training
    _make_autograd_safe(model)
    grads = [p.grad for p in model.parameters()]
    maps = None
    try:
        device = next(model.parameters()).device
        # full precision even inside an autocast region (predict with amp): pytorch-grad-cam turns
        # activations and gradients into numpy arrays, which have no bfloat16
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            xg = x.to(device).clone().float().requires_grad_(True)      # a graph even if frozen
            with GradCAM(_FullImageScore(model), [model.backbone[-1]]) as cam:  # hooks released on exit
                # GradCAM puts the model in eval mode (BatchNorm running statistics)
                maps = cam(xg, targets=[_ScoreTarget() for _ in range(len(xg))])  # (B, H, W) numpy
    finally:
        for p, g in zip(model.parameters(), grads):                     # the library's backward wrote .grad
            p.grad = g
        model.train(was_training)
    if maps is None:  # the library's __exit__ swallows an IndexError and returns nothing
        raise RuntimeError("Grad-CAM gave no maps (pytorch_grad_cam swallowed an IndexError)")
    out = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).clamp_(0.0, 1.0)


def gradcam_maps(model: ATACNet, images: torch.Tensor, device: torch.device | str = "cpu",
                 batch_size: int = 32) -> torch.Tensor:
    """Grad-CAM of the full-image anomaly score at the last backbone block (supplement §3 step IV).

    Selvaraju et al. 2017: weights = spatial mean of the score's gradient w.r.t. the activations of
    ``model.backbone[-1]``; CAM = ReLU(weighted sum of the activation channels), bilinearly upsampled
    to (S, S) and min-max normalised per image by pytorch-grad-cam (``GradCAM``).

    Pitfalls handled: the model is evaluated in eval mode and its previous mode (and any ``.grad``
    of its parameters) restored afterwards; gradients are enabled even when called under
    ``torch.no_grad`` or ``torch.inference_mode``; the library's hooks are released (context
    manager) even on error; NaN/inf become 0, so an empty CAM gives "no zoom" downstream.

    Args:
        model: an :class:`~atac.models.ATACNet` (its ``score_pass`` is used; no zoom pass).
        images: ``uint8`` (N, 3, S, S) pre-processed images.
        device: where the model runs (the model is moved there).
        batch_size: images per forward/backward pass.
    Returns:
        float32 (N, S, S) CAMs in [0, 1] on the CPU.
    Raises:
        ValueError: ``images`` is not a ``uint8`` (N, 3, S, S) tensor, or ``batch_size`` < 1.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"gradcam_maps expects uint8 (N, 3, S, S) images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    model.to(device)
    parts = [gradcam_batch(model, images[i:i + batch_size].to(device).float().div_(255))
             for i in range(0, len(images), batch_size)]
    if not parts:
        return torch.zeros((0,) + tuple(images.shape[-2:]), dtype=torch.float32)
    return torch.cat(parts)


def gradcam_boxes(cams: torch.Tensor, threshold: float = 0.5,
                  full_fraction: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop boxes from CAMs: Algorithm 1 (supplement) with the CAM in place of the attention map.

    Args:
        cams: (N, h, w) Grad-CAM maps (e.g. from :func:`gradcam_maps`, h = w = S).
        threshold: w in (0, 1]: pixels with CAM_up >= w * max(CAM) are kept (``crop_threshold``).
        full_fraction: a box covering at least this fraction of the image means "no zoom".
    Returns:
        boxes float (N, 4) ``(x0, y0, x1, y1)`` pixel edges (the full image where there is no zoom)
        and zoom bool (N,); an all-zero CAM gives no zoom.
    Raises:
        ValueError: ``cams`` is not (N, h, w).
    """
    if cams.ndim != 3:
        raise ValueError(f"gradcam_boxes expects (N, h, w) maps, got {tuple(cams.shape)}")
    return attention_boxes(cams, tuple(cams.shape[-2:]), threshold, full_fraction)


def crop_uint8(images: torch.Tensor, boxes: torch.Tensor, zoom: torch.Tensor,
               batch_size: int = 64) -> torch.Tensor:
    """Crop ``uint8`` images to their boxes and resize back (bilinear ``roi_align``), rounded.

    Args:
        images: ``uint8`` (N, 3, S, S); boxes: (N, 4) pixel edges; zoom: bool (N,) — where False
            the image is returned unchanged (exactly).
        batch_size: images cropped at a time (bounds the float32 copy in memory).
    Returns:
        ``uint8`` (N, 3, S, S) on the images' device.
    Raises:
        ValueError: lengths differ or ``images`` is not ``uint8``.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"crop_uint8 expects uint8 images, got {images.dtype}")
    if not len(images) == len(boxes) == len(zoom):
        raise ValueError(f"{len(images)} images, {len(boxes)} boxes, {len(zoom)} zoom flags")
    out = images.clone()
    for i in range(0, len(images), batch_size):
        sl = slice(i, i + batch_size)
        c = crop_and_resize(images[sl].float(), boxes[sl], zoom[sl])
        out[sl] = c.round_().clamp_(0, 255).to(torch.uint8)
    return out


class GradCAMZoomNet(nn.Module):
    """Step IV as one network: stage 1 scores the image, stage 2 scores its Grad-CAM crop.

    Input (B, 3, H, W) images in [0, 1]. Forward: Grad-CAM of stage 1's full-image score
    (:func:`gradcam_batch`, computed with gradients even under ``inference_mode``) → boxes
    (:func:`gradcam_boxes`) → crop, quantised to the ``uint8`` grid as the training crops were →
    stage-2 score. Returns an :class:`~atac.models.Output` with score = (score_full + score_zoom) / 2
    (mirroring ATAC-Net's mean of two views), score_full = stage-1 score, score_zoom = stage-2 score,
    score_map = stage 1's, ``attention`` = the CAM (B, H, W) (so pixel AUROC scores the Grad-CAM
    map), boxes and zoom from the CAM. Its state dict holds both networks (``stage1.*``, ``stage2.*``).
    """

    def __init__(self, stage1: ATACNet, stage2: ATACNet, threshold: float = 0.5,
                 full_fraction: float = 0.95):
        super().__init__()
        self.stage1, self.stage2 = stage1, stage2
        self.crop_threshold, self.crop_full_fraction = threshold, full_fraction
        self.weights_source = stage2.weights_source

    def forward(self, x: torch.Tensor) -> Output:
        cams = gradcam_batch(self.stage1, x).to(x.device)              # (B, H, W)
        boxes, zoom = gradcam_boxes(cams, self.crop_threshold, self.crop_full_fraction)
        crops = crop_and_resize(x, boxes, zoom).mul(255).round_().clamp_(0, 255).div_(255)
        crops = torch.where(zoom[:, None, None, None], crops, x)       # no zoom: exactly the image
        score, smap, _ = self.stage1.score_pass(x)
        score_zoom, _, _ = self.stage2.score_pass(crops.contiguous(memory_format=torch.channels_last))
        return Output((score + score_zoom) / 2, score, score_zoom, smap, cams, boxes, zoom)


def build_gradcam_zoom(cfg: RunConfig) -> GradCAMZoomNet:
    """Two fresh networks for ``cfg`` (``build_model`` each, ``cfg.weights``) in a GradCAMZoomNet."""
    return GradCAMZoomNet(build_model(cfg), build_model(cfg), cfg.crop_threshold, cfg.crop_full_fraction)
