"""Training: Algorithm 2 of the supplement — balanced batches, the step, the epoch loop — and its
checkpoints. One complete run around it (data, model, evaluation, record) is :mod:`atac.run`.

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
A checkpoint is written atomically after every epoch; training started again in the same folder
resumes from it (the same run required, :func:`atac.config.same_run`) and reaches the same result
as uninterrupted training.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from .config import RunConfig, identity_differences, same_run
from .data.pseudo import cutmix
from .diagnostics import ZoomTelemetry, model_zooms
from .losses import SLOT_ANOMALY, SLOT_NORMAL, SLOT_PSEUDO, bce_loss, deviation_loss, weighted_ce_loss
from .memory import keep_freed_memory
from .methods import get_method
from .precision import async_to, autocast
from .results import atomic_torch_save

if TYPE_CHECKING:
    from .models import ATACNet, DRANet
    from .run import RunData

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


def fit(model: ATACNet | DRANet, data: RunData, cfg: RunConfig, device: torch.device,
        out_dir: Path | None = None, progress: bool = True) -> tuple[list[float], float, list[dict] | None]:
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
        ValueError: the folder's checkpoint belongs to another run (:func:`atac.config.same_run`).
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
