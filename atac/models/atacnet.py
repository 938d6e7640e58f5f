"""ATAC-Net and its ladder relatives: backbone → (self-attention) → anomaly mapping → top-k score.

References:
- DevNet (Pang, Ding, Shen, van den Hengel, arXiv 2108.00462): anomaly mapping layer (1×1 conv to
  a one-channel score map) and top-k multiple-instance scoring (mean of the top 10% |scores|).
- SAGAN (Zhang, Goodfellow, Metaxas, Odena, ICML 2019): the self-attention convolution block σ
  ("[8]" in the ATAC-Net supplement), output γ·attention + input, γ initialised at 0.
- ATAC-Net supplement, Algorithm 1 (zoom pass, :mod:`atac.cropping`) and Algorithm 2 (training):
  the attention map is the channel-wise mean of σ's output; the same network scores the crop; the
  final score is the mean of the two scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import NORMALIZATIONS, RunConfig
from ..cropping import attention_boxes, crop_and_resize
from ..losses import zoom_loss
from ..methods import Recipe, get_method
from .backbones import build_backbone


def he_init(module: nn.Module) -> None:
    """He (Kaiming) initialisation for the new layers (Algorithm 2, line 1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Normalize(nn.Module):
    """Channel-wise normalisation of [0, 1] images (supplement §2): (x - mean) / std."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> same
        return (x - self.mean) / self.std


class SelfAttention(nn.Module):
    """SAGAN self-attention block on a feature map: y = γ · softmax(QᵀK) V + x.

    Input and output (B, C, h, w); Q, K project to C // reduction channels.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)                   # (B, N, C')
        k = self.key(x).flatten(2)                                     # (B, C', N)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)                  # (B, N, N)
        v = self.value(x).flatten(2)                                   # (B, C, N)
        out = torch.bmm(v, attn.transpose(1, 2)).view(B, C, h, w)      # (B, C, h, w)
        return x + self.gamma * out

    def project(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                with_share: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """A 1×1 linear projection of the block's output, ``weight @ forward(x) + bias``, computed
        without forming the C-channel output.

        The output y = x + γ·V(x)Aᵀ is linear in V's output, so W·y = W·x + γ·((W·V)(x))Aᵀ: the value
        projection is folded into W (K×C instead of C×C per position). ATAC-Net only ever reads σ's
        output through two such maps (the anomaly mapping layer and the channel mean), so this is the
        same function — and the same gradients — at the cost of a small block, which matters for
        narrow-and-cheap backbones (MobileNetV2: C = 1280, where V alone costs a quarter of the
        backbone). Equality with :meth:`forward` is tested.

        Args:
            x: (B, C, h, w) features; weight: (K, C); bias: (K,) or None.
            with_share: also return σ's share of each map, mean |γ·(W·V)(x)Aᵀ| / (that + mean
                |W·x + b|) over the batch, (K,), without gradient (a zoom diagnostic).
        Returns:
            (B, K, h, w), and the (K,) shares with ``with_share``.
        """
        B, C, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)                   # (B, N, C')
        k = self.key(x).flatten(2)                                     # (B, C', N)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)                  # (B, N, N)
        wv = weight @ self.value.weight.flatten(1)                     # (K, C)
        bv = weight @ self.value.bias if self.value.bias is not None else None  # (K,)
        v = F.conv2d(x, wv[:, :, None, None], bv).flatten(2)           # (B, K, N)
        out = torch.bmm(v, attn.transpose(1, 2)).view(B, -1, h, w)     # (B, K, h, w)
        residual, attended = F.conv2d(x, weight[:, :, None, None], bias), self.gamma * out
        if with_share:
            with torch.no_grad():  # σ's share of each of the K maps, over the batch: (K,)
                a = attended.abs().mean(dim=(0, 2, 3))
                share = a / (a + residual.abs().mean(dim=(0, 2, 3))).clamp(min=1e-12)
            return residual + attended, share
        return residual + attended


def topk_score(score_map: torch.Tensor, ratio: float = 0.1, absolute: bool = True) -> torch.Tensor:
    """Top-k multiple-instance scoring (DevNet): mean of the k largest (|)scores(|) of each map.

    Args:
        score_map: (B, 1, h, w) or (B, h, w).
        ratio: k = max(1, int(ratio * h * w)).
        absolute: rank |scores| (DevNet) rather than signed scores.
    Returns:
        (B,) image scores — a batch of one gives shape (1,), never a 0-d tensor.
    """
    flat = score_map.flatten(1)                                        # (B, h*w)
    if absolute:
        flat = flat.abs()
    k = max(1, int(ratio * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


@dataclass
class Output:
    """What one forward pass gives (tensors on the model's device).

    score: (B,) final image score (for classifier heads, a logit); score_full / score_zoom: (B,)
    scores of the image and of its zoomed crop (score_zoom is None without zoom); score_map:
    (B, 1, h, w) of the full image; attention: (B, h, w) channel-wise mean of σ's output (of the
    backbone features when there is no σ); boxes: (B, 4) crop boxes ``(x0, y0, x1, y1)`` in
    pixels, or None; zoom: bool (B,) or None; sigma_share: (2,) σ's share of the score map and
    of the attention (crop) map over the batch's full-image pass (:meth:`SelfAttention.project`),
    or None without σ.
    """

    score: torch.Tensor
    score_full: torch.Tensor
    score_zoom: torch.Tensor | None
    score_map: torch.Tensor
    attention: torch.Tensor
    boxes: torch.Tensor | None = None
    zoom: torch.Tensor | None = None
    sigma_share: torch.Tensor | None = None


class ATACNet(nn.Module):
    """One network for every recipe of :mod:`atac.methods`.

    Input: (B, 3, H, W) images in [0, 1] (normalised inside). ``recipe.attention`` adds σ,
    ``recipe.zoom`` adds the second pass on the attention crop (Algorithm 1),
    ``recipe.head == "classifier"`` adds a linear classification head on the pooled map.
    ``cfg.batchnorm == "frozen"`` keeps the backbone's BatchNorm layers in eval mode (running
    statistics, never updated) while the rest trains.

    Where the crop pass is a function of each image alone — in eval mode, or in training with
    frozen BatchNorm — it runs on the zoomed images only, and an image without zoom reuses its
    first pass's score (the crop would be the image itself); with train-mode BatchNorm every image
    goes through the crop pass, whose batch statistics depend on the whole crop batch.
    """

    # reference normals a training batch needs (DRA's network asks for some; this one for none)
    batch_reference_size = 0

    def __init__(self, cfg: RunConfig, recipe: Recipe | None = None):
        super().__init__()
        self.recipe = recipe or get_method(cfg.method)
        self.zoom_loss_mode = cfg.zoom_loss
        self.topk_ratio = cfg.topk_ratio
        self.crop_threshold = cfg.crop_threshold
        self.crop_full_fraction = cfg.crop_full_fraction
        self.bn_frozen = cfg.batchnorm == "frozen"
        mean, std = NORMALIZATIONS[cfg.normalization]
        self.normalize = Normalize(mean, std)
        bb = build_backbone(cfg.backbone, cfg.weights)
        self.weights_source = bb.weights_source
        self.backbone = bb.features
        self.attention = SelfAttention(bb.channels, cfg.attn_reduction) if self.recipe.attention else None
        self.mapping = nn.Conv2d(bb.channels, 1, kernel_size=1)       # anomaly mapping layer τ
        self.classifier = nn.Linear(1, 1) if self.recipe.head == "classifier" else None
        for new in (self.attention, self.mapping, self.classifier):
            if new is not None:
                he_init(new)
        if self.classifier is not None:
            nn.init.ones_(self.classifier.weight)

    def train(self, mode: bool = True) -> "ATACNet":
        super().train(mode)
        if self.bn_frozen:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def score_pass(self, x: torch.Tensor, with_share: bool = False):
        """One pass: (score (B,), score map (B, 1, h, w), attention (B, h, w)); with ``with_share``
        also σ's (2,) share of the score and attention maps (None without σ)."""
        share = None
        feats = self.backbone(self.normalize(x))                        # (B, C, h, w)
        # the small layers after the backbone run in float32 even under autocast (atac.precision):
        # scores, maps and crop boxes keep full precision (bf16 would tie scores that AUROC ranks)
        with torch.autocast(feats.device.type, enabled=False):
            feats = feats.float()
            if self.attention is not None:
                # σ's output is read only through τ and the channel mean: both at once, folded
                # (SelfAttention.project; the same numbers as τ(σ(φ)) and mean_c σ(φ))
                C = feats.shape[1]
                weight = torch.cat([self.mapping.weight.flatten(1),
                                    torch.full((1, C), 1.0 / C, device=feats.device)])  # (2, C)
                bias = torch.cat([self.mapping.bias, torch.zeros(1, device=feats.device)])
                both = self.attention.project(feats, weight, bias, with_share)  # (B, 2, h, w)
                if with_share:
                    both, share = both
                smap, attn = both[:, :1], both[:, 1]                    # (B, 1, h, w), (B, h, w)
            else:
                attn = feats.mean(dim=1)                                # (B, h, w)
                smap = self.mapping(feats)                              # (B, 1, h, w)
            if self.classifier is None:
                score = topk_score(smap, self.topk_ratio)
            else:
                pooled = topk_score(smap, self.topk_ratio, absolute=False)
                score = self.classifier(pooled[:, None])[:, 0]
        if with_share:
            return score, smap, attn, share
        return score, smap, attn

    def forward(self, x: torch.Tensor) -> Output:
        first = self.score_pass(x, with_share=self.training)
        score, smap, attn = first[:3]
        share = first[3] if self.training else None
        if not self.recipe.zoom:
            return Output(score, score, None, smap, attn, sigma_share=share)
        boxes, zoom = attention_boxes(attn.detach(), x.shape[-2:], self.crop_threshold,
                                      self.crop_full_fraction)
        if self.training and not self.bn_frozen:  # batch statistics of the whole crop batch
            crops = crop_and_resize(x, boxes, zoom).contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)
            score_zoom = self.score_pass(crops)[0]
        else:  # each image's crop pass depends on it alone: score the zoomed ones only
            score_zoom = self.zoomed_scores(x, score, boxes, zoom)
        return Output((score + score_zoom) / 2, score, score_zoom, smap, attn, boxes, zoom, share)

    def training_loss(self, batch, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                      ) -> tuple[torch.Tensor, Output]:
        """One training step's loss, as :func:`atac.train.fit` asks every network for it.

        Args:
            batch: an :class:`atac.train.Batch` (``x`` (B, 3, S, S) in [0, 1], ``y`` (B,) labels).
            loss: the recipe's ``loss(scores (B,), labels (B,)) -> 0-d tensor``.
        Returns:
            (the loss, 0-d: :func:`atac.losses.zoom_loss` of the forward pass in ``cfg.zoom_loss``'s
            mode — ``loss(score, y)`` without zoom — and that pass's :class:`Output`).
        """
        out = self(batch.x.contiguous(memory_format=torch.channels_last))
        return zoom_loss(out.score, out.score_full, out.score_zoom, batch.y, loss, self.zoom_loss_mode), out

    def zoomed_scores(self, x: torch.Tensor, score: torch.Tensor, boxes: torch.Tensor,
                      zoom: torch.Tensor) -> torch.Tensor:
        """The crop pass's scores (B,): ``score`` where there is no zoom, and the score of the crop
        where there is, the zoomed images gathered into one smaller batch (one host-device
        synchronisation on CUDA, for their count).

        Args:
            x: (B, 3, H, W) images; score: (B,) their first-pass scores; boxes: (B, 4); zoom: bool (B,).
        """
        idx = zoom.nonzero().flatten()                                  # (Z,)
        if len(idx) == 0:
            return score
        crops = crop_and_resize(x[idx], boxes[idx]).contiguous(memory_format=torch.channels_last)  # (Z, 3, H, W)
        return score.index_put((idx,), self.score_pass(crops)[0].to(score.dtype))


def build_model(cfg: RunConfig) -> ATACNet:
    """The network for ``cfg.method`` on ``cfg.backbone`` with ``cfg.weights`` (see ATACNet)."""
    return ATACNet(cfg)
