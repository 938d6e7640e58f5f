#!/usr/bin/env bash
# The first real-data runs (issue "ATAC-Net end to end on real images"): ATAC-Net with ImageNet
# MobileNetV2 on MVTec AD grid and Magnetic Tile, ten anomalies, the `cpu` budget preset, seeds 0-2,
# one after another on two CPU cores. Each run's metrics.json becomes one line of
# paper_runs/results/first-runs-cpu.jsonl (collected by the last command).
#
#   ATAC_DATA_ROOT=../shared/data bash paper_runs/first-runs-cpu.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/first-runs-cpu}
root=${ATAC_DATA_ROOT:?set ATAC_DATA_ROOT to the folder holding mvtec_ad/grid and magnetic_tile}
for spec in "mvtec_ad 0" "magnetic_tile 0" "mvtec_ad 1" "mvtec_ad 2" "magnetic_tile 1" "magnetic_tile 2"; do
  set -- $spec
  /usr/bin/time -f "WALL $1 seed $2: %e s" atac train --dataset "$1" --category grid --data-root "$root" \
    `# (--category is ignored by magnetic_tile)` \
    --method atac --backbone mobilenet_v2 --weights imagenet --shots 10 --seed "$2" --preset cpu \
    --out "$out/$1-atac-s$2" --quiet
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
Path("paper_runs/results").mkdir(parents=True, exist_ok=True)
recs = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/metrics.json"))]
Path("paper_runs/results/first-runs-cpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
PY
