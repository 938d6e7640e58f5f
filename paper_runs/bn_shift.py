"""How far each class's training normals sit from the ImageNet running statistics of MobileNetV2's
BatchNorm layers: what the zoom study's frozen-BatchNorm arms (D, E, F) normalise with.

    ATAC_DATA_ROOT=DIR OMP_NUM_THREADS=1 python paper_runs/bn_shift.py

writes ``paper_runs/results/bn-shift-mobilenet_v2-imagenet.json``: per class (grid, metal_nut,
Magnetic Tile; seed 0's training normals of the zoom study's split, pre-processed as its runs read
them), per BatchNorm layer, :func:`atac.diagnostics.batchnorm_input_shift` of the network as built
before training, with the commit, machine and data folders. Nothing is trained.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from atac.config import merge
from atac.diagnostics import batchnorm_input_shift
from atac.models import build_model
from atac.results import atomic_write_text, git_commit, machine, package_versions
from atac.run import load_run_data

CLASSES = (("mvtec_ad", "grid"), ("mvtec_ad", "metal_nut"), ("magnetic_tile", "magnetic_tile"))
OUT = Path(__file__).resolve().parent / "results" / "bn-shift-mobilenet_v2-imagenet.json"


def main() -> int:
    torch.set_num_threads(1)
    classes = []
    for dataset, category in CLASSES:
        cfg = merge("cpu", {"backbone": "mobilenet_v2", "weights": "imagenet", "image_size": 224,
                            "shots": 10, "setting": "general", "seed": 0, "method": "deviation",
                            "dataset": dataset, "category": category}).validate()
        data = load_run_data(cfg, progress=False)
        model = build_model(cfg)
        classes.append({"dataset": dataset, "category": category, "data_folder": str(data.index.root),
                        "n_images": len(data.train_normal),
                        "layers": batchnorm_input_shift(model, data.train_normal)})
        print(f"{category}: {len(data.train_normal)} training normals", file=sys.stderr)
    record = {"what": "batchnorm_input_shift of ImageNet MobileNetV2 (before training) on each class's "
                      "training normals (seed 0, ten-shot general split, the cpu preset's pre-processing)",
              "weights_source": model.weights_source, "git_commit": git_commit(), "machine": machine(),
              "packages": package_versions(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "classes": classes}
    atomic_write_text(OUT, json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
