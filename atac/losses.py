"""Losses of the ablation ladder: deviation loss (DevNet), binary and weighted cross-entropy.

Deviation loss (Pang, Shen, van den Hengel, KDD 2019; DevNet 2021; DRA 2022), hinge form:
    dev = (s - mean(r)) / std(r),  r ~ N(0, 1) (``ref_size`` draws)
    L   = (1 - y) |dev| + y max(0, k - dev),  k = 5.
The ATAC-Net supplement prints ``y (k - |dev|)`` without the clamp; that form is unbounded below,
so atac follows DevNet's and DRA's published hinge (NOTES.md; the book says so).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def deviation_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 5.0,
                   ref_size: int = 5000, generator: torch.Generator | None = None,
                   reference: torch.Tensor | None = None) -> torch.Tensor:
    """Mean deviation loss over a batch.

    Args:
        scores: (B,) anomaly scores.
        labels: (B,) 0 normal / 1 anomalous (any numeric dtype).
        margin: k, the confidence margin in standard deviations.
        ref_size: number of N(0, 1) reference draws when ``reference`` is not given.
        reference: optional (R,) reference scores (for exact tests).
    Returns:
        0-d tensor.
    """
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")
    if reference is None:
        reference = torch.randn(ref_size, generator=generator, device="cpu").to(scores.device)
    dev = (scores - reference.mean()) / reference.std()
    y = labels.to(scores.dtype)
    return ((1 - y) * dev.abs() + y * F.relu(margin - dev)).mean()


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (B,) against 0/1 labels (B,) (ladder step I)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def weighted_ce_loss(logits: torch.Tensor, labels: torch.Tensor,
                     weights: tuple[float, float] = (0.5, 20.0)) -> torch.Tensor:
    """Class-weighted cross-entropy on logits (ladder step II: genuine 0.5, anomaly 20).

    Normalised like ``torch.nn.functional.cross_entropy(weight=...)``: sum(w_i l_i) / sum(w_i).
    """
    y = labels.to(logits.dtype)
    w = torch.where(labels.bool(), torch.tensor(weights[1], device=logits.device),
                    torch.tensor(weights[0], device=logits.device)).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (w * per).sum() / w.sum()
