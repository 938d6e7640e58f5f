#!/usr/bin/env python
"""Speed of each method against its plain backbone, and what the paper_runs sweeps cost here.

For each backbone and single-stage method recipe (:mod:`atac.methods`) this times, on one fixed
batch, four things, interleaved iteration by iteration (so that machine noise hits all alike):

- ``train``: the method's full training step as :func:`atac.train.fit` runs it (channels-last
  model and input, forward with the zoom pass where the recipe has one, the recipe's loss from
  :func:`atac.train.make_loss`, backward, gradient clipping, Adam step);
- ``infer``: the method's inference as :func:`atac.evaluate.predict` runs it (eval mode,
  ``torch.inference_mode``, channels-last);
- ``plain_train``: the plain backbone (the same ``build_backbone(...).features`` behind the same
  normalisation, channels-last) forward + backward with loss = mean of the feature map (no
  optimiser step);
- ``plain_infer``: the plain backbone forward alone (eval mode, inference mode).

``train_ratio`` = median train time / median plain_train time, ``infer_ratio`` = median infer time
/ median plain_infer time. A zoom recipe's fixed batch is the worst case by default (``--zoom
all``: every image goes through the crop pass); the record gives the fraction zoomed. With
``--checkpoint model.pt`` (from ``atac train``), that trained model is also timed on its run's own
test images against the plain backbone, so that the zoom rates are the model's own. Weights are random by default (``--weights none``): timing does not
depend on the values. Then, from those figures, an estimate of every sweep in ``paper_runs/`` on
this machine, and optionally (``--full-run DATA_ROOT``) one measured ``atac.run.run``.

    python benchmarks/speed.py                         # CPU or CUDA (auto), defaults below
    python benchmarks/speed.py --device cpu --threads 2 --full-run ../shared/data
    python benchmarks/speed.py --device cpu --threads 2 --backbones mobilenet_v2 --methods atac \
        --checkpoint runs/grid/model.pt --data-root ../shared/data
    python benchmarks/speed.py --help

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

from atac.config import NORMALIZATIONS, RunConfig, preset  # noqa: E402
from atac.memory import keep_freed_memory  # noqa: E402
from atac.methods import METHODS, get_method  # noqa: E402
from atac.models import build_backbone, build_model  # noqa: E402
from atac.models.atacnet import Normalize  # noqa: E402
from atac.results import git_commit, machine, package_versions, write_json  # noqa: E402

SINGLE_STAGE = tuple(name for name, r in METHODS.items() if not r.two_stage)
DEFAULT_BACKBONES = ("mobilenet_v2", "resnet50")
DEFAULT_METHODS = ("deviation", "atac")
KINDS = ("train", "plain_train", "infer", "plain_infer")
# MVTec AD over its 15 classes: 3629 training (normal) and 1725 test images; a general-setting run
# takes 10 anomalies out of the test set. Used when a sweep's dataset is not on disk.
ASSUMED_TEST_IMAGES = round(1725 / 15) - 10
ASSUMED_TRAIN_IMAGES = round(3629 / 15) + 10


# ----------------------------------------------------------------------------------------------
# arguments, device, flags

class _Help(argparse.HelpFormatter):
    """Shows a default unless it is None, False or already said in the help text."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "default" in h or action.default in (None, False, argparse.SUPPRESS):
            return h
        d = " ".join(action.default) if isinstance(action.default, list) else action.default
        return f"{h} (default: {d})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/speed.py",
        description="Time each method's training step and inference against the plain backbone "
                    "(forward+backward and forward) on the same fixed batch, interleaved; report "
                    "images/s, train_ratio, infer_ratio and peak memory; estimate the cost of the "
                    "paper_runs/ sweeps on this machine. Weights are random by default "
                    "(--weights none): timing does not depend on their values.",
        formatter_class=_Help)
    p.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES),
                   choices=["mobilenet_v2", "resnet50", "resnet18"], metavar="NAME",
                   help="backbones (mobilenet_v2, resnet50, resnet18)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=SINGLE_STAGE,
                   metavar="NAME", help=f"single-stage recipes ({', '.join(SINGLE_STAGE)})")
    p.add_argument("--image-size", type=int, default=224, help="pixels (square)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size of every measurement (default: 16 on CPU, 48 on CUDA)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--iters", type=int, default=10, help="timed iterations (the median is reported)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (torch.set_num_threads); default: torch's own")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast around the forward passes and losses (CUDA: where the GPU "
                        "supports bf16; CPU: CPU bf16 autocast)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the method model and the plain backbone (compilation "
                        "happens in the warm-up iterations)")
    p.add_argument("--weights", default="none",
                   help="backbone weights: none (random initialisation, fine for timing; the "
                        "default), imagenet, or a state-dict file")
    p.add_argument("--random", action="store_true",
                   help="random images instead of a real pre-processed batch (synthetic 'weave' "
                        "through atac's data road: load_run_data + BalancedBatches, CutMix included)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch and the initialisation")
    p.add_argument("--zoom", choices=["all", "model"], default="all",
                   help="fixed-batch blocks of a zoom recipe: all (the worst case: every image of "
                        "the batch goes through the crop pass, as if every one were zoomed) or model "
                        "(the model's own zoom decisions on the batch); the record gives the fraction "
                        "zoomed either way")
    p.add_argument("--full-run", metavar="DATA_ROOT", default=None,
                   help="also time one full atac.run.run of the cpu preset (ATAC-Net, "
                        "mobilenet_v2, MVTec AD grid, 10 shots, seed 0; ImageNet weights when "
                        "cached, else none) on the data under DATA_ROOT")
    p.add_argument("--data-root", default=None,
                   help="where sweep datasets are looked for to count test images "
                        "(default: --full-run's DATA_ROOT, else $ATAC_DATA_ROOT)")
    p.add_argument("--sweeps", nargs="*", default=None, metavar="YAML",
                   help="sweep files to estimate (default: paper_runs/*.yaml); '--sweeps none' "
                        "(or '--sweeps' alone): no estimate")
    p.add_argument("--checkpoint", metavar="MODEL_PT", default=None,
                   help="also time a trained model.pt (written by `atac train`) on its run's own "
                        "test images against the plain backbone: the zoom decisions are the "
                        "model's own; the dataset is the checkpoint's (its data_root, or "
                        "--data-root, or $ATAC_DATA_ROOT)")
    p.add_argument("--checkpoint-only", action="store_true",
                   help="with --checkpoint: time only the checkpoint on its test set (no "
                        "fixed-batch blocks, no sweep estimate)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="where to write the JSON (default: benchmarks/results/speed-<device>-<date>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    for name in ("image_size", "iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.batch is not None and args.batch < 2:
        p.error("--batch must be >= 2 (a balanced batch holds normals and anomalies)")
    if args.image_size < 32:
        p.error("--image-size must be >= 32")
    if args.sweeps is not None and [s.lower() for s in args.sweeps] == ["none"]:
        args.sweeps = []
    if args.checkpoint_only and not args.checkpoint:
        p.error("--checkpoint-only needs --checkpoint MODEL_PT")
    if args.checkpoint_only:
        args.sweeps = []
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def amp_setting(args, device) -> tuple[bool, str]:
    """(autocast on?, what the record says)."""
    if not args.amp:
        return False, "off"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, "bf16 autocast (cuda)"
        return False, "requested, but this GPU has no bf16: off"
    return True, "bf16 autocast (cpu)"


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# the fixed batch

def make_batch(args, cfg: RunConfig, device: torch.device, n_ref: int):
    """One training batch (x float (B, 3, S, S) in [0, 1], y (B,), slots (B,), ref or None) and
    the uint8 normals it came from, plus a description of the data."""
    from atac.train import Batch, BalancedBatches

    gen = torch.Generator().manual_seed(args.seed)
    if args.random:
        B, S = cfg.batch_size, cfg.image_size
        n_norm = B // 2
        normals = (torch.rand(max(n_norm, n_ref, 8), 3, S, S, generator=gen) * 255).to(torch.uint8)
        x = torch.rand(B, 3, S, S, generator=gen)
        y = torch.cat([torch.zeros(n_norm), torch.ones(B - n_norm)])
        slots = torch.cat([torch.zeros(n_norm, dtype=torch.long), torch.ones(B - n_norm, dtype=torch.long)])
        ref = torch.rand(n_ref, 3, S, S, generator=gen) if n_ref else None
        batch = Batch(x.to(device), y.to(device), slots.to(device), None if ref is None else ref.to(device))
        return batch, normals, "random images (torch.rand), half labelled anomalous"
    from atac.run import load_run_data

    data = load_run_data(cfg, progress=False)
    batches = BalancedBatches(data.train_normal.to(device), data.train_anomalous.to(device), cfg, gen,
                              n_ref=n_ref)
    return (batches.next(), data.train_normal,
            f"synthetic '{cfg.category}' (atac.data.synth) through load_run_data + BalancedBatches "
            f"(CLAHE, {cfg.image_size} px, CutMix pseudo-anomalies), one fixed batch")


class Plain(nn.Module):
    """The plain backbone: the same normalisation, then ``build_backbone(...).features``."""

    def __init__(self, backbone: str, weights: str, normalization: str):
        super().__init__()
        mean, std = NORMALIZATIONS[normalization]
        self.normalize = Normalize(mean, std)
        self.features = build_backbone(backbone, weights).features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))


# ----------------------------------------------------------------------------------------------
# one (backbone, method) block

def bench_pair(args, backbone: str, method: str, device: torch.device, use_amp: bool) -> dict:
    """Time train / plain_train / infer / plain_infer, interleaved; medians, ratios, memory."""
    from atac.train import Batch, make_loss

    cfg = RunConfig(dataset="synthetic", category="weave", method=method, backbone=backbone,
                    weights=args.weights, image_size=args.image_size, batch_size=args.batch,
                    seed=args.seed, device=str(device)).validate()
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    weights_source = model.weights_source
    torch.manual_seed(args.seed)
    plain = Plain(backbone, args.weights, cfg.normalization)
    n_ref = model.batch_reference_size
    batch, normals, data_desc = make_batch(args, cfg, device, n_ref)
    if hasattr(model, "set_reference"):  # DRA: its fixed test reference set, as atac.run.run does
        model.set_reference(normals)
    zooms = get_method(method).zoom and hasattr(model, "crop_full_fraction")
    if zooms and args.zoom == "all":
        # every non-empty crop box counts as a zoom (attention_boxes: area < full_fraction * H * W):
        # every image goes through the crop pass, whatever a crop pass skips for unzoomed images
        model.crop_full_fraction = math.inf
    # as atac.train.fit / atac.evaluate.predict: channels-last model and input (MEMORY_FORMAT)
    model.to(device, memory_format=torch.channels_last)
    plain.to(device, memory_format=torch.channels_last)
    if args.compile:
        model.compile()
        plain.compile()
    x = batch.x.contiguous(memory_format=torch.channels_last)
    batch = Batch(x, batch.y, batch.slots, batch.ref)  # the layout fit's step converts to: no copy per step
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg, torch.Generator().manual_seed(args.seed + 1))
    dtype = torch.bfloat16

    def autocast():
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def train_step():
        model.train()
        with autocast():
            loss, _ = model.training_loss(batch, loss_fn)  # as fit does
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode(), autocast():
            model(x)

    def plain_train():
        plain.train()
        plain.zero_grad(set_to_none=True)
        with autocast():
            loss = plain(x).float().mean()
        loss.backward()

    def plain_infer():
        plain.eval()
        with torch.inference_mode(), autocast():
            plain(x)

    fns: dict[str, Callable[[], None]] = {"train": train_step, "plain_train": plain_train,
                                          "infer": infer, "plain_infer": plain_infer}
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    mem: dict[str, int] = {k: 0 for k in KINDS}
    t_block = time.perf_counter()
    for it in range(args.warmup + args.iters):
        # rotate the order every iteration: no kind always runs right after another
        order = KINDS[it % 4:] + KINDS[:it % 4]
        for kind in order:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            fns[kind]()
            sync(device)
            dt = time.perf_counter() - t0
            if it >= args.warmup:
                times[kind].append(dt)
                if device.type == "cuda":
                    mem[kind] = max(mem[kind], torch.cuda.max_memory_allocated(device))
    block_seconds = time.perf_counter() - t_block
    zoomed_fraction = None
    if zooms:  # the share of the batch the timed model zoomed (eval mode, as in infer)
        model.eval()
        with torch.inference_mode(), autocast():
            z = model(x).zoom
        zoomed_fraction = None if z is None else float(z.float().mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    B = cfg.batch_size
    row: dict[str, Any] = {
        "backbone": backbone, "method": method, "recipe_step": get_method(method).step,
        "zoom": get_method(method).zoom, "attention": get_method(method).attention,
        "weights_source": weights_source,
        "train_images_per_s": B / med["train"], "infer_images_per_s": B / med["infer"],
        "plain_train_images_per_s": B / med["plain_train"],
        "plain_infer_images_per_s": B / med["plain_infer"],
        "train_ratio": med["train"] / med["plain_train"],
        "infer_ratio": med["infer"] / med["plain_infer"],
        "median_seconds": med,
        # the same ratios read iteration by iteration (each kind timed next to its plain
        # counterpart, so slow drifts of the machine cancel): their median and a bootstrap 95%
        # interval of that median, to tell a real gap to a goal from this machine's noise
        "paired_ratios": {name: paired_ratio(times[a], times[b], seed=args.seed)
                          for name, a, b in (("train", "train", "plain_train"), ("infer", "infer", "plain_infer"))},
        "min_seconds": {k: min(v) for k, v in times.items()},
        "max_seconds": {k: max(v) for k, v in times.items()},
        "seconds": times,
        "block_seconds": block_seconds,
        "data": data_desc,
        "zoom_mode": (args.zoom if zooms else None),
        "zoomed_fraction": zoomed_fraction,
    }
    if device.type == "cuda":
        row["peak_memory_mib"] = {k: v / 2**20 for k, v in mem.items()}
        row["peak_memory_kind"] = "torch.cuda.max_memory_allocated, per measurement (max over iterations)"
    else:
        row["peak_memory_mib"] = {"process": _peak_rss_mib()}
        row["peak_memory_kind"] = ("process peak RSS (resource.getrusage ru_maxrss) after this block; "
                                   "monotonic: the peak of the whole process so far")
    return row


def paired_ratio(num: list[float], den: list[float], seed: int = 0, resamples: int = 2000) -> dict:
    """Per-iteration ratios ``num[i] / den[i]``: their median and a percentile-bootstrap 95%
    interval of the median (``resamples`` resamples, seeded)."""
    import random

    r = [a / b for a, b in zip(num, den)]
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(r, k=len(r))) for _ in range(resamples))
    return {"median": statistics.median(r), "ci95": [meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]],
            "n": len(r), "ratios": r}


