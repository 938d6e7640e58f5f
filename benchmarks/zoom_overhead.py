#!/usr/bin/env python
"""Where ATAC-Net's cost beyond two backbone passes goes, on CPU.

Two measurements (random weights, a random [0, 1] batch, channels-last, as atac.train/evaluate run):

1. ``stages`` — ATAC-Net inference split into the library's own pieces, each timed alone (median
   of ``--iters``): the plain backbone forward (normalisation included), one ``score_pass``
   (backbone + self-attention block + anomaly mapping + top-k; its head = score_pass − backbone),
   ``attention_boxes`` (Algorithm 1's boxes), ``crop_and_resize`` (torchvision ``roi_align``) and,
   for comparison only, the same crops through ``grid_sample`` (not used by atac), and the whole
   ``ATACNet.forward``.
2. ``graphs`` — why :mod:`atac.memory` exists: one plain backbone training pass (forward +
   backward) against two passes held in one autograd graph (ATAC-Net's situation), with their minor
   page faults per step, once with glibc's allocator defaults and once with
   :func:`atac.memory.keep_freed_memory` — each in its own process (the setting is process-wide).

    python benchmarks/zoom_overhead.py --threads 2                    # both, mobilenet_v2, 224 px, batch 16
    python benchmarks/zoom_overhead.py --part stages --backbone resnet50

Prints a table; ``--json PATH`` writes the figures. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atac.config import RunConfig  # noqa: E402
from atac.cropping import attention_boxes, crop_and_resize  # noqa: E402
from atac.memory import keep_freed_memory  # noqa: E402
from atac.models import build_model  # noqa: E402
from atac.results import git_commit  # noqa: E402


def _median_ms(fn, iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _model(backbone: str, size: int, batch: int):
    cfg = RunConfig(dataset="synthetic", category="weave", method="atac", backbone=backbone,
                    weights="none", image_size=size, batch_size=batch, device="cpu").validate()
    torch.manual_seed(0)
    return build_model(cfg).to(memory_format=torch.channels_last)


def grid_sample_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The crops of ``crop_and_resize`` (bilinear, pixel-centre sampling) through ``grid_sample``."""
    B, _, H, W = x.shape
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / W
    theta[:, 0, 2] = (boxes[:, 0] + boxes[:, 2]) / W - 1
    theta[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / H
    theta[:, 1, 2] = (boxes[:, 1] + boxes[:, 3]) / H - 1
    grid = F.affine_grid(theta, (B, 3, H, W), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.inference_mode()
def stages(args) -> dict:
    keep_freed_memory()  # as atac.evaluate.predict does on CPU
    model = _model(args.backbone, args.image_size, args.batch).eval()
    x = torch.rand(args.batch, 3, args.image_size, args.image_size,
                   generator=torch.Generator().manual_seed(0)).contiguous(memory_format=torch.channels_last)
    # boxes of a fixed size, so that every image is really cropped
    g = torch.Generator().manual_seed(1)
    lo = torch.randint(0, args.image_size // 2, (args.batch, 2), generator=g).float()
    boxes = torch.cat([lo, lo + args.image_size // 3], 1)
    zoom = torch.ones(args.batch, dtype=torch.bool)
    _, _, attn = model.score_pass(x)
    ms = {
        "plain backbone forward": _median_ms(lambda: model.backbone(model.normalize(x)), args.iters),
        "score_pass": _median_ms(lambda: model.score_pass(x), args.iters),
        "attention_boxes": _median_ms(lambda: attention_boxes(attn, x.shape[-2:]), args.iters),
        "crop_and_resize (roi_align)": _median_ms(
            lambda: crop_and_resize(x, boxes, zoom).contiguous(memory_format=torch.channels_last), args.iters),
        "grid_sample crop (alternative)": _median_ms(
            lambda: grid_sample_crop(x, boxes).contiguous(memory_format=torch.channels_last), args.iters),
        "ATACNet.forward": _median_ms(lambda: model(x), args.iters),
    }
    ms["head (score_pass - backbone)"] = ms["score_pass"] - ms["plain backbone forward"]
    diff = (crop_and_resize(x, boxes, zoom) - grid_sample_crop(x, boxes)).abs().max().item()
    return {"milliseconds": ms, "grid_sample_max_abs_difference": diff,
            "forward_over_plain": ms["ATACNet.forward"] / ms["plain backbone forward"]}


def _graphs_child(args) -> dict:
    """(in a fresh process) one pass vs two passes in one graph, seconds and minor faults per step."""
    allocator = keep_freed_memory() if os.environ.get("ATAC_CPU_MALLOC") != "system" else "system"
    model = _model(args.backbone, args.image_size, args.batch).train()
    net = torch.nn.Sequential(model.normalize, model.backbone)
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(args.batch, 3, args.image_size, args.image_size, generator=gen)
              .contiguous(memory_format=torch.channels_last) for _ in range(2))

    def one():
        net.zero_grad(set_to_none=True)
        net(x1).mean().backward()

    def two():
        net.zero_grad(set_to_none=True)
        (net(x1).mean() + net(x2).mean()).backward()

    out = {"allocator": allocator}
    for name, fn in (("one_pass", one), ("two_passes_one_graph", two)):
        fn()
        fn()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = {"seconds": statistics.median(times),
                     "minor_faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
                     / args.iters}
    out["ratio"] = out["two_passes_one_graph"]["seconds"] / out["one_pass"]["seconds"]
    return out


def graphs(args) -> dict:
    res = {}
    for mode in ("system", "keep"):
        env = {**os.environ, "ATAC_CPU_MALLOC": "system" if mode == "system" else "keep"}
        cmd = [sys.executable, __file__, "--part", "graphs-child", "--backbone", args.backbone,
               "--image-size", str(args.image_size), "--batch", str(args.batch), "--iters", str(args.iters)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        res[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["all", "stages", "graphs", "graphs-child"], default="all")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10, help="timed repetitions (median reported)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "graphs-child":
        print(json.dumps(_graphs_child(args)))
        return {}
    result = {"command": "python benchmarks/zoom_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "git_commit": git_commit(REPO), "torch_threads": torch.get_num_threads(),
              "backbone": args.backbone, "image_size": args.image_size, "batch": args.batch}
    if args.part in ("all", "stages"):
        result["stages"] = stages(args)
        print(f"ATAC-Net inference by stage ({args.backbone}, {args.image_size} px, batch {args.batch}, "
              f"{torch.get_num_threads()} threads, median of {args.iters}):")
        for name, v in result["stages"]["milliseconds"].items():
            print(f"  {name:32s} {v:8.1f} ms")
        s = result["stages"]
        print(f"  forward / plain backbone forward: {s['forward_over_plain']:.2f}; grid_sample crops "
              f"differ from roi_align's by at most {s['grid_sample_max_abs_difference']:.1e}")
    if args.part in ("all", "graphs"):
        result["graphs"] = graphs(args)
        print("One training pass vs two passes held in one graph (seconds per step, minor page faults):")
        for mode, r in result["graphs"].items():
            print(f"  {r['allocator']:55s} one {r['one_pass']['seconds']:.3f} s "
                  f"({r['one_pass']['minor_faults_per_step']:.0f}), two {r['two_passes_one_graph']['seconds']:.3f} s "
                  f"({r['two_passes_one_graph']['minor_faults_per_step']:.0f}) -> {r['ratio']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"written: {args.json}")
    return result


if __name__ == "__main__":
    main()
