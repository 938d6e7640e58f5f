"""Losses of the ablation ladder: deviation loss (DevNet), binary and weighted cross-entropy.

Deviation loss (Pang, Shen, van den Hengel, KDD 2019; DevNet 2021; DRA 2022), hinge form:
    dev = (s - mean(r)) / std(r),  r ~ N(0, 1) (``ref_size`` draws)
    L   = (1 - y) |dev| + y max(0, k - dev),  k = 5.
The ATAC-Net supplement prints ``y (k - |dev|)`` without the clamp; that form is unbounded below,
so atac follows DevNet's and DRA's published hinge (NOTES.md; the book says so).

DRA (Ding, Pang, Shen, CVPR 2022, §3) trains each of its four heads with this loss on its own
subset of the batch and with its own targets (:func:`dra_head_losses`); that needs to know which
batch slot is a normal, a real anomaly or a pseudo-anomaly (:data:`SLOT_NORMAL`, ...).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .precision import async_to

# What a training batch slot holds (atac.train.BalancedBatches gives one code per slot).
SLOT_NORMAL, SLOT_ANOMALY, SLOT_PSEUDO = 0, 1, 2   # normal, real (seen) anomaly, CutMix pseudo-anomaly
DRA_HEADS = ("seen", "pseudo", "residual", "normality")


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
    scores = scores.float()  # autocast (bf16) outputs: the loss is computed in float32
    if reference is None:
        reference = async_to(torch.randn(ref_size, generator=generator, device="cpu"), scores.device)
    dev = (scores - reference.mean()) / reference.std()
    y = labels.to(scores.dtype)
    return ((1 - y) * dev.abs() + y * F.relu(margin - dev)).mean()


ZOOM_LOSSES = ("mean", "per_view", "full_plus_mean")


def zoom_loss(score: torch.Tensor, score_full: torch.Tensor, score_zoom: torch.Tensor | None,
              labels: torch.Tensor, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              mode: str = "mean") -> torch.Tensor:
    """The training loss of a recipe with a zoomed view (readings of Algorithm 2, lines 10–12).

    Args:
        score: (B,) final scores, (a1 + a2) / 2; score_full: (B,) a1; score_zoom: (B,) a2, or None
            (no zoom pass: ``loss(score, labels)``).
        labels: (B,); loss: ``loss(scores, labels) -> 0-d``, e.g. the deviation loss.
        mode: ``mean`` — loss(a), the literal reading; ``per_view`` — (loss(a1) + loss(a2)) / 2,
            so neither view can meet a margin for the other; ``full_plus_mean`` — (loss(a1) +
            loss(a)) / 2, the full image held to the margin on its own as in step III.
    Returns:
        0-d tensor. Raises ``ValueError`` for an unknown ``mode``.
    """
    if mode not in ZOOM_LOSSES:
        raise ValueError(f"config field 'zoom_loss': must be one of {', '.join(ZOOM_LOSSES)} (got {mode!r})")
    if score_zoom is None or mode == "mean":
        return loss(score.float(), labels)
    full = loss(score_full.float(), labels)
    other = score_zoom if mode == "per_view" else score
    return (full + loss(other.float(), labels)) / 2


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (B,) against 0/1 labels (B,) (ladder step I)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def weighted_ce_loss(logits: torch.Tensor, labels: torch.Tensor,
                     weights: tuple[float, float] = (0.5, 20.0)) -> torch.Tensor:
    """Class-weighted cross-entropy on logits (ladder step II: genuine 0.5, anomaly 20).

    Normalised like ``torch.nn.functional.cross_entropy(weight=...)``: sum(w_i l_i) / sum(w_i).
    """
    logits = logits.float()
    y = labels.to(logits.dtype)
    # scalar weights: no small host-to-device copies inside the training step
    w = torch.where(labels.bool(), float(weights[1]), float(weights[0])).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (w * per).sum() / w.sum()


def dra_head_losses(heads: dict[str, torch.Tensor], slots: torch.Tensor,
                    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """DRA's four head losses (Ding, Pang, Shen, CVPR 2022, §3.2-3.4; NOTES.md "DRA").

    Each head is trained with ``loss`` (the deviation loss) on the slots DRA shows it, with its
    own targets (1 = the class the head should score high):

    ============  ==============================  =====================================
    head          slots used                      target 1 for
    ============  ==============================  =====================================
    seen          normals + real anomalies        real anomalies (pseudo-anomalies left out)
    pseudo        normals + pseudo-anomalies      pseudo-anomalies (real anomalies left out)
    residual      all                             any anomaly (real or pseudo)
    normality     all                             normals (so normals score high)
    ============  ==============================  =====================================

    Args:
        heads: name (:data:`DRA_HEADS`) -> (B,) scores of the batch.
        slots: (B,) integer codes :data:`SLOT_NORMAL` / :data:`SLOT_ANOMALY` / :data:`SLOT_PSEUDO`.
        loss: ``loss(scores (n,), labels (n,)) -> 0-d tensor``; called once per head, in the order
            of :data:`DRA_HEADS` (a loss that draws a random reference draws four times per step).
    Returns:
        name -> 0-d loss; a head whose subset is empty gets 0 (and ``loss`` is not called for it).
    Raises:
        ValueError: a head is missing, or shapes differ.
    """
    missing = [h for h in DRA_HEADS if h not in heads]
    if missing:
        raise ValueError(f"dra_head_losses: missing head(s) {', '.join(missing)}")
    if any(heads[h].shape != slots.shape for h in DRA_HEADS):
        raise ValueError(f"dra_head_losses: head scores and slots (shape {tuple(slots.shape)}) differ in shape")
    normal, real, pseudo = slots == SLOT_NORMAL, slots == SLOT_ANOMALY, slots == SLOT_PSEUDO
    every = torch.ones_like(normal)
    plan = {"seen": (~pseudo, real), "pseudo": (~real, pseudo),
            "residual": (every, ~normal), "normality": (every, normal)}
    out = {}
    for name in DRA_HEADS:
        keep, target = plan[name]
        s = heads[name][keep]
        out[name] = loss(s, target[keep].to(s.dtype)) if s.numel() else heads[name].sum() * 0.0
    return out
