"""Evaluation: a score per test image, image AUROC / AUPRC, and pixel AUROC of the attention map.

Image metrics use scikit-learn (``roc_auc_score``, ``average_precision_score``). Beyond the paper,
where ground-truth masks exist, the attention map (bilinearly upsampled to the input size) is
scored as a pixel-level anomaly map: pixel AUROC over every pixel of every test image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

from .memory import keep_freed_memory
from .models import ATACNet
from .precision import autocast


class SingleClassError(ValueError):
    """AUROC/AUPRC asked of a test set that holds one class only: undefined, never 0 or NaN."""


@dataclass
class Predictions:
    """Model outputs on a set of images (CPU tensors).

    scores, score_full: (N,); score_zoom: (N,) or None; attention: (N, h, w);
    boxes: (N, 4) or None; zoom: bool (N,) or None; heads: name -> (N,) head scores of a
    multi-head model (DRA), else None.
    """

    scores: torch.Tensor
    score_full: torch.Tensor
    score_zoom: torch.Tensor | None
    attention: torch.Tensor
    boxes: torch.Tensor | None
    zoom: torch.Tensor | None
    heads: dict[str, torch.Tensor] | None = None


def predict(model: ATACNet, images: torch.Tensor, device: torch.device | str = "cpu",
            batch_size: int = 32, amp: str = "off") -> Predictions:
    """Score ``uint8`` images (N, 3, S, S) in eval mode, in batches; results (float32) on the CPU.

    ``amp``: :mod:`atac.precision` (``auto`` = bf16 autocast on CUDA, float32 on CPU).

    ``model`` is any network returning an :class:`~atac.models.Output` (ATACNet, GradCAMZoomNet,
    DRANet, whose per-head scores are collected in ``heads``).
    """
    model.eval()
    # outside inference mode: parameters moved inside it would become inference tensors, which a
    # later backward (fine-tuning, Grad-CAM) cannot use
    model.to(memory_format=torch.channels_last)  # as in training (atac.train.MEMORY_FORMAT)
    if torch.device(device).type == "cpu":
        keep_freed_memory()  # atac.memory
    return _predict(model, images, device, batch_size, amp)


@torch.inference_mode()
def _predict(model, images, device, batch_size, amp) -> Predictions:
    parts: dict[str, list] = {k: [] for k in ("score", "score_full", "score_zoom", "attention",
                                              "boxes", "zoom")}
    heads: dict[str, list] = {}
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device, non_blocking=True).float().div_(255)
        with autocast(amp, device):
            out = model(x.contiguous(memory_format=torch.channels_last))
        for k in parts:
            v = getattr(out, k)
            parts[k].append(None if v is None else v.detach().float().cpu() if v.dtype != torch.bool
                            else v.cpu())
        for h, v in (getattr(out, "heads", None) or {}).items():  # DRA's per-head scores
            heads.setdefault(h, []).append(v.detach().float().cpu())

    def cat(k):
        return None if parts[k][0] is None else torch.cat(parts[k])

    return Predictions(cat("score"), cat("score_full"), cat("score_zoom"), cat("attention"),
                       cat("boxes"), cat("zoom"), {h: torch.cat(v) for h, v in heads.items()} or None)


def image_metrics(labels, scores) -> dict[str, float]:
    """Image AUROC and AUPRC.

    Args:
        labels: (N,) 0/1; scores: (N,) higher = more anomalous.
    Raises:
        SingleClassError: the labels hold one class only.
        ValueError: lengths differ or a score is not finite.
    """
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if len(np.unique(y)) < 2:
        only = "normal" if (y == 0).all() else "anomalous"
        raise SingleClassError(f"AUROC is undefined: all {len(y)} test images are {only}")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite (NaN/inf)")
    return {"image_auroc": float(roc_auc_score(y, s)), "image_auprc": float(average_precision_score(y, s))}


def upsample_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) maps → (N, size, size), bilinear."""
    return F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0]


def pixel_auroc(maps: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> float | None:
    """Pixel-level AUROC of anomaly maps against ground-truth masks.

    Args:
        maps: (N, h, w) anomaly (attention) maps; masks: bool (N, 1, S, S) or (N, S, S).
        has_mask, labels: (N,) optional. Anomalous images without a mask are left out (their
            pixels are unknown); normal images count as all-normal pixels.
    Returns:
        The AUROC, or None when no pixel is anomalous (no masks).
    """
    masks = masks.reshape(masks.shape[0], masks.shape[-2], masks.shape[-1])
    keep = torch.ones(len(maps), dtype=torch.bool)
    if has_mask is not None and labels is not None:
        keep = has_mask.bool() | (labels == 0)
    m = masks[keep]
    if m.numel() == 0 or not m.any():
        return None
    up = upsample_maps(maps[keep], masks.shape[-1])
    if not torch.isfinite(up).all():
        return None
    # pixel AUROC over up to millions of pixels: subsample the negatives deterministically to keep
    # memory modest; every positive pixel is kept.
    y = m.flatten().numpy()
    s = up.flatten().numpy()
    if y.size > 4_000_000:
        step = int(np.ceil(y.size / 4_000_000))
        sel = np.zeros(y.size, dtype=bool)
        sel[::step] = True
        sel |= y
        y, s = y[sel], s[sel]
    return float(roc_auc_score(y, s))
