"""Training (Algorithm 2 of the supplement) and one complete run: data → model → train → evaluate → record.

Algorithm 2, as atac runs it (NOTES.md fills what the supplement leaves to the lineage):
1. New layers get He initialisation; the backbone starts from its pretrained weights.
2. Each step draws a balanced mini-batch: half the slots are training normals — each of which
   becomes a CutMix pseudo-anomaly (labelled anomalous) with probability ``pseudo_prob`` — and half
   are the M real anomalies, drawn with replacement.
3. a1 = score(x); x_c = crop(x, attention(x)); a2 = score(x_c); a = (a1 + a2) / 2 (zoom recipes).
4. The recipe's loss (deviation loss for ATAC-Net); Adam, StepLR, gradient clipping. The network
   computes the step's loss from the batch, ``model.training_loss(batch, loss)``: ATAC-Net's
   recipes from its scores (:func:`atac.losses.zoom_loss`), DRA (:mod:`atac.models.dra`) from its
   four heads with the batch's slots (normal / real anomaly / pseudo-anomaly) and reference normals.
A checkpoint is written atomically after every epoch; a run started again in the same output
folder resumes from it (same config required) and reaches the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from .config import RunConfig, identity_differences, same_run
from .data.datasets import DatasetIndex, Sample, load_index
from .data.preprocess import prepare
from .data.pseudo import cutmix
from .data.splits import Split, fingerprints, make_split, split_from_record
from .evaluate import Predictions, image_metrics, pixel_auroc, predict
from .diagnostics import ZoomTelemetry, model_zooms, zoom_test_diagnostics
from .losses import SLOT_ANOMALY, SLOT_NORMAL, SLOT_PSEUDO, bce_loss, deviation_loss, weighted_ce_loss
from .locks import RunLock
from .memory import cpu_allocator, keep_freed_memory
from .methods import get_method
from .precision import amp_name, async_to, autocast
from .models import ATACNet, build_model
from .results import (atomic_torch_save, check_record, git_commit, machine, package_versions, write_csv,
                      write_json)

# Training and inference run the network in channels-last memory format: scores agree with the
# contiguous layout within float tolerance (tests/test_gpu_path.py); oneDNN's convolutions are
# usually faster in it on CPU, and it is the layout tensor cores want on CUDA.
MEMORY_FORMAT = "channels_last"


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise ``torch.device(name)``.

    Raises:
        ValueError: a CUDA device asked for where none exists.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"config field 'device': {name!r} is not a device (auto, cpu, cuda, cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config field 'device': {name} asked for, but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stream_seeds(cfg: RunConfig) -> dict[str, int]:
    """The seeds of a run's random streams: ``init`` (the global RNGs: initialisation), ``batches``
    (:class:`BalancedBatches`: draws, CutMix, rotations) and ``reference`` (the deviation loss's
    N(0, 1) draws).

    ``rng_streams == "legacy"``: ``seed``, ``seed`` and ``seed + 1`` (so seed s + 1's batches replay
    seed s's reference draws); ``"independent"``: three children of
    ``numpy.random.SeedSequence(seed)``, unrelated to those of any other seed.
    """
    if cfg.rng_streams == "legacy":
        return {"init": cfg.seed, "batches": cfg.seed, "reference": cfg.seed + 1}
    kids = np.random.SeedSequence(cfg.seed).spawn(3)
    return {name: int(k.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
            for name, k in zip(("init", "batches", "reference"), kids)}


@dataclass
class RunData:
    """The data of one run: index, split, and pre-processed ``uint8`` tensors."""

    index: DatasetIndex
    split: Split
    train_normal: torch.Tensor      # (Nn, 3, S, S) uint8
    train_anomalous: torch.Tensor   # (M, 3, S, S) uint8
    test_images: torch.Tensor       # (Nt, 3, S, S) uint8
    test_masks: torch.Tensor        # (Nt, 1, S, S) bool
    test_has_mask: torch.Tensor     # (Nt,) bool
    test_labels: torch.Tensor       # (Nt,) long
    test_empty_mask: torch.Tensor   # (Nt,) bool: an anomalous image whose mask marks no pixel
    prep_seconds: float = 0.0


def load_run_data(cfg: RunConfig, progress: bool = True, use_cache: bool = True,
                  split_record: dict | None = None, where: str = "") -> RunData:
    """Find the dataset, draw the few-shot split (or take the one ``split_record`` names, a
    :meth:`~atac.data.splits.Split.record` read from ``where``), pre-process (cached unless
    ``use_cache`` is False) and select the tensors.

    Raises:
        ValueError (DatasetLayoutError, SplitError, ImageReadError): the data cannot be found or
            read, the split cannot be drawn, or the dataset lacks files of ``split_record``.
    """
    t0 = time.perf_counter()
    index = load_index(cfg.dataset, cfg.category, cfg.data_root, cfg.mt_test_normals, cfg.mt_split_seed)
    if split_record is not None:
        split = split_from_record(index, split_record, where)
    else:
        split = make_split(index, cfg.shots, cfg.seed, cfg.setting, cfg.known_type)
    everything: list[Sample] = index.train + index.test
    prep = prepare(everything, cfg.image_size, cfg.clahe, cfg.clahe_clip, cfg.clahe_tile,
                   cfg.mask_threshold, use_cache=use_cache, progress=progress)
    pos = {p: i for i, p in enumerate(prep.paths)}

    def sel(samples):
        return torch.tensor([pos[s.path] for s in samples], dtype=torch.long)

    t = sel(split.test)
    return RunData(index, split, prep.images[sel(split.train_normal)], prep.images[sel(split.train_anomalous)],
                   prep.images[t], prep.masks[t], prep.has_mask[t],
                   torch.tensor([s.label for s in split.test]), prep.empty_mask[t],
                   time.perf_counter() - t0)


class Batch(tuple):
    """One training batch. Unpacks as ``x, y`` (what most recipes train on) and also carries:

    x: float (B, 3, S, S) in [0, 1]; y: float (B,) 0 normal / 1 anomalous (real or pseudo);
    slots: long (B,) :data:`~atac.losses.SLOT_NORMAL` (0) / ``SLOT_ANOMALY`` (1, a real anomaly) /
    ``SLOT_PSEUDO`` (2, a CutMix pseudo-anomaly); ref: float (R, 3, S, S) reference normals, or
    None (drawn only when ``BalancedBatches(n_ref=R)``, R > 0: DRA).
    """

    def __new__(cls, x: torch.Tensor, y: torch.Tensor, slots: torch.Tensor,
                ref: torch.Tensor | None = None) -> "Batch":
        self = super().__new__(cls, (x, y))
        self.x, self.y, self.slots, self.ref = x, y, slots, ref
        return self


class BalancedBatches:
    """Balanced mini-batches (Algorithm 2, line 2), all randomness from one seeded generator.

    ``normals`` and ``anomalies`` are ``uint8`` (N, 3, S, S) tensors on the training device.
    ``next()`` gives a :class:`Batch`: unpacked, (x float (B, 3, S, S) in [0, 1], y float (B,)),
    plus what each slot holds (``slots``) and, with ``n_ref`` > 0, ``n_ref`` reference normals drawn
    with replacement after the batch (DRA). With ``n_ref=0`` the generator is used exactly as before
    the slots and references existed (same batches, same stream).
    """

    def __init__(self, normals: torch.Tensor, anomalies: torch.Tensor, cfg: RunConfig,
                 generator: torch.Generator, n_ref: int = 0):
        self.normals, self.anomalies, self.cfg, self.gen = normals, anomalies, cfg, generator
        self.n_ref = n_ref

    def next(self) -> Batch:
        cfg, gen = self.cfg, self.gen
        if cfg.batch_mix == "half_normals":
            return self._next_half_normals()
        n_norm = cfg.batch_size // 2
        n_anom = cfg.batch_size - n_norm
        i_n = torch.randint(0, len(self.normals), (n_norm,), generator=gen)
        i_a = torch.randint(0, len(self.anomalies), (n_anom,), generator=gen)
        dev = self.normals.device
        xn = self._rotated(self.normals[async_to(i_n, dev)].float().div_(255))
        xa = self._rotated(self.anomalies[async_to(i_a, dev)].float().div_(255))
        yn = torch.zeros(n_norm)
        sn = torch.full((n_norm,), SLOT_NORMAL, dtype=torch.long)
        if cfg.pseudo_anomaly and cfg.pseudo_prob > 0:
            flip = torch.rand(n_norm, generator=gen) < cfg.pseudo_prob
            for j in torch.nonzero(flip).flatten().tolist():
                if self._paste(xn, j):
                    yn[j] = 1.0
                    sn[j] = SLOT_PSEUDO
        y = async_to(torch.cat([yn, torch.ones(n_anom)]), dev)
        slots = async_to(torch.cat([sn, torch.full((n_anom,), SLOT_ANOMALY, dtype=torch.long)]), dev)
        return Batch(torch.cat([xn, xa]), y, slots, self._reference())

    def _next_half_normals(self) -> Batch:
        """``batch_mix == "half_normals"``: half the slots normals; each other slot a CutMix
        pseudo-anomaly (of a drawn normal) with probability ``pseudo_prob``, else a real anomaly."""
        cfg, gen = self.cfg, self.gen
        n_norm = cfg.batch_size // 2
        n_anom = cfg.batch_size - n_norm
        dev = self.normals.device
        i_n = torch.randint(0, len(self.normals), (n_norm,), generator=gen)
        i_a = torch.randint(0, len(self.anomalies), (n_anom,), generator=gen)
        i_p = torch.randint(0, len(self.normals), (n_anom,), generator=gen)
        use_pseudo = torch.zeros(n_anom, dtype=torch.bool)
        if cfg.pseudo_anomaly and cfg.pseudo_prob > 0:
            use_pseudo = torch.rand(n_anom, generator=gen) < cfg.pseudo_prob
        xn = self._rotated(self.normals[async_to(i_n, dev)].float().div_(255))
        xa = self._rotated(torch.where(async_to(use_pseudo, dev)[:, None, None, None],
                                       self.normals[async_to(i_p, dev)],
                                       self.anomalies[async_to(i_a, dev)]).float().div_(255))
        ya = torch.ones(n_anom)
        sa = torch.full((n_anom,), SLOT_ANOMALY, dtype=torch.long)
        for j in torch.nonzero(use_pseudo).flatten().tolist():
            if self._paste(xa, j):
                sa[j] = SLOT_PSEUDO
            else:  # nothing pasted: the slot holds a plain normal
                ya[j] = 0.0
                sa[j] = SLOT_NORMAL
        y = async_to(torch.cat([torch.zeros(n_norm), ya]), dev)
        slots = async_to(torch.cat([torch.full((n_norm,), SLOT_NORMAL, dtype=torch.long), sa]), dev)
        return Batch(torch.cat([xn, xa]), y, slots, self._reference())

    def _paste(self, x: torch.Tensor, j: int) -> bool:
        """CutMix into ``x[j]`` in place (:func:`atac.data.pseudo.cutmix`); False when nothing was pasted."""
        cfg, source = self.cfg, None
        if cfg.patch_source == "other":
            k = int(torch.randint(0, len(self.normals), (), generator=self.gen))
            source = self.normals[k].float().div(255)
        x[j], box = cutmix(x[j], self.gen, source, cfg.patch_area, cfg.patch_ratio, cfg.patch_jitter)
        return box is not None

    def _rotated(self, x: torch.Tensor) -> torch.Tensor:
        """``augment == "rotate"``: each image of (n, 3, S, S) turned by its own angle, uniform in
        [-180, 180) degrees (bilinear, corners filled with 0), as DevNet's and DRA's training
        transforms (``RandomRotation(180)``); otherwise ``x`` unchanged (no draw)."""
        if self.cfg.augment != "rotate":
            return x
        angles = (torch.rand(len(x), generator=self.gen) * 360 - 180).tolist()
        return torch.stack([TF.rotate(img, a, interpolation=TF.InterpolationMode.BILINEAR)
                            for img, a in zip(x, angles)])

    def _reference(self) -> torch.Tensor | None:
        if self.n_ref <= 0:
            return None
        i_r = torch.randint(0, len(self.normals), (self.n_ref,), generator=self.gen)
        return self.normals[async_to(i_r, self.normals.device)].float().div_(255)


def make_loss(cfg: RunConfig, generator: torch.Generator) -> Callable:
    """The recipe's loss as ``loss(scores (B,), labels (B,)) -> 0-d tensor``."""
    recipe = get_method(cfg.method)
    if recipe.loss == "deviation":
        return lambda s, y: deviation_loss(s, y, cfg.dev_margin, cfg.dev_ref_size, generator)
    if recipe.loss == "bce":
        return bce_loss
    if recipe.loss == "weighted_ce":
        return lambda s, y: weighted_ce_loss(s, y, tuple(cfg.ce_weights))
    raise ValueError(f"recipe {recipe.name}: unknown loss {recipe.loss}")


class DivergedError(ValueError):
    """Training went non-finite (a NaN or infinite loss), or a checkpoint holds non-finite weights
    or losses; the message names the epoch and step and the checkpoint to delete."""


def _checks_each_step(device: torch.device) -> bool:
    """Whether :func:`fit` checks the loss of every step (CPU: free) or once per epoch, from the
    epoch's summed loss (CUDA and other accelerators: reading a loss on the host waits for the
    device, so a per-step check would stall every step)."""
    return device.type == "cpu"


def _not_finite(state: dict) -> str | None:
    """What is not finite in a checkpoint (its epoch losses, the model's or the optimizer's
    floating-point tensors), or None."""
    bad = [i + 1 for i, v in enumerate(state.get("losses", [])) if not np.isfinite(v)]
    if bad:
        return f"the loss of epoch {bad[0]} is {state['losses'][bad[0] - 1]}"
    for name, t in state["model"].items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"the weight {name} is not finite"
    for slot in state["optimizer"].get("state", {}).values():
        for name, t in slot.items():
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"the optimizer's {name} is not finite"
    return None


def _diverged(where: str, ckpt: Path | None, cfg: RunConfig) -> DivergedError:
    if ckpt is None:
        saved = "nothing was saved"
    elif ckpt.is_file():
        saved = (f"nothing of this epoch was saved; delete {ckpt} before training again (resumed "
                 "as it is, the run replays the same draws and diverges again)")
    else:
        saved = f"no checkpoint was written ({ckpt})"
    return DivergedError(f"training diverged: {where} (lr {cfg.lr:g}, grad_clip {cfg.grad_clip:g}); "
                         f"{saved}; a lower lr may help")


@dataclass
class RunResult:
    """Everything one run produced: the record, the model, the test data and predictions."""

    metrics: dict
    model: ATACNet
    data: RunData
    predictions: Predictions
    out_dir: Path | None
    losses: list[float] = field(default_factory=list)


def fit(model: ATACNet, data: RunData, cfg: RunConfig, device: torch.device,
        out_dir: Path | None = None, progress: bool = True) -> tuple[list[float], float]:
    """Train ``model`` in place (Algorithm 2), resuming from ``out_dir/checkpoint.pt`` if present.

    The same loop for every recipe and network, through two members every network has:
    ``model.batch_reference_size`` (reference normals per batch, :class:`BalancedBatches`' ``n_ref``:
    0, or DRA's ``dra_ref_size``) and ``model.training_loss(batch, loss) -> (0-d loss, Output)``.

    A non-finite loss stops training: on CPU at the step where it happens (every step's loss is
    checked), on CUDA at the end of that epoch (one check of the epoch's summed loss, which is read
    on the host there anyway, so the steps stay free of host-device synchronisation); in both cases
    before that epoch's checkpoint is written.

    Returns:
        (mean loss per epoch, training seconds summed over resumptions, the zoom recipes'
        ``train_telemetry`` — one dict per epoch, :class:`atac.diagnostics.ZoomTelemetry` — or None).
    Raises:
        ValueError: the folder's checkpoint was written by a different config.
        DivergedError: a non-finite loss (names the epoch, and the step on CPU, and the checkpoint to
            delete), or a checkpoint holding non-finite weights or losses (never resumed from).
    """
    seeds = stream_seeds(cfg)
    gen = torch.Generator().manual_seed(seeds["batches"])
    ref_gen = torch.Generator().manual_seed(seeds["reference"])
    telemetry = ZoomTelemetry(cfg.dev_margin) if model_zooms(model) else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    losses: list[float] = []
    start_epoch, seconds = 0, 0.0
    ckpt = out_dir / "checkpoint.pt" if out_dir else None
    if ckpt is not None and ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            missing = [k for k in ("config", "model", "optimizer", "epoch") if k not in state]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
        except Exception as exc:
            raise ValueError(f"{ckpt} is not a checkpoint written by atac ({exc}); delete it to "
                             "start this run afresh") from exc
        if not same_run(state["config"], cfg.to_dict()):
            diff = identity_differences(state["config"], cfg.to_dict())
            raise ValueError(f"{ckpt} belongs to a run with a different config (fields: "
                             f"{', '.join(diff)}); use another --out folder or delete the checkpoint")
        bad = _not_finite(state)
        if bad is not None:
            raise DivergedError(f"{ckpt} holds a run that diverged ({bad}); it is not resumed from: "
                                "delete it to start this run afresh (a lower lr may help)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        ref_gen.set_state(state["ref_generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, losses, seconds = state["epoch"], state["losses"], state["seconds"]
        if telemetry is not None:
            telemetry.history = list(state.get("telemetry", []))
    model.to(device, memory_format=torch.channels_last)  # see MEMORY_FORMAT
    if device.type == "cpu":
        keep_freed_memory()  # two graphs at once page-fault under glibc's defaults (atac.memory)
    # a model that scores against reference normals (DRA) says how many it wants per batch
    batches = BalancedBatches(data.train_normal.to(device), data.train_anomalous.to(device), cfg, gen,
                              n_ref=model.batch_reference_size)
    loss_fn = make_loss(cfg, ref_gen)
    # GPU path: bf16 autocast (cfg.amp) around the step, optionally a compiled network
    if cfg.compile:
        model.compile()  # in place: every forward, DRA's training_loss included
    total = cfg.epochs * cfg.steps_per_epoch
    each_step = _checks_each_step(device)
    bar = tqdm(total=total, initial=start_epoch * cfg.steps_per_epoch, desc=f"train {cfg.method}",
               unit="step", disable=not progress, leave=False)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        running = torch.zeros((), device=device)
        for step in range(cfg.steps_per_epoch):
            batch = batches.next()
            with autocast(cfg.amp, device):
                loss, out = model.training_loss(batch, loss_fn)
                if telemetry is not None:
                    telemetry.update(out, batch.slots)
            if each_step and not bool(torch.isfinite(loss.detach())):
                bar.close()
                raise _diverged(f"the loss is {float(loss.detach())} at epoch {epoch + 1}, step "
                                f"{step + 1} of {cfg.steps_per_epoch}", ckpt, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running += loss.detach()
            bar.update(1)
        sched.step()
        mean = float(running) / cfg.steps_per_epoch  # one sync per epoch, for the log
        if not np.isfinite(mean):
            bar.close()
            how = ("each step's loss is finite, their sum is not" if each_step else
                   f"on {device.type} the loss is checked once per epoch")
            raise _diverged(f"the mean loss of epoch {epoch + 1} is {mean} ({how})", ckpt, cfg)
        losses.append(mean)
        seconds += time.perf_counter() - t0
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
        if telemetry is not None:
            telemetry.end_epoch(model, epoch + 1)
        if ckpt is not None:
            atomic_torch_save({"config": cfg.to_dict(), "epoch": epoch + 1, "model": model.state_dict(),
                                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                "generator": gen.get_state(), "ref_generator": ref_gen.get_state(),
                                "torch_rng": torch.get_rng_state(), "losses": losses,
                                "seconds": seconds,
                                **({"telemetry": telemetry.history} if telemetry is not None else {})},
                               ckpt)
    bar.close()
    return losses, seconds, (telemetry.history if telemetry is not None else None)


def _exact(v) -> str:
    """A score as text that reads back as the same number (``repr`` of the float: the shortest
    decimal that round-trips), so metrics computed from ``scores.csv`` equal the record's."""
    return repr(float(v))


def write_scores(path: Path, samples: list[Sample], preds: Predictions) -> None:
    """``scores.csv``: path,label,defect_type,score,score_full,score_zoom,zoomed (one row per image),
    then ``score_<head>`` columns for a multi-head model (DRA: seen, pseudo, residual, normality).

    Every score is written exactly (it reads back as the float the metrics were computed from), so
    the image AUROC/AUPRC computed from the file equal ``metrics.json``'s."""
    heads = list(preds.heads or {})
    write_csv(path, ["path", "label", "defect_type", "score", "score_full", "score_zoom", "zoomed"]
              + [f"score_{h}" for h in heads],
              [(s.rel, s.label, s.defect_type, _exact(preds.scores[i]), _exact(preds.score_full[i]),
                "" if preds.score_zoom is None else _exact(preds.score_zoom[i]),
                "" if preds.zoom is None else int(preds.zoom[i]),
                *(_exact(preds.heads[h][i]) for h in heads))
               for i, s in enumerate(samples)])


def evaluate_run(model: ATACNet, data: RunData, cfg: RunConfig, device: torch.device) -> tuple[dict, Predictions]:
    """Score the test set; image AUROC/AUPRC and pixel AUROC of the attention map (plus, for a zoom
    recipe, the zoom rates and ``view_auroc``: the image AUROC of the full-image score and of the
    zoomed view's score alone; ``head_auroc`` of a multi-head one)."""
    t0 = time.perf_counter()
    preds = predict(model, data.test_images, device, cfg.eval_batch_size, cfg.amp)
    metrics = image_metrics(data.test_labels.numpy(), preds.scores.numpy())
    metrics["pixel_auroc"] = pixel_auroc(preds.attention, data.test_masks, data.test_has_mask,
                                         data.test_labels)
    if preds.zoom is not None:
        lab = data.test_labels.bool()
        metrics["zoom_rate_normal"] = float(preds.zoom[~lab].float().mean())
        metrics["zoom_rate_anomalous"] = float(preds.zoom[lab].float().mean())
    if preds.score_zoom is not None:  # which view ranks the test set: the image, the zoom, or both
        metrics["view_auroc"] = {
            view: image_metrics(data.test_labels.numpy(), v.numpy())["image_auroc"]
            for view, v in (("full", preds.score_full), ("zoom", preds.score_zoom))}
    if preds.heads:  # multi-head model (DRA): each head's own image AUROC; a normality head ranks by -score
        metrics["head_auroc"] = {
            h: image_metrics(data.test_labels.numpy(),
                             (-v if h == "normality" else v).numpy())["image_auroc"]
            for h, v in preds.heads.items()}
    metrics["eval_seconds"] = time.perf_counter() - t0
    return metrics, preds


def completed_record(out_dir: str | Path) -> dict | None:
    """The ``metrics.json`` record of a finished run in ``out_dir``, or None when there is none.

    Raises:
        ValueError: a ``metrics.json`` that is unreadable, not a training record, or whose metrics
            cannot be trusted (:func:`atac.results.check_record`: no ``image_auroc``, an AUROC
            outside [0, 1], ...); it names the file and is left as it is.
    """
    path = Path(out_dir) / "metrics.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} exists but cannot be read as a results record ({exc}); "
                         "move it away or use another --out folder (nothing was overwritten)") from exc
    if not (isinstance(record, dict) and isinstance(record.get("config"), dict) and "method" in record):
        raise ValueError(f"{path} is not the record of an `atac train` run; use another --out folder "
                         "(nothing was overwritten)")
    try:
        return check_record(record, str(path))
    except ValueError as exc:
        raise ValueError(f"{exc}; move it away or use another --out folder (nothing was "
                         "overwritten)") from exc


def same_config(record: dict, cfg: RunConfig) -> bool:
    """True when a record was made with ``cfg`` (:func:`atac.config.same_run`)."""
    return same_run(record.get("config", {}), cfg.to_dict())


def run(cfg: RunConfig, out_dir: str | Path | None = None, progress: bool = True) -> RunResult:
    """One complete run: data, model, training (resumable), evaluation, and the record.

    Writes (when ``out_dir`` is given, each file atomically): ``checkpoint.pt`` (per epoch),
    ``model.pt`` (final weights, config, split, the training files' fingerprints), ``scores.csv``
    (path,label,defect_type,score,...), ``metrics.json`` (the record: metrics, config, split files,
    provenance).

    Raises:
        ValueError (and subclasses DatasetLayoutError, SplitError, ImageReadError, WeightsError):
            bad config, data or weights; the message names the field or file.
    """
    cfg.validate()
    commit = git_commit()  # the code this run starts with (a later edit must not relabel it)
    device = resolve_device(cfg.device)
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with RunLock(out):
            previous = completed_record(out)
            if previous is not None and not same_config(previous, cfg):
                raise ValueError(f"{out} already holds the results of a different run "
                                 "(metrics.json); use another --out folder (nothing was overwritten)")
            return _run(cfg, out, device, commit, progress)
    return _run(cfg, None, device, commit, progress)


def _run(cfg: RunConfig, out: Path | None, device: torch.device, commit: str | None,
         progress: bool) -> RunResult:
    data = load_run_data(cfg, progress)
    if get_method(cfg.method).two_stage:
        return _run_two_stage(cfg, data, out, device, commit, progress)
    seed_everything(stream_seeds(cfg)["init"])
    model = build_model(cfg)
    if hasattr(model, "set_reference"):  # DRA: its fixed, seeded test reference set of training normals
        model.set_reference(data.train_normal)
    losses, train_seconds, telemetry = fit(model, data, cfg, device, out, progress)
    metrics, preds = evaluate_run(model, data, cfg, device)
    if telemetry is not None:
        metrics["train_telemetry"] = telemetry
        metrics["zoom_diagnostics"] = zoom_test_diagnostics(model, data, preds, cfg, device)
    record = run_record(cfg, data, metrics, device, model.weights_source, commit, (losses, train_seconds))
    if out is not None:
        _write_outputs(out, cfg, data, preds, model, record)
    return RunResult(record, model, data, preds, out, losses)


def empty_masks(data: RunData) -> dict:
    """``{"n_test_empty_masks": n}``: the anomalous test images whose mask is empty (left out of
    pixel metrics), when there are any (n > 0); else ``{}``, so that a record is what it always was."""
    n = int(data.test_empty_mask.sum())
    return {"n_test_empty_masks": n} if n > 0 else {}


def run_record(cfg: RunConfig, data: RunData, metrics: dict, device: torch.device,
               weights_source: str | None, commit: str | None,
               training: tuple[list[float], float] | None = None, checkpoint: str | None = None) -> dict:
    """The results record (``metrics.json``) of a training run (:func:`run`) or of ``atac evaluate``.

    What was run (method, data, split, seed, the full ``config``), the test metrics of
    :func:`evaluate_run` (AUROCs and rates; ``eval_seconds`` rounded to 0.01 s), test and training
    set counts, how it was computed (device, torch threads, memory format, precision, whether the
    network was compiled, the CPU allocator) and provenance (git commit, packages, machine, time
    finished, data folder, the split's files).

    Args:
        training: a training run's (mean loss per epoch, training seconds): adds ``train_seconds``
            and ``epoch_losses`` (5 decimals); None for a trained model evaluated again.
        checkpoint: the ``model.pt`` evaluated (``atac evaluate``), recorded as ``checkpoint``.
    """
    split = data.split
    return {
        "method": cfg.method, "backbone": cfg.backbone, "weights_source": weights_source,
        "dataset": cfg.dataset, "category": data.index.category, "setting": cfg.setting,
        "known_type": cfg.known_type, "shots": cfg.shots, "seed": cfg.seed,
        "image_auroc": metrics["image_auroc"], "image_auprc": metrics["image_auprc"],
        "pixel_auroc": metrics["pixel_auroc"],
        "zoom_rate_normal": metrics.get("zoom_rate_normal"),
        "zoom_rate_anomalous": metrics.get("zoom_rate_anomalous"),
        **({"head_auroc": metrics["head_auroc"]} if "head_auroc" in metrics else {}),
        **({"view_auroc": metrics["view_auroc"]} if "view_auroc" in metrics else {}),
        **{k: metrics[k] for k in ("zoom_diagnostics", "train_telemetry") if k in metrics},
        "n_train_normal": len(split.train_normal), "n_train_anomalous": len(split.train_anomalous),
        "n_test_normal": int((data.test_labels == 0).sum()),
        "n_test_anomalous": int((data.test_labels == 1).sum()),
        **empty_masks(data),
        **({"train_seconds": round(training[1], 2)} if training is not None else {}),
        "prep_seconds": round(data.prep_seconds, 2),
        "eval_seconds": round(metrics["eval_seconds"], 2),
        **({"epoch_losses": [round(v, 5) for v in training[0]]} if training is not None else {}),
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "torch_threads": torch.get_num_threads(), "memory_format": MEMORY_FORMAT,
        "precision": amp_name(cfg.amp, device), "compiled": cfg.compile and training is not None,
        **({"cpu_allocator": cpu_allocator()} if device.type == "cpu" else {}),
        "git_commit": commit, "packages": package_versions(), "machine": machine(),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data_folder": str(data.index.root),
        **({"checkpoint": checkpoint} if checkpoint is not None else {}),
        "config": cfg.to_dict(),
        "split": split.record(),
    }


def _write_outputs(out: Path, cfg: RunConfig, data: RunData, preds: Predictions, model,
                   record: dict) -> None:
    """``scores.csv``, ``model.pt``, ``metrics.json`` (each atomically), then drop the checkpoints.

    ``model.pt`` holds ``config``, ``model`` (the state dict), ``weights_source``, ``split`` (the
    record's) and ``training_files`` (:func:`atac.data.splits.fingerprints` of the training
    normals and anomalies: what ``atac evaluate`` checks a test set against)."""
    write_scores(out / "scores.csv", data.split.test, preds)
    split = data.split
    atomic_torch_save({"config": cfg.to_dict(), "model": model.state_dict(),
                        "weights_source": model.weights_source, "split": split.record(),
                        "training_files": fingerprints(split.train_normal + split.train_anomalous)},
                       out / "model.pt")
    write_json(out / "metrics.json", record)
    for ckpt in (out / "checkpoint.pt", out / STAGE1 / "checkpoint.pt"):
        if ckpt.is_file():
            ckpt.unlink()  # training is complete; model.pt holds the final weights
    if (out / STAGE1).is_dir() and not any((out / STAGE1).iterdir()):
        (out / STAGE1).rmdir()


# Step IV (gradcam_zoom): the stage-1 network's checkpoint lives in <out>/stage1/, stage 2's in <out>.
STAGE1 = "stage1"


def stage2_seed(seed: int) -> int:
    """The seed of stage 2 of a two-stage run, derived from the run's ``seed`` (in [0, 2**32)).

    Stage 2 gets its own stream (batches, CutMix, deviation-loss reference, initialisation), not a
    replay of stage 1's draws, and it is a function of ``seed`` alone, so the run is reproducible.
    """
    return int(np.random.SeedSequence([seed, 4]).generate_state(1, dtype=np.uint32)[0])


def _run_two_stage(cfg: RunConfig, data: RunData, out: Path | None, device: torch.device,
                   commit: str | None, progress: bool) -> RunResult:
    """Ladder step IV (supplement §3): retrain on crops around Grad-CAM activations.

    1. Stage 1: a step-III network (``build_model``, top-k head, deviation loss, no σ) trained on
       the full images with :func:`fit` (seed ``cfg.seed``; checkpoint in ``<out>/stage1/``).
    2. Grad-CAM of stage 1's full-image score (:func:`atac.gradcam.gradcam_maps`) on the training
       normals and anomalies; Algorithm 1 boxes on the CAM (``crop_threshold``,
       ``crop_full_fraction``); ``uint8`` crops resized back to the input size. Recomputed (not
       stored) when a run resumes: it is deterministic given stage 1's weights.
    3. Stage 2: a fresh network, same init road (``build_model``, ``cfg.weights``), trained with
       :func:`fit` on the cropped training images (``BalancedBatches`` makes the CutMix
       pseudo-anomalies from the cropped normals); its generators come from
       :func:`stage2_seed` ``(cfg.seed)``; checkpoint in ``<out>``.
    4. Test: :class:`atac.gradcam.GradCAMZoomNet` through :func:`evaluate_run` — score = mean of
       stage 1's full-image score and stage 2's score of the Grad-CAM crop; zoom rates and pixel
       AUROC from the test images' Grad-CAM.
    The record adds ``gradcam_seconds`` (CAMs of the training images; the test CAMs are part of
    ``eval_seconds``), ``stage1_train_seconds``, ``stage1_epoch_losses``, ``stage2_seed`` and the
    training images' zoom rates; ``train_seconds`` sums both stages, ``epoch_losses`` are stage 2's.
    ``model.pt`` holds both networks (``stage1.*``, ``stage2.*`` keys of one state dict).
    """
    from .gradcam import GradCAMZoomNet, crop_uint8, gradcam_boxes, gradcam_maps

    seed_everything(cfg.seed)
    stage1 = build_model(cfg)
    s1_dir = out / STAGE1 if out is not None else None
    if s1_dir is not None:
        s1_dir.mkdir(exist_ok=True)
    losses1, seconds1, _ = fit(stage1, data, cfg, device, s1_dir, progress)

    t0 = time.perf_counter()
    n = len(data.train_normal)
    train_images = torch.cat([data.train_normal, data.train_anomalous])     # (Nn + M, 3, S, S) uint8
    cams = gradcam_maps(stage1, train_images, device, cfg.eval_batch_size)  # (Nn + M, S, S)
    boxes, zoom = gradcam_boxes(cams, cfg.crop_threshold, cfg.crop_full_fraction)
    crops = crop_uint8(train_images, boxes, zoom)
    gradcam_seconds = time.perf_counter() - t0
    data2 = dataclasses.replace(data, train_normal=crops[:n], train_anomalous=crops[n:])

    cfg2 = dataclasses.replace(cfg, seed=stage2_seed(cfg.seed))
    seed_everything(cfg2.seed)
    stage2 = build_model(cfg2)
    losses2, seconds2, _ = fit(stage2, data2, cfg2, device, out, progress)

    model = GradCAMZoomNet(stage1, stage2, cfg.crop_threshold, cfg.crop_full_fraction)
    metrics, preds = evaluate_run(model, data, cfg, device)
    record = run_record(cfg, data, metrics, device, model.weights_source, commit,
                        (losses2, seconds1 + seconds2))
    record.update({
        "stage1_train_seconds": round(seconds1, 2), "gradcam_seconds": round(gradcam_seconds, 2),
        "stage1_epoch_losses": [round(v, 5) for v in losses1], "stage2_seed": cfg2.seed,
        "train_zoom_rate_normal": float(zoom[:n].float().mean()),
        "train_zoom_rate_anomalous": float(zoom[n:].float().mean()),
    })
    if out is not None:
        _write_outputs(out, cfg, data, preds, model, record)
    return RunResult(record, model, data, preds, out, losses2)
