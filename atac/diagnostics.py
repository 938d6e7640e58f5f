"""Zoom diagnostics: what the zoomed view does in training and at test time (beyond the paper).

ATAC-Net's claim is that the attention crop helps. These measurements say whether it can: how
often each kind of training slot is zoomed, whether the full-image score meets the deviation
loss's margin on its own, how much of the attention map comes from the self-attention block σ,
whether the crop boxes hold the defect, whether a crop alone makes a normal image look anomalous,
and whether BatchNorm's running statistics fit the full images. None of it trains anything; every
zoom run records it (``train_telemetry`` and ``zoom_diagnostics`` in ``metrics.json``).

The margin is the deviation loss's k (``dev_margin``) read against its reference N(0, 1), so "meets
the margin" is ``score >= k`` (the 5000-draw reference's own mean and spread differ from 0 and 1 by
about 0.01).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from .cropping import box_coverage, crop_and_resize
from .evaluate import SingleClassError, image_metrics, predict
from .losses import SLOT_ANOMALY, SLOT_NORMAL, SLOT_PSEUDO
from .models import ATACNet

SLOT_NAMES = {SLOT_NORMAL: "normal", SLOT_PSEUDO: "pseudo", SLOT_ANOMALY: "anomalous"}


def model_zooms(model: nn.Module) -> bool:
    """True for a network whose forward pass scores a zoomed view (ATAC-Net's recipes)."""
    return isinstance(model, ATACNet) and model.recipe.zoom


def _r(v) -> float | None:
    """A number for the record (6 significant digits), None for None or a non-finite value."""
    if v is None or not math.isfinite(float(v)):
        return None
    return float(f"{float(v):.6g}")


class ZoomTelemetry:
    """Per-epoch statistics of a zoom recipe's training batches, by slot (normal, pseudo-anomaly,
    real anomaly).

    :meth:`update` adds one step (on the device, no host-device synchronisation);
    :meth:`end_epoch` reads the sums once and appends one dict to :attr:`history`:
    ``zoom_rate_<slot>``, ``score_full_<slot>`` and ``score_crop_<slot>`` (mean a1 and a2),
    ``margin_met_full_anomalous`` / ``margin_met_full_pseudo`` (share of those slots whose
    full-image score alone is >= k), ``margin_met_crop_zoomed`` (share of zoomed anomaly slots whose
    crop score alone is >= k), ``gamma`` (σ's gate) and ``sigma_share_score_map`` /
    ``sigma_share_crop_map`` (σ's mean share of each map, :meth:`atac.models.SelfAttention.project`).
    A value is None where its slot never occurred in the epoch.
    """

    def __init__(self, margin: float):
        self.margin = margin
        self.history: list[dict] = []
        self._sums: torch.Tensor | None = None     # (3 slots, 6): n, zoomed, a1, a2, a1 >= k, zoomed & a2 >= k
        self._share: torch.Tensor | None = None    # (2,) summed over steps
        self._steps = 0

    @torch.no_grad()
    def update(self, out, slots: torch.Tensor) -> None:
        """Add one training step: ``out`` an :class:`atac.models.Output` with a zoom pass; ``slots`` (B,)."""
        # float64 and no autocast: exact counts and sums under a bf16 training step too
        with torch.autocast(out.score_full.device.type, enabled=False):
            full, crop = out.score_full.detach().double(), out.score_zoom.detach().double()
            zoom = out.zoom.double()
            cols = torch.stack([torch.ones_like(full), zoom, full, crop, (full >= self.margin).double(),
                                zoom * (crop >= self.margin).double()], dim=1)      # (B, 6)
            onehot = torch.stack([slots == s for s in SLOT_NAMES], dim=0).double()  # (3, B)
            sums = (onehot[:, :, None] * cols[None]).sum(dim=1)                    # (3, 6)
        self._sums = sums if self._sums is None else self._sums + sums
        if out.sigma_share is not None:
            share = out.sigma_share.detach().double()
            self._share = share if self._share is None else self._share + share
        self._steps += 1

    def end_epoch(self, model: nn.Module, epoch: int | None = None) -> dict:
        """Close epoch ``epoch`` (1-based; default: the next after :attr:`history`'s): append and
        return its dict (see the class), reset the sums."""
        entry: dict = {"epoch": epoch if epoch is not None else len(self.history) + 1}
        sums = self._sums.cpu().double() if self._sums is not None else torch.zeros(3, 6, dtype=torch.float64)
        for row, name in zip(sums, SLOT_NAMES.values()):
            n = float(row[0])
            entry[f"zoom_rate_{name}"] = _r(row[1] / n) if n else None
            entry[f"score_full_{name}"] = _r(row[2] / n) if n else None
            entry[f"score_crop_{name}"] = _r(row[3] / n) if n else None
        by = dict(zip(SLOT_NAMES.values(), sums))
        for name in ("anomalous", "pseudo"):
            n = float(by[name][0])
            entry[f"margin_met_full_{name}"] = _r(by[name][4] / n) if n else None
        zoomed = float(by["anomalous"][1] + by["pseudo"][1])
        entry["margin_met_crop_zoomed"] = _r((by["anomalous"][5] + by["pseudo"][5]) / zoomed) if zoomed else None
        att = getattr(model, "attention", None)
        entry["gamma"] = _r(float(att.gamma.detach().cpu())) if att is not None else None
        share = self._share.cpu() / self._steps if self._share is not None and self._steps else None
        entry["sigma_share_score_map"] = _r(float(share[0])) if share is not None else None
        entry["sigma_share_crop_map"] = _r(float(share[1])) if share is not None else None
        self.history.append(entry)
        self._sums, self._share, self._steps = None, None, 0
        return entry


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    try:
        return image_metrics(labels, scores)["image_auroc"]
    except SingleClassError:
        return None


@torch.inference_mode()
def _score_crops(model: ATACNet, images: torch.Tensor, boxes: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    """Scores (N,) of ``uint8`` images (N, 3, S, S) cropped to ``boxes`` (N, 4) and resized back."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float().div_(255)
        crops = crop_and_resize(x, boxes[i:i + batch_size].to(device))
        out.append(model.score_pass(crops.contiguous(memory_format=torch.channels_last))[0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def forced_zoom_probe(model: ATACNet, data, preds, seed: int, device, batch_size: int = 32) -> dict | None:
    """Do crops alone look anomalous? Each normal test image is cropped with a box whose size is drawn
    from the zoomed anomalies' boxes (at a uniformly random place; seeded) and scored.

    Returns:
        None when no test anomaly was zoomed; else ``n``, ``score_crop_normal`` (mean crop score of
        the normals), ``score_full_normal`` (their mean full-image score),
        ``auroc_crop_vs_full`` (AUROC of the normals' crop scores, as positives, against their
        full-image scores: 0.5 = cropping changes nothing, 1 = every crop scores higher), and
        ``image_auroc_if_normals_zoomed`` (the test AUROC had every normal been zoomed so:
        normals' final score (a1 + crop) / 2, anomalies' as recorded).
    """
    labels = data.test_labels.bool()
    zoomed_anom = labels & preds.zoom
    if not bool(zoomed_anom.any()) or not bool((~labels).any()):
        return None
    b = preds.boxes[zoomed_anom]
    sizes = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1)             # (Z, 2) w, h
    normals = torch.nonzero(~labels).flatten()
    S = data.test_images.shape[-1]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    pick = sizes[torch.as_tensor(rng.integers(0, len(sizes), len(normals)))]
    x0 = torch.as_tensor(rng.random(len(normals))) * (S - pick[:, 0])
    y0 = torch.as_tensor(rng.random(len(normals))) * (S - pick[:, 1])
    boxes = torch.stack([x0, y0, x0 + pick[:, 0], y0 + pick[:, 1]], dim=1).float().floor()
    crop = _score_crops(model, data.test_images[normals], boxes, device, batch_size)
    full = preds.score_full[normals]
    both = np.concatenate([np.zeros(len(full)), np.ones(len(crop))])
    final = preds.scores.clone()
    final[normals] = (full + crop) / 2
    return {"n": len(normals), "score_crop_normal": _r(float(crop.mean())),
            "score_full_normal": _r(float(full.mean())),
            "auroc_crop_vs_full": _r(_auroc(both, np.concatenate([full.numpy(), crop.numpy()]))),
            "image_auroc_if_normals_zoomed": _r(_auroc(labels.numpy(), final.numpy()))}


@torch.no_grad()
def batchnorm_check(model: ATACNet, data, preds, cfg, device) -> dict | None:
    """Re-estimate every BatchNorm layer's statistics on the training normals (full images, a
    cumulative average over batches of ``eval_batch_size``), score the test set again and compare.

    Returns:
        None for a network without BatchNorm; else ``image_auroc_bn_reestimated`` and
        ``spearman_vs_recorded`` (rank correlation of the new test scores with the recorded ones).
        The model itself is left untouched (a copy is used).
    """
    probe = copy.deepcopy(model)
    bns = [m for m in probe.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return None
    probe.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                       # cumulative moving average: every batch counts alike
        m.train()
    for i in range(0, len(data.train_normal), cfg.eval_batch_size):
        x = data.train_normal[i:i + cfg.eval_batch_size].to(device).float().div_(255)
        probe.score_pass(x.contiguous(memory_format=torch.channels_last))
    new = predict(probe, data.test_images, device, cfg.eval_batch_size, cfg.amp)
    rho = spearmanr(new.scores.numpy(), preds.scores.numpy()).statistic
    return {"image_auroc_bn_reestimated": _r(_auroc(data.test_labels.numpy(), new.scores.numpy())),
            "spearman_vs_recorded": _r(float(rho))}


@torch.no_grad()
def batchnorm_input_shift(model: nn.Module, images: torch.Tensor, batch_size: int = 32,
                          device: str | torch.device = "cpu") -> list[dict]:
    """How far a class's images sit from the running statistics of each BatchNorm layer of a
    network's backbone: what frozen BatchNorm (``batchnorm: frozen``) normalises with.

    For every BatchNorm layer, in forward order, the inputs' per-channel variance and mean over all
    ``images`` (every pixel of every image) against the layer's running variance and mean. A
    variance ratio well under 1 means the layer's output for these images has a spread well under
    the unit spread train-mode BatchNorm would give it.

    Args:
        model: a network with ``normalize`` and ``backbone`` (:class:`atac.models.ATACNet`), in
            the state to be measured (e.g. just built with ImageNet weights); it is not changed.
        images: (N, 3, H, W) uint8 images, pre-processed as a run reads them (``RunData.train_normal``).
    Returns:
        One dict per layer: ``layer`` (its index in forward order), ``name`` (module path),
        ``var_ratio`` (median over channels of input variance / running variance) and
        ``mean_shift`` (median over channels of |input mean - running mean| / running std).
    Raises:
        ValueError: the backbone has no BatchNorm layer, or ``images`` is empty.
    """
    if len(images) == 0:
        raise ValueError("batchnorm_input_shift: no images")
    bns = [(n, m) for n, m in model.backbone.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("batchnorm_input_shift: the backbone has no BatchNorm layer")
    sums: dict[str, list] = {n: [0.0, 0.0, 0] for n, _ in bns}  # per channel: sum, sum of squares, count

    def hook(name):
        def f(mod, inp, out):
            x = inp[0].detach().double()
            acc = sums[name]
            acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
            acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
            acc[2] += x.shape[0] * x.shape[2] * x.shape[3]
        return f

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook(n)) for n, m in bns]
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device).float().div_(255)
            model.backbone(model.normalize(x))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows = []
    for k, (name, m) in enumerate(bns):
        s1, s2, n = sums[name]
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0)
        rv, rm = m.running_var.double().cpu(), m.running_mean.double().cpu()
        rows.append({"layer": k, "name": name,
                     "var_ratio": _r(float((var.cpu() / rv).median())),
                     "mean_shift": _r(float(((mean.cpu() - rm).abs() / rv.sqrt()).median()))})
    return rows


def zoom_test_diagnostics(model: ATACNet, data, preds, cfg, device) -> dict:
    """The test-time zoom diagnostics of a run (``zoom_diagnostics`` in its record).

    Args:
        model: the trained zoom network; data: its :class:`atac.run.RunData`; preds: its test
            :class:`atac.evaluate.Predictions`; cfg: the run's config; device: where to score.
    Returns:
        ``auroc_zoomed_anomalies`` / ``auroc_unzoomed_anomalies`` (image AUROC of all test normals
        against the anomalies that were / were not zoomed, with ``n_zoomed_anomalies`` /
        ``n_unzoomed_anomalies``; None for an empty group), ``box_coverage`` (over zoomed anomalies
        with a mask: ``n``, ``mean``, ``share_below_half`` — the share of crops holding under half
        of the defect's pixels), ``forced_zoom`` (:func:`forced_zoom_probe`) and ``batchnorm``
        (:func:`batchnorm_check`).
    """
    labels = data.test_labels.bool()
    zoom = preds.zoom
    y = labels.numpy()
    s = preds.scores.numpy()
    out: dict = {}
    for name, group in (("zoomed", zoom), ("unzoomed", ~zoom)):
        keep = (~labels | (labels & group)).numpy()
        out[f"n_{name}_anomalies"] = int((labels & group).sum())
        out[f"auroc_{name}_anomalies"] = _r(_auroc(y[keep], s[keep])) if out[f"n_{name}_anomalies"] else None
    cov = box_coverage(preds.boxes, data.test_masks)
    sel = labels & zoom & data.test_has_mask.bool() & torch.isfinite(cov)
    c = cov[sel].double()
    out["box_coverage"] = {"n": int(sel.sum()), "mean": _r(float(c.mean())) if len(c) else None,
                           "share_below_half": _r(float((c < 0.5).double().mean())) if len(c) else None}
    out["forced_zoom"] = forced_zoom_probe(model, data, preds, cfg.seed, device, cfg.eval_batch_size)
    out["batchnorm"] = batchnorm_check(model, data, preds, cfg, device)
    return out
