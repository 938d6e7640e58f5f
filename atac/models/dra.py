"""DRA: one backbone, four heads of disentangled (ab)normality, on atac's training road.

Reference: Ding, Pang, Shen, "Catching Both Gray and Black Swans: Open-set Supervised Anomaly
Detection", CVPR 2022 (arXiv 2203.14506), §3 (the four heads, the score) and §4 (implementation
details); NOTES.md (the lineage's hyper-parameters). No DRA code is copied; where the paper (as
NOTES.md and we read it) is silent, the choice is a config field (``dra_*`` in
:class:`atac.config.RunConfig`) and is said below.

The network, for one image batch x (B, 3, S, S) in [0, 1] and a reference set r (R, 3, S, S) of
normal images:

1. Pyramid (``dra_scales`` = n, DRA: 2): scale s sees the images resized to S / 2^s
   (``dra_pyramid_resize``, default bilinear — at half size with even S that is 2×2 averaging; DRA
   does not say). Every scale goes through the same backbone φ: F_s = φ(x_s) (B, C, h_s, w_s).
2. Heads, on every scale, all sharing φ:
   - seen abnormality: 1×1 conv → (B, 1, h, w) map → top-k |map| (DevNet scoring, ``topk_ratio``);
   - pseudo abnormality: the same form, own weights;
   - latent residual (composite) abnormality: F_s − mean over the R reference images of φ(r_s),
     then (``dra_residual_conv``, default on) 3×3 conv + BatchNorm + ReLU, then a 1×1 conv map,
     top-k |map|;
   - holistic normality: global average pool of F_s → Linear(C, ``dra_holistic_hidden``) → ReLU →
     Linear(·, 1) → |·| (non-negative like the top-k heads).
3. Scales combine per head by the mean of that head's n scale scores (one score per head).
4. Anomaly score = seen + pseudo + residual − normality (DRA §3: abnormality scores add up, the
   normality score is subtracted).

Training (:meth:`DRANet.training_loss`, called by :func:`atac.train.fit`): the balanced batch of
``BalancedBatches`` (slots: normal / real anomaly / CutMix pseudo-anomaly) plus ``dra_ref_size``
reference normals drawn per batch (DRA: a few normals per batch; atac draws them with replacement
from the batch generator, without pseudo-anomalies). Reference and batch go through φ in one pass
(BatchNorm batch statistics over both). Each head gets the deviation loss on its own subset and
targets (:func:`atac.losses.dra_head_losses`); the step's loss is the sum of the four.

Where DRA's paper (or NOTES.md) is silent or leaves it open, atac chooses (config field in brackets):
- how the image is downsized for the pyramid [``dra_pyramid_resize``: bilinear];
- how the scales combine: the mean of a head's scale scores (then the four heads combine as above);
- the residual head's 3×3 conv + BN + ReLU before its scoring layer [``dra_residual_conv``: on];
- the normality head's hidden width [``dra_holistic_hidden``: 256] and its |·| output;
- the step's loss is the plain sum of the four head losses (no weights);
- the training reference normals are drawn with replacement from the batch generator, after the
  batch (so a DRA batch is the batch every recipe gets, plus the references), and share the
  backbone pass (BatchNorm statistics) with the batch;
- the test reference set is fixed (below) [size ``dra_ref_size``: 5, DRA's N_r];
- ``score_map`` / ``attention`` (scored for pixel AUROC, beyond DRA) is the sum of the three
  abnormality heads' |maps| at full size.
The ``dra`` preset (:data:`atac.config.PRESETS`) holds DRA's own settings: ResNet-18 at 448 px,
two scales, ImageNet normalisation, no CLAHE, 30 × 20 steps of batch 48.

Test: the reference set is one fixed draw of ``dra_ref_size`` training normals, without
replacement, from the generator seeded with ``SeedSequence([seed, 5])`` (the run's ``seed``; atac's
own choice, DRA re-draws references while testing). It is set by :meth:`DRANet.set_reference`
(``atac.run`` does it before training) and stored as a ``uint8`` buffer, so ``model.pt`` scores
exactly like the trained run (``atac evaluate``). Its features are computed in eval mode with the
batch (running BatchNorm statistics, so the batch does not change them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import NORMALIZATIONS, RunConfig
from ..losses import DRA_HEADS, dra_head_losses
from .atacnet import Normalize, Output, he_init, topk_score
from .backbones import build_backbone

REFERENCE_STREAM = 5  # SeedSequence([seed, 5]): the test reference draw (stage2_seed uses 4)


@dataclass
class DRAOutput(Output):
    """:class:`~atac.models.Output` plus the four head scores.

    score = score_full = seen + pseudo + residual − normality (B,); score_zoom, boxes, zoom: None;
    score_map (B, 1, h, w): |seen| + |pseudo| + |residual| maps of the first (full-size) scale;
    attention (B, h, w): the same map (scored for pixel AUROC); heads: name -> (B,) head scores
    (each the mean over the pyramid scales).
    """

    heads: dict[str, torch.Tensor] | None = None


def reference_indices(n_normals: int, size: int, seed: int) -> torch.Tensor:
    """Indices of the fixed test reference set: ``size`` of ``n_normals`` training normals.

    A draw without replacement from ``torch.Generator`` seeded with ``SeedSequence([seed, 5])``,
    sorted. Returns long (size,).

    Raises:
        ValueError: fewer training normals than ``size`` (names ``dra_ref_size``).
    """
    if n_normals < size:
        raise ValueError(f"config field 'dra_ref_size': {size} reference normals asked for, but the "
                         f"training set has {n_normals} normal images")
    state = int(np.random.SeedSequence([seed, REFERENCE_STREAM]).generate_state(1, dtype=np.uint32)[0])
    gen = torch.Generator().manual_seed(state)
    return torch.randperm(n_normals, generator=gen)[:size].sort().values


class DRANet(nn.Module):
    """DRA's network (see the module docstring for the design and its sources).

    Input (B, 3, S, S) images in [0, 1] (normalised inside, ``cfg.normalization``). ``forward(x,
    ref=None)`` returns a :class:`DRAOutput`; ``ref`` (R, 3, S, S) in [0, 1] is the reference set
    (training passes the batch's); without it the stored test reference is used.
    ``batch_reference_size`` tells ``fit`` how many reference normals to draw per batch.
    """

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.topk_ratio = cfg.topk_ratio
        self.scales = cfg.dra_scales
        self.resize = cfg.dra_pyramid_resize
        self.image_size = cfg.image_size
        self.seed = cfg.seed
        self.batch_reference_size = cfg.dra_ref_size
        mean, std = NORMALIZATIONS[cfg.normalization]
        self.normalize = Normalize(mean, std)
        bb = build_backbone(cfg.backbone, cfg.weights)
        self.weights_source = bb.weights_source
        self.backbone = bb.features
        C = bb.channels
        self.seen = nn.Conv2d(C, 1, kernel_size=1)
        self.pseudo = nn.Conv2d(C, 1, kernel_size=1)
        block = ([nn.Conv2d(C, C, kernel_size=3, padding=1), nn.BatchNorm2d(C), nn.ReLU()]
                 if cfg.dra_residual_conv else [])
        self.residual = nn.Sequential(*block, nn.Conv2d(C, 1, kernel_size=1))
        self.normality = nn.Sequential(nn.Linear(C, cfg.dra_holistic_hidden), nn.ReLU(),
                                       nn.Linear(cfg.dra_holistic_hidden, 1))
        for new in (self.seen, self.pseudo, self.residual, self.normality):
            he_init(new)
        S = cfg.image_size
        self.register_buffer("reference", torch.zeros(cfg.dra_ref_size, 3, S, S, dtype=torch.uint8))
        self.register_buffer("has_reference", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------
    def set_reference(self, train_normal: torch.Tensor) -> torch.Tensor:
        """Store the fixed test reference set drawn from ``train_normal`` (uint8 (N, 3, S, S)).

        See :func:`reference_indices` (``dra_ref_size``, ``seed``). Returns the indices used.

        Raises:
            ValueError: not uint8 (N, 3, S, S) of this model's size, or too few normals.
        """
        S = self.image_size
        if train_normal.dtype != torch.uint8 or tuple(train_normal.shape[1:]) != (3, S, S):
            raise ValueError(f"set_reference expects uint8 (N, 3, {S}, {S}) training normals, got "
                             f"{train_normal.dtype} {tuple(train_normal.shape)}")
        idx = reference_indices(len(train_normal), len(self.reference), self.seed)
        with torch.no_grad():
            self.reference.copy_(train_normal[idx.to(train_normal.device)].to(self.reference.device))
            self.has_reference.fill_(True)
        return idx

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised images at the n scales: [(B, 3, S, S), (B, 3, S/2, S/2), ...]."""
        x = self.normalize(x)
        out = [x]
        for s in range(1, self.scales):
            size = self.image_size // 2 ** s
            kw = {"align_corners": False} if self.resize == "bilinear" else {}
            out.append(F.interpolate(x, size=(size, size), mode=self.resize, **kw))
        return out

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> DRAOutput:
        if ref is None:
            if not bool(self.has_reference):
                raise RuntimeError("DRANet has no reference set: call set_reference(train_normal) "
                                   "before scoring (atac.run does it), or pass ref=")
            ref = self.reference.float().div(255)
        B, R = len(x), len(ref)
        both = torch.cat([ref.to(x.dtype), x]).contiguous(memory_format=torch.channels_last)
        per_scale = {h: [] for h in DRA_HEADS}
        first_map = None
        for xs in self._pyramid(both):
            feats = self.backbone(xs)                                    # (R + B, C, h, w)
            # heads in float32 even under autocast (atac.precision): full-precision scores
            with torch.autocast(feats.device.type, enabled=False):
                feats = feats.float()
                f_ref, f = feats[:R], feats[R:]                          # (R, C, h, w), (B, C, h, w)
                m_seen = self.seen(f)                                    # (B, 1, h, w)
                m_pseudo = self.pseudo(f)
                m_res = self.residual(f - f_ref.mean(dim=0, keepdim=True))  # (B, 1, h, w)
                pooled = f.mean(dim=(2, 3))                              # (B, C)
                per_scale["seen"].append(topk_score(m_seen, self.topk_ratio))
                per_scale["pseudo"].append(topk_score(m_pseudo, self.topk_ratio))
                per_scale["residual"].append(topk_score(m_res, self.topk_ratio))
                per_scale["normality"].append(self.normality(pooled)[:, 0].abs())  # (B,)
            if first_map is None:
                first_map = m_seen.abs() + m_pseudo.abs() + m_res.abs()   # (B, 1, h, w)
        heads = {h: torch.stack(v).mean(dim=0) for h, v in per_scale.items()}  # (B,) each
        score = heads["seen"] + heads["pseudo"] + heads["residual"] - heads["normality"]
        assert score.shape == (B,)
        return DRAOutput(score, score, None, first_map, first_map[:, 0], heads=heads)

    def training_loss(self, batch, loss) -> tuple[torch.Tensor, DRAOutput]:
        """The step's loss: sum of :func:`atac.losses.dra_head_losses` over the four heads.

        Args:
            batch: an :class:`atac.train.Batch` (``x`` (B, 3, S, S), ``slots`` (B,), ``ref``
                (R, 3, S, S) reference normals of this batch).
            loss: the recipe's ``loss(scores, labels)`` (the deviation loss).
        Returns:
            (the loss, 0-d; the forward pass's :class:`DRAOutput`).
        Raises:
            ValueError: the batch carries no reference images.
        """
        if batch.ref is None:
            raise ValueError("a DRA training batch needs reference normals (BalancedBatches n_ref > 0)")
        out = self(batch.x.contiguous(memory_format=torch.channels_last), ref=batch.ref)
        parts = dra_head_losses(out.heads, batch.slots, loss)
        return parts["seen"] + parts["pseudo"] + parts["residual"] + parts["normality"], out