def _peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------------------------
# a trained checkpoint on its own test set

def bench_checkpoint(args, device: torch.device, use_amp: bool) -> dict:
    """Time a trained ``model.pt`` on its run's test images against the plain backbone.

    The model (its config and weights from the checkpoint, as ``atac evaluate`` loads it) scores
    the whole test set in ``eval_batch_size`` batches, as :func:`atac.evaluate.predict` does (eval
    mode, inference mode, channels-last; the images on the device as floats before timing, for
    both); the plain backbone (the same ``features``, the checkpoint's backbone weights) does the
    same passes. One iteration = one pass over the test set by each, in rotating order; ratios are
    paired per iteration. The zoom decisions are the trained model's own (never forced).

    Raises:
        SystemExit: not a checkpoint written by ``atac train``, or of a recipe this cannot time
            (two-stage gradcam_zoom, dra).
    """
    from atac.evaluate import image_metrics
    from atac.run import load_run_data

    path = Path(args.checkpoint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        d = dict(state["config"])
        weights = state["model"]
    except Exception as exc:
        raise SystemExit(f"--checkpoint {path}: not a model.pt written by `atac train` ({exc})") from exc
    recipe = get_method(d.get("method", "atac"))
    if recipe.two_stage or recipe.head == "dra":
        raise SystemExit(f"--checkpoint {path}: method {recipe.name} is not timed here (single-network "
                         "ATACNet recipes only: atac, deviation, cutmix_bce, weighted_ce)")
    d.update({"weights": "none", "device": str(device)})  # the checkpoint holds every weight
    if args.data_root:
        d["data_root"] = args.data_root
    cfg = RunConfig.from_dict(d).validate()
    model = build_model(cfg)
    model.load_state_dict(weights)
    plain = Plain(cfg.backbone, "none", cfg.normalization)
    plain.features.load_state_dict(model.backbone.state_dict())
    data = load_run_data(cfg, progress=False)
    labels = data.test_labels
    bs = cfg.eval_batch_size
    model.to(device, memory_format=torch.channels_last).eval()
    plain.to(device, memory_format=torch.channels_last).eval()
    if args.compile:
        model.compile()
        plain.compile()
    xs = [data.test_images[i:i + bs].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
          for i in range(0, len(data.test_images), bs)]

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def infer():
        with torch.inference_mode(), autocast():
            return [model(x) for x in xs]

    def plain_infer():
        with torch.inference_mode(), autocast():
            for x in xs:
                plain(x)

    outs = infer()  # untimed: the model's zoom decisions and scores on this test set
    scores = torch.cat([o.score.float().cpu() for o in outs])
    zoom = None if outs[0].zoom is None else torch.cat([o.zoom.cpu() for o in outs])
    del outs
    fns = {"infer": infer, "plain_infer": plain_infer}
    kinds = ("infer", "plain_infer")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for it in range(args.warmup + args.iters):
        for kind in kinds[it % 2:] + kinds[:it % 2]:
            sync(device)
            t0 = time.perf_counter()
            fns[kind]()
            sync(device)
            if it >= args.warmup:
                times[kind].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(labels)
    lab = labels.bool()
    out: dict[str, Any] = {
        "checkpoint": str(path), "method": cfg.method, "backbone": cfg.backbone,
        "dataset": cfg.dataset, "category": data.index.category, "data_folder": str(data.index.root),
        "shots": cfg.shots, "seed": cfg.seed, "image_size": cfg.image_size, "eval_batch_size": bs,
        "n_test": n, "n_test_normal": int((~lab).sum()), "n_test_anomalous": int(lab.sum()),
        "zoomed": None if zoom is None else int(zoom.sum()),
        "zoom_rate": None if zoom is None else float(zoom.float().mean()),
        "zoom_rate_normal": None if zoom is None else float(zoom[~lab].float().mean()),
        "zoom_rate_anomalous": None if zoom is None else float(zoom[lab].float().mean()),
        "image_auroc": image_metrics(labels.numpy(), scores.numpy())["image_auroc"] if 0 < lab.sum() < n else None,
        "infer_images_per_s": n / med["infer"], "plain_infer_images_per_s": n / med["plain_infer"],
        "infer_ratio": med["infer"] / med["plain_infer"],
        "paired_ratios": {"infer": paired_ratio(times["infer"], times["plain_infer"], seed=args.seed)},
        "median_seconds": med, "seconds": times, "warmup": args.warmup, "iters": args.iters,
        "timed": "one pass over the test set per iteration: the model as atac.evaluate.predict runs "
                 "it (eval, inference mode, channels-last) vs the plain backbone on the same float "
                 "batches already on the device",
    }
    metrics_json = path.with_name("metrics.json")  # the run's own record, when beside the checkpoint
    if metrics_json.is_file():
        try:
            rec = json.loads(metrics_json.read_text())
            out["recorded"] = {k: rec.get(k) for k in ("image_auroc", "zoom_rate_normal",
                                                       "zoom_rate_anomalous", "device", "precision")}
        except ValueError:
            pass
    return out


# ----------------------------------------------------------------------------------------------
# extrapolation to the sweeps

def _backbone_gflops(name: str) -> float | None:
    import torchvision

    enums = {"resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
             "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
             "mobilenet_v2": torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1}
    try:
        return float(enums[name].meta["_ops"])
    except (KeyError, AttributeError):
        return None


class CostModel:
    """Per-image, per-pixel costs from the measured (backbone, method) pairs, with fallbacks.

    ``train`` is seconds of training step per image per pixel, ``infer`` seconds of inference per
    image per pixel; scaling is linear in batch size and in pixels (a rough rule, stated).
    """

    SINGLE_PASS = ("deviation", "cutmix_bce", "weighted_ce")

    def __init__(self, rows: list[dict], batch: int, size: int):
        self.cost: dict[tuple[str, str], tuple[float, float]] = {}
        px = batch * size * size
        for r in rows:
            m = r["median_seconds"]
            self.cost[(r["backbone"], r["method"])] = (m["train"] / px, m["infer"] / px)
        self.notes: set[str] = set()

    def _backbone(self, backbone: str, method: str) -> tuple[float, float] | None:
        """Cost of ``method`` on ``backbone``: measured, else another measured backbone scaled."""
        if (backbone, method) in self.cost:
            return self.cost[(backbone, method)]
        want = _backbone_gflops(backbone)
        others = [b for (b, m) in self.cost if m == method]
        if not others or want is None:
            return None
        # nearest measured backbone by GFLOPS (torchvision's published figure), scaled by the ratio
        b = min(others, key=lambda o: abs(math.log((_backbone_gflops(o) or want) / want)))
        f = want / (_backbone_gflops(b) or want)
        self.notes.add(f"{method} on {backbone}: measured on {b} x {f:.2f} (torchvision GFLOPS ratio)")
        t, i = self.cost[(b, method)]
        return t * f, i * f

    def single(self, backbone: str, method: str) -> tuple[float, float]:
        """(train, infer) per image-pixel of a single-stage method: measured, else the nearest
        measured method on the same backbone (scaled by backbone passes), else the same on the
        nearest measured backbone (scaled by GFLOPS)."""
        # (method to borrow from, factor, why); the first that is measured wins
        single = [(m, 1.0, "same single backbone pass") for m in self.SINGLE_PASS if m != method]
        if method in self.SINGLE_PASS:
            candidates = [(method, 1.0, "")] + single + [
                ("atac", 0.5, "one backbone pass instead of two")]
        elif method == "atac":
            candidates = [(method, 1.0, "")] + [
                (m, 2.0, "two backbone passes; self-attention block not counted") for m, _, _ in single]
        else:
            candidates = [(method, 1.0, "")]
        for cross in (False, True):
            for other, factor, why in candidates:
                got = self._backbone(backbone, other) if cross else self.cost.get((backbone, other))
                if got is None:
                    continue
                if other != method:
                    self.notes.add(f"{method} on {backbone}: measured {other} x {factor:g} ({why})")
                return got[0] * factor, got[1] * factor
        raise LookupError(f"no measurement to estimate {method} on {backbone} from")

    def run_seconds(self, cfg: RunConfig, n_test: int, n_train: int) -> dict:
        """Estimated train and eval seconds of one run (preprocessing not counted)."""
        recipe = get_method(cfg.method)
        steps = cfg.epochs * cfg.steps_per_epoch
        px = cfg.image_size ** 2
        if recipe.two_stage:  # gradcam_zoom: two deviation trainings + Grad-CAM + two-network test
            t, i = self.single(cfg.backbone, "deviation")
            self.notes.add("gradcam_zoom: 2 x deviation training; Grad-CAM of each training and test "
                           "image ~ one deviation training step per image; test = stage 1 + stage 2 "
                           "inference")
            train = 2 * steps * cfg.batch_size * px * t + n_train * px * t
            evals = n_test * px * (2 * i + t)
        elif recipe.head == "dra":
            t, i = self.single(cfg.backbone, "deviation")
            pyr = sum(4.0 ** -s for s in range(cfg.dra_scales))
            self.notes.add(f"dra: deviation x pyramid pixels ({pyr:.2f}) x (batch + {cfg.dra_ref_size} "
                           "reference images) / batch")
            train = steps * (cfg.batch_size + cfg.dra_ref_size) * px * pyr * t
            evals = n_test * px * pyr * i * (1 + cfg.dra_ref_size / cfg.eval_batch_size)
        else:
            t, i = self.single(cfg.backbone, cfg.method)
            train = steps * cfg.batch_size * px * t
            evals = n_test * px * i
        return {"train_seconds": train, "eval_seconds": evals, "total_seconds": train + evals}


def dataset_sizes(cfg: RunConfig, data_root: str | None, cache: dict) -> tuple[int, int, str]:
    """(test images, training images, where the numbers come from) of one run's split."""
    from atac.data.datasets import load_index
    from atac.data.splits import make_split

    key = (cfg.dataset, cfg.category, cfg.setting, cfg.known_type, cfg.shots, cfg.mt_test_normals,
           cfg.mt_split_seed, data_root or cfg.data_root)
    if key not in cache:
        try:
            if cfg.dataset != "synthetic" and not (data_root or cfg.data_root or os.environ.get("ATAC_DATA_ROOT")):
                raise LookupError("no data root")
            index = load_index(cfg.dataset, cfg.category, data_root or cfg.data_root,
                               cfg.mt_test_normals, cfg.mt_split_seed)
            split = make_split(index, cfg.shots, cfg.seed, cfg.setting, cfg.known_type)
            cache[key] = (len(split.test), len(split.train_normal) + len(split.train_anomalous), "on disk")
        except Exception:  # not on disk (or unreadable): the stated assumption
            cache[key] = (ASSUMED_TEST_IMAGES, ASSUMED_TRAIN_IMAGES, "assumed")
    return cache[key]


def extrapolate(args, rows: list[dict], data_root: str | None) -> list[dict]:
    from atac.sweep import load_sweep, recorded

    files = args.sweeps if args.sweeps is not None else sorted(str(p) for p in (REPO / "paper_runs").glob("*.yaml"))
    model = CostModel(rows, args.batch, args.image_size)
    sizes: dict = {}
    out = []
    for f in files:
        entry: dict[str, Any] = {"file": _rel(Path(f))}
        try:
            sweep = load_sweep(f)
        except ValueError as exc:
            entry["error"] = str(exc)
            out.append(entry)
            continue
        model.notes = set()
        done = recorded(sweep.results) if sweep.results.is_file() else {}
        total = remaining = 0.0
        sources: dict[str, int] = {}
        missing: set[str] = set()
        n_done = n_est = 0
        per_method: dict[str, float] = {}
        for run in sweep.runs:
            n_test, n_train, src = dataset_sizes(run.config, data_root, sizes)
            sources[src] = sources.get(src, 0) + 1
            try:
                s = model.run_seconds(run.config, n_test, n_train)["total_seconds"]
            except LookupError as exc:
                missing.add(str(exc))
                continue
            n_est += 1
            total += s
            key = f"{run.config.method}/{run.config.backbone}"
            per_method[key] = per_method.get(key, 0.0) + s / 3600
            if run.run_id in done:
                n_done += 1
            else:
                remaining += s
        entry.update({"name": sweep.name, "runs": len(sweep.runs), "recorded": n_done,
                      "runs_estimated": n_est,
                      "estimated_hours": total / 3600, "estimated_hours_remaining": remaining / 3600,
                      "estimated_hours_by_method": per_method,
                      "test_set_sizes": sources, "scaling": sorted(model.notes),
                      "not_estimated": sorted(missing)})
        out.append(entry)
    return out


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------------------------
# one full run

def full_run(args, device: torch.device, rows: list[dict]) -> dict:
    from atac.run import run as train_run
    from atac.weights import offline_path
    import torchvision

    enum = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    cached = (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)).is_file()
    weights = "imagenet" if cached or offline_path().is_file() else "none"
    cfg = RunConfig.from_dict({**preset("cpu").to_dict(), "dataset": "mvtec_ad", "category": "grid",
                               "method": "atac", "backbone": "mobilenet_v2", "shots": 10, "seed": 0,
                               "weights": weights, "data_root": args.full_run,
                               "device": str(device)}).validate()
    with tempfile.TemporaryDirectory(prefix="atac-speed-") as tmp:
        t0 = time.perf_counter()
        res = train_run(cfg, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
    rec = res.metrics
    out = {"config": {k: cfg.to_dict()[k] for k in ("preset", "dataset", "category", "method", "backbone",
                                                     "weights", "shots", "seed", "epochs",
                                                     "steps_per_epoch", "batch_size", "image_size")},
           "weights": weights, "weights_source": rec.get("weights_source"),
           "wall_seconds": wall, "train_seconds": rec.get("train_seconds"),
           "eval_seconds": rec.get("eval_seconds"), "prep_seconds": rec.get("prep_seconds"),
           "image_auroc": rec.get("image_auroc"), "n_test": rec["n_test_normal"] + rec["n_test_anomalous"]}
    try:
        cm = CostModel(rows, args.batch, args.image_size)
        est = cm.run_seconds(cfg, out["n_test"], rec["n_train_normal"] + rec["n_train_anomalous"])
        out["estimate"] = {**est, "scaling": sorted(cm.notes),
                           "estimate_over_wall": est["total_seconds"] / wall,
                           "estimate_over_train_plus_eval": est["total_seconds"] / (
                               (rec.get("train_seconds") or 0) + (rec.get("eval_seconds") or 0) or math.nan)}
    except LookupError as exc:
        out["estimate"] = {"error": str(exc)}
    return out


# ----------------------------------------------------------------------------------------------
# output

def _fmt(v, spec=".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_report(result: dict) -> None:
    s = result["settings"]
    print(f"atac speed benchmark: {s['device']} ({s['device_name']}), {s['image_size']} px, batch "
          f"{s['batch']}, {s['iters']} timed iterations after {s['warmup']} warm-up (medians), "
          f"threads {s['torch_threads']}, amp {s['amp']}, compile {s['compile']}, weights "
          f"{s['weights']}, data: {'random' if s['random'] else 'synthetic (atac data road)'}, "
          f"allocator: {s.get('cpu_allocator', 'system')}")
    mem_label = "peak MiB (cuda alloc, train)" if s["device"] == "cuda" else "peak RSS MiB (process)"
    head = ["backbone", "method", "train img/s", "infer img/s", "plain fwd+bwd img/s",
            "plain fwd img/s", "train_ratio", "infer_ratio", mem_label]
    lines = []
    for bb, per in result["results"].items():
        for m, r in per.items():
            mem = r["peak_memory_mib"].get("train", r["peak_memory_mib"].get("process"))
            lines.append([bb, m, _fmt(r["train_images_per_s"]), _fmt(r["infer_images_per_s"]),
                          _fmt(r["plain_train_images_per_s"]), _fmt(r["plain_infer_images_per_s"]),
                          _fmt(r["train_ratio"], ".2f"), _fmt(r["infer_ratio"], ".2f"), _fmt(mem, ".0f")])
    _table(head, lines)
    print("per-iteration ratios (each timed next to its plain counterpart): median [bootstrap 95% interval]")
    for bb, per in result["results"].items():
        for m, r in per.items():
            pr = r.get("paired_ratios")
            if pr:
                print(f"  {bb} {m}: " + ", ".join(
                    f"{k} {v['median']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]" for k, v in pr.items()))
    if result.get("sweeps"):
        print("\nestimated cost of the sweeps on this machine (one process, these settings; "
              "preprocessing not counted):")
        rows = []
        for e in result["sweeps"]:
            if "error" in e:
                rows.append([e["file"], "-", "-", "-", "-", "error: " + e["error"][:60]])
                continue
            src = ", ".join(f"{n} runs {k}" for k, n in e["test_set_sizes"].items())
            if e["runs_estimated"] < e["runs"]:
                src += f"; only {e['runs_estimated']} of {e['runs']} runs estimated"
            hours = [_fmt(e[k], ".2f") if e["runs_estimated"] else "-"
                     for k in ("estimated_hours", "estimated_hours_remaining")]
            rows.append([e["file"], str(e["runs"]), str(e["recorded"]), *hours, f"test sets: {src}"])
        _table(["sweep", "runs", "recorded", "est. hours", "est. hours left", "notes"], rows)
        notes = sorted({n for e in result["sweeps"] for n in e.get("scaling", []) + e.get("not_estimated", [])})
        for n in notes:
            print(f"  - {n}")
        print(f"  - linear in batch size and in pixels from the measured {s['batch']} x "
              f"{s['image_size']} px figures; evaluation = test images x inference time per image; "
              f"datasets not on disk: assumed {ASSUMED_TEST_IMAGES} test and {ASSUMED_TRAIN_IMAGES} "
              "training images per run (MVTec AD means)")
    ck = result.get("checkpoint")
    if ck:
        pr = ck["paired_ratios"]["infer"]
        zoomed = "-" if ck["zoomed"] is None else (
            f"{ck['zoomed']} of {ck['n_test']} zoomed (normal {ck['zoom_rate_normal']:.2f}, anomalous "
            f"{ck['zoom_rate_anomalous']:.2f})")
        print(f"\ncheckpoint {ck['checkpoint']} ({ck['method']}, {ck['backbone']}, {ck['dataset']}/"
              f"{ck['category']}, {ck['n_test']} test images, batch {ck['eval_batch_size']}): {zoomed}; "
              f"infer_ratio {ck['infer_ratio']:.2f}, per pass {pr['median']:.2f} "
              f"[{pr['ci95'][0]:.2f}, {pr['ci95'][1]:.2f}]; {ck['infer_images_per_s']:.1f} img/s vs "
              f"plain {ck['plain_infer_images_per_s']:.1f}")
        fb = ck.get("fixed_batch")
        if fb:
            print(f"  fixed batch (zoom {fb['zoom_mode']}, zoomed fraction {_fmt(fb['zoomed_fraction'], '.2f')}): "
                  f"infer_ratio {fb['infer_ratio']:.2f}")
    fr = result.get("full_run")
    if fr:
        print(f"\nfull run (cpu preset, ATAC-Net, mobilenet_v2, grid, seed 0, weights {fr['weights']}): "
              f"wall {fr['wall_seconds']:.1f} s, train {_fmt(fr['train_seconds'])} s, eval "
              f"{_fmt(fr['eval_seconds'])} s, prep {_fmt(fr['prep_seconds'])} s")
        est = fr.get("estimate", {})
        if "total_seconds" in est:
            print(f"  estimate for this run: {est['total_seconds']:.1f} s (train {est['train_seconds']:.1f}, "
                  f"eval {est['eval_seconds']:.1f}) = {est['estimate_over_wall']:.2f} x the measured wall "
                  f"time, {est['estimate_over_train_plus_eval']:.2f} x its train + eval seconds")
        elif est:
            print(f"  no estimate: {est['error']}")


def _table(head: list[str], rows: list[list[str]]) -> None:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the tables; write and return the JSON record."""
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # as atac.train.fit and atac.evaluate.predict do on CPU, for the method and the plain backbone
    # alike (atac.memory; ATAC_CPU_MALLOC=system measures glibc's defaults)
    allocator = keep_freed_memory() if device.type == "cpu" else "device (CUDA caching allocator)"
    if args.batch is None:
        args.batch = 48 if device.type == "cuda" else 16
    use_amp, amp_desc = amp_setting(args, device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    started = _dt.datetime.now(_dt.timezone.utc)

    results: dict[str, dict[str, dict]] = {}
    rows = []
    for bb in ([] if args.checkpoint_only else args.backbones):
        for m in args.methods:
            log(args, f"[speed] {bb} / {m}: {args.warmup} warm-up + {args.iters} timed iterations ...")
            r = bench_pair(args, bb, m, device, use_amp)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the block's models are gone: start the next one clean
            log(args, f"[speed]   train_ratio {r['train_ratio']:.2f}, infer_ratio {r['infer_ratio']:.2f} "
                      f"({r['block_seconds']:.1f} s)")
            results.setdefault(bb, {})[m] = r
            rows.append(r)

    result: dict[str, Any] = {
        "benchmark": "atac speed vs plain backbone",
        "format_version": 1,
        "started": started.isoformat(timespec="seconds"),
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "device": device.type, "device_name": device_name, "image_size": args.image_size,
            "batch": args.batch, "warmup": args.warmup, "iters": args.iters,
            "backbones": [] if args.checkpoint_only else args.backbones,
            "methods": [] if args.checkpoint_only else args.methods, "weights": args.weights,
            "zoom": args.zoom, "checkpoint": args.checkpoint,
            "random": args.random, "seed": args.seed, "amp": amp_desc, "amp_requested": args.amp,
            "compile": args.compile, "threads_requested": args.threads,
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "memory_format": "channels_last", "statistic": "median", "cpu_allocator": allocator,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "train_step": "forward (zoom pass included) + recipe loss + backward + clip_grad_norm_ + Adam step",
            "plain_train_step": "forward + backward, loss = mean of the feature map, no optimiser step",
            "inference": "eval mode, torch.inference_mode, model on a float channels-last batch",
        },
        "machine": {**machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device_name": device_name,
                    "cuda": torch.version.cuda if device.type == "cuda" else None},
        "packages": package_versions(),
        "git_commit": git_commit(REPO),
        "results": results,
    }
    data_root = args.data_root or args.full_run or os.environ.get("ATAC_DATA_ROOT") or None
    if args.checkpoint:
        log(args, f"[speed] checkpoint {args.checkpoint} on its test set: {args.warmup} warm-up + "
                  f"{args.iters} timed passes ...")
        ck = bench_checkpoint(args, device, use_amp)
        # the fixed-batch figure of the same backbone and method, when measured in this run
        worst = results.get(ck["backbone"], {}).get(ck["method"])
        if worst is not None:
            ck["fixed_batch"] = {"zoom_mode": worst["zoom_mode"], "zoomed_fraction": worst["zoomed_fraction"],
                                 "infer_ratio": worst["infer_ratio"],
                                 "paired_infer_ratio": {k: worst["paired_ratios"]["infer"][k]
                                                        for k in ("median", "ci95", "n")}}
        log(args, f"[speed]   test set: infer_ratio {ck['infer_ratio']:.2f}, zoomed {ck['zoomed']} of "
                  f"{ck['n_test']}")
        result["checkpoint"] = ck
    if args.full_run:
        log(args, f"[speed] full run (cpu preset) on {args.full_run} ...")
        result["full_run"] = full_run(args, device, rows)
    if args.sweeps is None or args.sweeps:
        result["sweeps"] = extrapolate(args, rows, data_root)
        result["sweep_assumptions"] = {
            "scaling": "linear in batch size and in pixels from the measured figures",
            "evaluation": "test images x inference seconds per image",
            "assumed_test_images": ASSUMED_TEST_IMAGES, "assumed_train_images": ASSUMED_TRAIN_IMAGES,
            "not_counted": "pre-processing (cached and shared by a sweep), process start, checkpoints"}
    result["seconds"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()

    path = Path(args.json) if args.json else (
        REPO / "benchmarks" / "results" / f"speed-{device.type}-{started.strftime('%Y%m%d')}.json")
    write_json(path, result)
    result["json"] = str(path)
    print_report(result)
    print(f"\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
