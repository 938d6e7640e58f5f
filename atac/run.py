"""One complete run: data → model → training (:func:`atac.train.fit`) → evaluation → record, and
the two-stage runner of ladder step IV (Grad-CAM crops).

A run with an output folder holds it under a :class:`atac.locks.RunLock`, resumes from the
checkpoints found there (:func:`atac.train.fit`) and writes, each file atomically,
``checkpoint.pt`` (per epoch), ``model.pt``, ``scores.csv`` and ``metrics.json``
(:func:`run_record`). A folder holding another run's record is refused, never overwritten.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig, same_run
from .data.datasets import DatasetIndex, Sample, load_index
from .data.preprocess import prepare
from .data.splits import Split, fingerprints, make_split, split_from_record
from .diagnostics import zoom_test_diagnostics
from .evaluate import Predictions, image_metrics, pixel_auroc, predict
from .locks import RunLock
from .memory import cpu_allocator
from .methods import get_method
from .models import ATACNet, build_model
from .precision import amp_name
from .results import (atomic_torch_save, check_record, git_commit, machine, package_versions, write_csv,
                      write_json)
from .train import MEMORY_FORMAT, fit, resolve_device, seed_everything, stream_seeds


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


@dataclass
class RunResult:
    """Everything one run produced: the record, the model, the test data and predictions."""

    metrics: dict
    model: ATACNet
    data: RunData
    predictions: Predictions
    out_dir: Path | None
    losses: list[float] = field(default_factory=list)


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
    """The results record (``metrics.json``) of a run (:func:`run`) or of ``atac evaluate``.

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
       the full images with :func:`atac.train.fit` (seed ``cfg.seed``; checkpoint in ``<out>/stage1/``).
    2. Grad-CAM of stage 1's full-image score (:func:`atac.gradcam.gradcam_maps`) on the training
       normals and anomalies; Algorithm 1 boxes on the CAM (``crop_threshold``,
       ``crop_full_fraction``); ``uint8`` crops resized back to the input size. Recomputed (not
       stored) when a run resumes: it is deterministic given stage 1's weights.
    3. Stage 2: a fresh network, same init road (``build_model``, ``cfg.weights``), trained with
       :func:`atac.train.fit` on the cropped training images (:class:`atac.train.BalancedBatches`
       makes the CutMix pseudo-anomalies from the cropped normals); its generators come from
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
