#!/usr/bin/env bash
# The GPU check of issue 17 in one call (benchmarks/README.md, "The GPU check"):
#
#   bash benchmarks/gpu_check.sh [gpu_check.py run flags]     # e.g. --out "$OUT"
#
# Runs benchmarks/gpu_check.py run from the repository root with the machine's python3 (or
# $PYTHON), this checkout first on PYTHONPATH (atac is not installed there), and output unbuffered.
# The pack (.gpucheck/, made here by `python benchmarks/gpu_check.py pack`) must travel with the
# call: name it in the device tool's carry. The JSON is written to $OUT/gpu_check.json whatever
# the steps do; this script's exit status is the driver's (0 unless the driver itself broke).
set -u
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py run "$@"
