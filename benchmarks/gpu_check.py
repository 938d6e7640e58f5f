#!/usr/bin/env python
"""The GPU check (issue 17): the whole CUDA path in one prepared call of at most 8 minutes.

Two sub-commands:

``pack`` (here, with the data and the network): puts what the GPU machine lacks into one folder of
the checkout (default ``.gpucheck/``, ignored by git) for the device tool to carry:

- ``data/mvtec_ad/<category>/``: the category pre-processed as ``atac`` does it (CLAHE, bicubic
  resize to ``--image-size``), written as PNGs in the MVTec AD layout. Read with ``clahe=false``
  these give exactly the tensors that the full pipeline gives on the originals (checked here, bit
  for bit, before the pack is written): MVTec grid is 155 MB at 1024 px, 12 MB at 224 px;
- ``weights/``: the converted ImageNet MobileNetV2 file of ``atac weights fetch`` and its ``.json``;
- ``wheels/``: the Python packages the GPU image lacks (``grad-cam``, ``ttach``), as wheels;
- ``manifest.json``: the commit, what each part is, checksums and sizes.

``run`` (there; ``benchmarks/gpu_check.sh`` calls it): the steps below, in this order, each in its
own process with its own time limit (a hung or failing step is killed and the next one starts),
under one total budget; ONE JSON file under ``--out`` (``$OUT``) holds every step's status,
seconds, command and figures, rewritten after every step, so it exists whatever happens:

========================== ====================================================================
``wheels``                 pip-install the pack's wheels into a private folder (no network)
``env``                    versions, the GPU (name, memory, capability, bf16), a first CUDA op
``tests``                  pytest on ``--tests`` (default tests/test_gpu_path.py tests/test_cuda.py)
``speed_fp32_eager``       benchmarks/speed.py, both backbones, deviation and atac, float32
``speed_bf16_eager``       the same under bf16 autocast (+ the paper_runs sweep estimates)
``train_atac``             one ``paper``-budget ATAC-Net run, MobileNetV2 ImageNet, grid, 10 shots
``speed_checkpoint``       speed.py --checkpoint: that model on its own test set vs the backbone
``train_deviation``        the same run with DevNet (``--method deviation``)
``speed_<p>_compiled_<b>`` speed.py --compile, for p in bf16, fp32 and b in mobilenet_v2, resnet50
========================== ====================================================================

Every step can be skipped (``--skip NAME``, or ``--only NAME ...``) and given its own limit
(``--budget NAME=SECONDS``); ``--total-budget`` (450 s) bounds them all: a step starts only with
enough of it left, and never runs past it. ``--tiny`` (with ``--device cpu``) is the dry run the
tests make: smoke preset, tiny sizes, a few iterations, the same code path. ``--plan`` prints the
steps' commands and runs nothing. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACK = REPO / ".gpucheck"
JSON_NAME = "gpu_check.json"
LOG_NAME = "gpu_check.log"
# packages of atac's that the GPU image lacks (KINDS.md's list): carried as wheels
DEFAULT_WHEELS = ("grad-cam", "ttach")
COMPILED = tuple(f"speed_{p}_compiled_{b}" for p in ("bf16", "fp32") for b in ("mobilenet_v2", "resnet50"))
STEPS = ("wheels", "env", "tests", "speed_fp32_eager", "speed_bf16_eager", "train_atac",
         "speed_checkpoint", "train_deviation") + COMPILED
BUDGETS = {"wheels": 30, "env": 45, "tests": 120, "speed_fp32_eager": 75, "speed_bf16_eager": 75,
           "train_atac": 120, "speed_checkpoint": 60, "train_deviation": 90,
           **{name: 120 for name in COMPILED}}
TOTAL_BUDGET = 450
RESERVE = 10        # seconds of the total kept for the last write of the JSON
MIN_START = 15      # a step is not started with fewer seconds than this left (or its budget, if smaller)
TAIL = 4000         # characters of each step's output kept in the JSON (all of it goes to the log)


# ----------------------------------------------------------------------------------------------
# small helpers (the driver imports no torch: it starts at once and no CUDA call can hang it)

def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def source_sha256(root: Path = REPO) -> str:
    """One hash of every ``.py`` file under atac/, benchmarks/ and tests/ (names and contents):
    the pack's and the run's trees are the same code when theirs agree (the device gets no .git)."""
    h = hashlib.sha256()
    for top in ("atac", "benchmarks", "tests"):
        for p in sorted((root / top).rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def git_state(root: Path = REPO) -> dict:
    def ask(*cmd):
        try:
            r = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10)
            return r.stdout.rstrip("\n") if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    dirty = ask("status", "--porcelain", "--untracked-files=no")  # "XY path" lines
    return {"commit": ask("rev-parse", "HEAD"), "branch": ask("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": None if dirty is None else sorted(line[3:] for line in dirty.splitlines() if line)}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# pack

def cmd_pack(args) -> dict:
    """Write the pack (see the module docstring); return its manifest."""
    import numpy as np
    import torch
    from PIL import Image

    from atac.config import preset
    from atac.data.datasets import load_index
    from atac.data.preprocess import prepare
    from atac.weights import offline_path, sha256_file

    dest = Path(args.dest).resolve()
    cfg = preset("paper")
    t0 = time.perf_counter()
    manifest: dict[str, Any] = {
        "pack": "atac gpu_check pack", "format_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(), "source_sha256": source_sha256(),
        "command": "python benchmarks/gpu_check.py pack " + " ".join(args.argv),
    }
    dest.mkdir(parents=True, exist_ok=True)

    # data: pre-processed as atac does it, written so that clahe=false reads back the same tensors
    if args.data_root:
        index = load_index("mvtec_ad", args.category, args.data_root)
        samples = index.train + index.test
        print(f"[pack] {len(samples)} images of {index.root}: CLAHE + resize to {args.image_size} px ...",
              file=sys.stderr, flush=True)
        full = prepare(samples, args.image_size, True, cfg.clahe_clip, cfg.clahe_tile,
                       cfg.mask_threshold, use_cache=not args.no_cache, progress=False)
        out_root = dest / "data" / "mvtec_ad" / index.category
        if out_root.exists():
            shutil.rmtree(out_root)
        for i, s in enumerate(samples):
            rel = Path(s.rel).with_suffix(".png")
            img = full.images[i].permute(1, 2, 0).numpy()
            gray = bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())
            target = out_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img[..., 0]) if gray else img).save(target, optimize=True)
            if s.mask_path:
                m = out_root / "ground_truth" / s.defect_type / f"{rel.stem}_mask.png"
                m.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(full.masks[i, 0].numpy().astype(np.uint8) * 255).save(m, optimize=True)
        for extra in ("license.txt", "readme.txt", "LICENSE.txt", "SOURCES.md"):
            if (index.root / extra).is_file():
                shutil.copy2(index.root / extra, out_root / extra)
        # the check: the pack read without CLAHE gives the pipeline's tensors on the originals
        packed = load_index("mvtec_ad", index.category, dest / "data")
        same_files = ([(Path(s.rel).with_suffix(".png").as_posix(), s.label, s.defect_type) for s in samples]
                      == [(Path(s.rel).as_posix(), s.label, s.defect_type) for s in packed.train + packed.test])
        back = prepare(packed.train + packed.test, args.image_size, False, cfg.clahe_clip, cfg.clahe_tile,
                       cfg.mask_threshold, use_cache=False, progress=False)
        equal = (same_files and torch.equal(back.images, full.images) and torch.equal(back.masks, full.masks)
                 and torch.equal(back.has_mask, full.has_mask) and torch.equal(back.empty_mask, full.empty_mask))
        if not equal:
            raise SystemExit(f"pack: {out_root} read back without CLAHE does not give the pipeline's "
                             "tensors (files, images or masks differ); nothing to carry")
        manifest["data"] = {
            "dataset": "mvtec_ad", "category": index.category, "source": str(index.root),
            "image_size": args.image_size, "clahe_applied": True, "clahe_clip": cfg.clahe_clip,
            "clahe_tile": cfg.clahe_tile, "mask_threshold": cfg.mask_threshold,
            "summary": {k: v for k, v in index.summary().items() if k != "root"},
            "verified_equal": True, "bytes": folder_bytes(out_root),
            "how": f"CLAHE (clip {cfg.clahe_clip}, tile {cfg.clahe_tile}) and bicubic resize to "
                   f"{args.image_size} px done here by atac.data.preprocess.prepare; PNG, masks 0/255. "
                   "Runs on it use clahe=false: their tensors equal the full pipeline's on the "
                   "originals, bit for bit (checked when packing)",
        }
    else:
        manifest["data"] = None

    # weights: the converted offline file, named as atac.weights.offline_path expects it
    wfile = Path(args.weights_file).expanduser() if args.weights_file else offline_path()
    wdir = dest / "weights"
    if wdir.exists():
        shutil.rmtree(wdir)
    if args.no_weights:
        manifest["weights"] = None
    elif not wfile.is_file():
        raise SystemExit(f"pack: no weights file {wfile} (run `atac weights fetch mobilenet_v2`, pass "
                         "--weights-file PATH, or --no-weights)")
    else:
        wdir.mkdir(parents=True)
        name = offline_path().name
        shutil.copy2(wfile, wdir / name)
        meta_src = wfile.with_suffix(".json")
        meta = json.loads(meta_src.read_text()) if meta_src.is_file() else {
            "source": f"file {wfile.name} (sha256 {sha256_file(wfile)[:16]}), carried by gpu_check pack",
            "wheel_sha256": sha256_file(wfile)}
        (wdir / Path(name).with_suffix(".json").name).write_text(json.dumps(meta, indent=2))
        manifest["weights"] = {"file": f"weights/{name}", "from": str(wfile), "sha256": sha256_file(wdir / name),
                               "bytes": (wdir / name).stat().st_size, "meta": meta}

    # wheels of the packages the GPU image lacks
    hdir = dest / "wheels"
    if hdir.exists():
        shutil.rmtree(hdir)
    wheels = []
    if args.wheels:
        hdir.mkdir(parents=True)
        wheels = fetch_wheels(args.wheels, hdir)
    manifest["wheels"] = wheels
    manifest["bytes"] = folder_bytes(dest)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(dest / "manifest.json", manifest)
    mib = manifest["bytes"] / 2**20
    print(f"[pack] {dest}: {mib:.1f} MiB (data, weights, {len(wheels)} wheels); carry it: "
          f"carry=[\"{_rel(dest)}\"]", file=sys.stderr)
    if mib > 56:
        print("[pack] warning: the device tool carries 64 MiB in all (the working tree included)",
              file=sys.stderr)
    return manifest


def fetch_wheels(specs: list[str], dest: Path) -> list[dict]:
    """``pip download --no-deps`` each ``NAME`` (the version installed here) or ``NAME==VERSION``;
    an sdist is built into a wheel here (``pip wheel --no-deps``): the GPU machine has no network."""
    from importlib import metadata

    from atac.weights import sha256_file

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            if "==" not in spec:
                spec = f"{spec}=={metadata.version(spec)}"
            got = Path(tmp) / spec.split("==")[0]
            got.mkdir()
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                "--disable-pip-version-check", "-d", str(got), spec],
                               capture_output=True, text=True)
            files = list(got.iterdir())
            if r.returncode != 0 or not files:
                raise SystemExit(f"pack: pip could not download {spec}: {r.stderr.strip()[-400:]}")
            for f in files:
                if f.suffix != ".whl":
                    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                                        "--disable-pip-version-check", "-w", str(got), str(f)],
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        raise SystemExit(f"pack: could not build a wheel of {f.name}: {r.stderr.strip()[-400:]}")
            for whl in got.glob("*.whl"):
                shutil.copy2(whl, dest / whl.name)
                out.append({"spec": spec, "wheel": whl.name, "sha256": sha256_file(whl)})
    return out


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------------------------
# run: the steps

@dataclass
class Ctx:
    args: argparse.Namespace
    pack: Path
    manifest: dict | None
    work: Path
    out: Path
    python: str
    env: dict[str, str]
    log: Path
    extra_path: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.args.device.startswith("cuda")

    def child_env(self) -> dict[str, str]:
        env = dict(self.env)
        parts = [str(REPO)] + self.extra_path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(parts)
        return env


@dataclass
class Step:
    name: str
    what: str
    make: Callable[[Ctx], "tuple[list[str], Path | None] | str"]   # (command, result file) or a skip reason
    parse: Callable[[Ctx, Path | None, int], dict | None] = lambda ctx, f, rc: None


ENV_PROBE = r"""
import json, platform, subprocess, sys, time
from importlib import metadata
out = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
       "cpu_count": __import__("os").cpu_count(), "packages": {}, "imports": {}}
for name in ("torch", "torchvision", "numpy", "pillow", "opencv-python-headless", "opencv-python",
             "scikit-learn", "PyYAML", "tqdm", "matplotlib", "grad-cam", "ttach", "pytest", "triton", "submitit"):
    try:
        out["packages"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out["packages"][name] = None
for mod in ("torch", "torchvision", "cv2", "sklearn", "yaml", "tqdm", "matplotlib", "PIL",
            "pytorch_grad_cam", "ttach", "atac", "atac.train", "atac.gradcam"):
    try:
        m = __import__(mod)
        out["imports"][mod] = "ok"
    except Exception as exc:
        out["imports"][mod] = f"{type(exc).__name__}: {exc}"[:300]
import atac, torch
out["atac_file"] = atac.__file__
out["torch"] = torch.__version__
out["cuda_available"] = torch.cuda.is_available()
out["torch_cuda"] = torch.version.cuda
out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    out["device_count"] = torch.cuda.device_count()
    out["device_name"] = torch.cuda.get_device_name(0)
    out["capability"] = list(torch.cuda.get_device_capability(0))
    out["total_memory_gib"] = p.total_memory / 2**30
    out["multiprocessors"] = p.multi_processor_count
    out["bf16_supported"] = torch.cuda.is_bf16_supported()
    out["allow_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    t0 = time.perf_counter()
    a = torch.ones(1024, 1024, device="cuda")
    ok = float((a @ a).sum()) == 1024.0 ** 3
    torch.cuda.synchronize()
    out["first_cuda_op"] = {"ok": ok, "seconds": time.perf_counter() - t0}
else:
    out["device_name"] = platform.processor() or platform.machine()
try:
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                        "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
    out["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()[:300]
except Exception as exc:
    out["nvidia_smi"] = f"{type(exc).__name__}: {exc}"[:200]
out["sys_path"] = sys.path
json.dump(out, open(sys.argv[1], "w"), indent=1)
"""


def _wheels(ctx: Ctx):
    wheels = sorted((ctx.pack / "wheels").glob("*.whl"))
    if not wheels:
        return f"no wheels in {ctx.pack / 'wheels'}"
    site = ctx.work / "site"
    return ([ctx.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site),
             *map(str, wheels)], None)


def _parse_wheels(ctx: Ctx, _f, rc: int) -> dict:
    site = ctx.work / "site"
    if rc == 0 and str(site) not in ctx.extra_path:
        ctx.extra_path.append(str(site))  # every later step sees the installed packages
    return {"target": str(site), "wheels": sorted(p.name for p in (ctx.pack / "wheels").glob("*.whl"))}


def _env(ctx: Ctx):
    f = ctx.work / "env.json"
    return [ctx.python, "-c", ENV_PROBE, str(f)], f


def _load(f: Path | None) -> dict | None:
    if f is None or not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _tests(ctx: Ctx):
    f = ctx.work / "junit.xml"
    return [ctx.python, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-o", "addopts=",
            f"--junitxml={f}", *ctx.args.tests], f


def _parse_junit(ctx: Ctx, f: Path | None, rc: int) -> dict | None:
    import xml.etree.ElementTree as ET

    if f is None or not f.is_file():
        return None
    root = ET.parse(f).getroot()
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    cases = []
    for tc in root.iter("testcase"):
        outcome, message = "passed", None
        for tag, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            el = tc.find(tag)
            if el is not None:
                outcome = name
                message = ((el.get("message") or "") + "\n" + (el.text or "")).strip()[-1500:]
                break
        counts[outcome] += 1
        cases.append({"test": f"{tc.get('classname')}::{tc.get('name')}", "outcome": outcome,
                      "seconds": float(tc.get("time") or 0), **({"message": message} if message else {})})
    return {**counts, "exit_code": rc, "tests": ctx.args.tests, "cases": cases}


def _speed_common(ctx: Ctx) -> list[str]:
    a = ctx.args
    if a.tiny:
        sizes = ["--image-size", "64", "--batch", "4", "--warmup", "1", "--iters", "2", "--random"]
    else:
        sizes = ["--image-size", str(a.speed_image_size), "--batch", str(a.speed_batch),
                 "--warmup", str(a.speed_warmup), "--iters", str(a.speed_iters)]
    dev = ["--device", a.device] + (["--threads", "1"] if a.device == "cpu" else [])
    return [ctx.python, str(REPO / "benchmarks" / "speed.py"), *dev, *sizes, "--quiet"]


def _speed(precision: str, compiled: bool, backbone: str | None = None):
    def make(ctx: Ctx):
        a = ctx.args
        name = f"speed-{precision}-{'compiled' if compiled else 'eager'}{'-' + backbone if backbone else ''}"
        f = ctx.work / f"{name}.json"
        cmd = _speed_common(ctx) + ["--backbones", *([backbone] if backbone else a.speed_backbones),
                                    "--methods", *(a.compiled_methods if compiled else a.speed_methods),
                                    "--json", str(f)]
        if precision == "bf16":
            cmd.append("--amp")
        if compiled:
            cmd.append("--compile")
        # the sweep estimates once, from the figures a GPU run uses (amp auto = bf16, eager)
        if precision == "bf16" and not compiled and not a.tiny and ctx.manifest and ctx.manifest.get("data"):
            cmd += ["--data-root", str(ctx.pack / "data")]
        else:
            cmd += ["--sweeps", "none"]
        return cmd, f
    return make


def _parse_speed(ctx: Ctx, f: Path | None, rc: int) -> dict | None:
    data = _load(f)
    if data is not None:
        data.pop("packages", None)  # the env step has them
    return data


def _train(method: str):
    def make(ctx: Ctx):
        a, m = ctx.args, ctx.manifest
        if not m or not m.get("data"):
            return f"no data in the pack ({ctx.pack}/manifest.json): run `gpu_check.py pack` here first"
        d = m["data"]
        weights = a.weights
        if weights == "imagenet" and not (ctx.pack / "weights").is_dir():
            return ("--weights imagenet but the pack holds no weights file (gpu_check.py pack "
                    "--weights-file ...), or pass --weights none")
        out = ctx.work / "runs" / method
        cmd = [ctx.python, "-m", "atac.cli", "train", "--preset", a.preset, "--dataset", "mvtec_ad",
               "--category", d["category"], "--data-root", str(ctx.pack / "data"), "--backbone", a.backbone,
               "--weights", weights, "--method", method, "--shots", str(a.shots), "--seed", str(a.seed),
               "--image-size", str(d["image_size"]), "--device", a.device, "--out", str(out), "--quiet"]
        if d.get("clahe_applied"):
            cmd += ["--clahe", "false"]  # the pack is pre-processed: CLAHE was applied when packing
        return cmd, out / "metrics.json"
    return make


def _parse_train(ctx: Ctx, f: Path | None, rc: int) -> dict | None:
    rec = _load(f)
    if rec is None:
        return None
    split = rec.pop("split", None)
    if isinstance(split, dict):  # the file lists are long; their sizes say enough here
        rec["split_sizes"] = {k: len(v) for k, v in split.items() if isinstance(v, list)}
    return rec


def _speed_checkpoint(ctx: Ctx):
    model = ctx.work / "runs" / "atac" / "model.pt"
    if not model.is_file():
        return f"no {model} (train_atac did not finish)"
    f = ctx.work / "speed-checkpoint.json"
    a = ctx.args
    reps = ["--warmup", "1", "--iters", "2"] if a.tiny else ["--warmup", str(a.speed_warmup),
                                                             "--iters", str(a.speed_iters)]
    dev = ["--device", a.device] + (["--threads", "1"] if a.device == "cpu" else [])
    # the run's own precision: amp auto = bf16 autocast on CUDA, float32 on CPU
    return ([ctx.python, str(REPO / "benchmarks" / "speed.py"), *dev, "--checkpoint", str(model),
             "--checkpoint-only", "--data-root", str(ctx.pack / "data"), *reps, "--quiet", "--json", str(f)]
            + (["--amp"] if ctx.cuda else []), f)


STEP_LIST = [
    Step("wheels", "install the pack's wheels (no network)", _wheels, _parse_wheels),
    Step("env", "versions, GPU, a first CUDA op", _env, lambda ctx, f, rc: _load(f)),
    Step("tests", "the CUDA tests (pytest)", _tests, _parse_junit),
    Step("speed_fp32_eager", "speed.py, float32, eager", _speed("fp32", False), _parse_speed),
    Step("speed_bf16_eager", "speed.py, bf16 autocast, eager", _speed("bf16", False), _parse_speed),
    Step("train_atac", "one ATAC-Net run on the packed category", _train("atac"), _parse_train),
    Step("speed_checkpoint", "that model on its test set vs the plain backbone", _speed_checkpoint, _parse_speed),
    Step("train_deviation", "one DevNet run on the packed category", _train("deviation"), _parse_train),
] + [Step(name, f"speed.py --compile, {name.split('_')[1]}, {name.split('_', 3)[3]}",
          _speed(name.split("_")[1], True, name.split("_", 3)[3]), _parse_speed) for name in COMPILED]
assert tuple(s.name for s in STEP_LIST) == STEPS


# ----------------------------------------------------------------------------------------------
# run: the driver

class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def run_step(ctx: Ctx, cmd: list[str], timeout: float, entry: dict) -> int | None:
    """Run ``cmd`` in its own process group with ``timeout``; its output goes to the log and its
    tail to ``entry``. Returns the exit code, or None when it was killed at its limit."""
    out_file = ctx.work / f"{entry['name']}.out"
    rc: int | None = None
    with open(out_file, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ctx.child_env(), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
        except BaseException:
            _kill(proc)
            raise
    text = out_file.read_text(errors="replace")
    entry["output_tail"] = text[-TAIL:]
    with open(ctx.log, "a") as log:
        log.write(f"\n===== {entry['name']}: {' '.join(cmd[:3])} ... (rc {rc}) =====\n{text}")
    return rc


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL 5 s later if it is still there."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def summarize(record: dict) -> dict:
    """The key figures of every step that has them, in one flat-ish block."""
    steps = record["steps"]
    s: dict[str, Any] = {"status": {k: v["status"] for k, v in steps.items()}}
    env = steps["env"].get("result") or {}
    for k in ("device_name", "torch", "torch_cuda", "cuda_available", "bf16_supported", "python"):
        if k in env:
            s[k] = env[k]
    t = steps["tests"].get("result")
    if t:
        s["tests"] = {k: t[k] for k in ("passed", "failed", "errors", "skipped")}
        s["tests"]["not_passed"] = [c["test"] for c in t["cases"] if c["outcome"] in ("failed", "errors")]
    speed = {}
    for name, st in steps.items():
        r = st.get("result")
        if not name.startswith("speed_") or name == "speed_checkpoint" or not r or "results" not in r:
            continue
        for bb, per in r["results"].items():
            for m, row in per.items():
                key = f"{bb}/{m}/{r['settings']['amp'].split()[0]}/{'compiled' if r['settings']['compile'] else 'eager'}"
                speed[key] = {
                    "train_ratio": row["train_ratio"], "infer_ratio": row["infer_ratio"],
                    "paired_infer": [row["paired_ratios"]["infer"]["median"], *row["paired_ratios"]["infer"]["ci95"]],
                    "paired_train": [row["paired_ratios"]["train"]["median"], *row["paired_ratios"]["train"]["ci95"]],
                    "train_images_per_s": row["train_images_per_s"], "infer_images_per_s": row["infer_images_per_s"],
                    "zoomed_fraction": row.get("zoomed_fraction"),
                    "peak_memory_mib_train": row["peak_memory_mib"].get("train", row["peak_memory_mib"].get("process"))}
    if speed:
        s["speed"] = speed
    ck = (steps["speed_checkpoint"].get("result") or {}).get("checkpoint")
    if ck:
        pr = ck["paired_ratios"]["infer"]
        s["checkpoint_test_set"] = {
            "infer_ratio": ck["infer_ratio"], "paired_infer": [pr["median"], *pr["ci95"]],
            "zoomed": ck["zoomed"], "n_test": ck["n_test"], "zoom_rate_normal": ck["zoom_rate_normal"],
            "zoom_rate_anomalous": ck["zoom_rate_anomalous"], "image_auroc": ck["image_auroc"]}
    for m in ("atac", "deviation"):
        r = steps[f"train_{m}"].get("result")
        if r:
            s[f"train_{m}"] = {k: r.get(k) for k in (
                "image_auroc", "image_auprc", "pixel_auroc", "zoom_rate_normal", "zoom_rate_anomalous",
                "view_auroc", "train_seconds", "eval_seconds", "prep_seconds", "precision", "compiled",
                "device", "weights_source")}
    return s


def cmd_run(args) -> dict:
    t_start = time.monotonic()
    started = _dt.datetime.now(_dt.timezone.utc)
    out = Path(args.out).resolve()
    pack = Path(args.pack).resolve()
    manifest = _load(pack / "manifest.json")
    selected = [n for n in STEPS if (not args.only or n in args.only) and n not in args.skip]
    budgets = dict(BUDGETS)
    budgets.update(args.budget)

    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="atac-gpucheck-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "ATAC_CACHE": str(work / "cache"),
                "ATAC_TRY_TORCHVISION_DOWNLOAD": "0", "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"),
                "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"})
    ctx = Ctx(args, pack, manifest, work, out, args.python or sys.executable, env, out / LOG_NAME)

    record: dict[str, Any] = {
        "check": "atac gpu_check", "format_version": 1,
        "started": started.isoformat(timespec="seconds"), "finished": None,
        "command": "python benchmarks/gpu_check.py run " + " ".join(args.argv),
        "device": args.device, "tiny": args.tiny, "total_budget_seconds": args.total_budget,
        "budgets_seconds": {n: budgets[n] for n in STEPS},
        "host": {"hostname": platform.node(), "platform": platform.platform(),
                 "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "code": {"git": git_state(), "source_sha256": source_sha256(),
                 "pack_source_sha256": (manifest or {}).get("source_sha256"),
                 "pack_git": (manifest or {}).get("git")},
        "pack": manifest, "pack_dir": str(pack), "workdir": str(work),
        "steps": {n: {"name": n, "what": s.what, "status": "pending" if n in selected else "skipped",
                      **({} if n in selected else {"reason": "--skip / --only"}),
                      "budget_seconds": budgets[n]} for n, s in zip(STEPS, STEP_LIST)},
    }
    record["code"]["same_code_as_pack"] = (record["code"]["source_sha256"] == record["code"]["pack_source_sha256"])
    json_path = out / args.json

    def save():
        record["seconds"] = round(time.monotonic() - t_start, 2)
        record["summary"] = summarize(record)
        write_json_atomic(json_path, record)

    out.mkdir(parents=True, exist_ok=True)
    ctx.log.write_text(f"atac gpu_check, started {record['started']}\n")
    # the carried weights where atac.weights.offline_path looks for them (ATAC_CACHE/weights)
    if (pack / "weights").is_dir():
        shutil.copytree(pack / "weights", work / "cache" / "weights", dirs_exist_ok=True)
    save()
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    deadline = t_start + args.total_budget
    try:
        for step in STEP_LIST:
            entry = record["steps"][step.name]
            if step.name not in selected:
                continue
            left = deadline - time.monotonic() - RESERVE
            limit = min(budgets[step.name], left)
            if limit < min(MIN_START, budgets[step.name]):
                entry.update(status="skipped", reason=f"not started: {max(left, 0):.0f} s of the total "
                                                      f"budget ({args.total_budget} s) left")
                save()
                continue
            entry["started_at_seconds"] = round(time.monotonic() - t_start, 2)
            try:
                made = step.make(ctx)
            except Exception as exc:  # a bug of this driver: say so and go on
                entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
                save()
                continue
            if isinstance(made, str):
                entry.update(status="skipped", reason=made)
                save()
                continue
            cmd, result_file = made
            entry.update(status="running", command=cmd if step.name != "env" else cmd[:2] + ["ENV_PROBE", *cmd[3:]],
                         timeout_seconds=round(limit, 1))
            save()
            print(f"[gpu_check] {step.name}: up to {limit:.0f} s ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                rc = run_step(ctx, cmd, limit, entry)
            except Interrupted as exc:
                entry.update(status="interrupted", seconds=round(time.monotonic() - t0, 2), reason=str(exc))
                raise
            entry["seconds"] = round(time.monotonic() - t0, 2)
            entry["returncode"] = rc
            entry["status"] = "timeout" if rc is None else "ok" if rc == 0 else "failed"
            try:
                entry["result"] = step.parse(ctx, result_file, rc)
            except Exception as exc:
                entry["parse_error"] = f"{type(exc).__name__}: {exc}"
            print(f"[gpu_check] {step.name}: {entry['status']} ({entry['seconds']:.1f} s)", file=sys.stderr,
                  flush=True)
            save()
    except Interrupted as exc:
        record["interrupted"] = str(exc)
        for e in record["steps"].values():
            if e["status"] == "pending":
                e.update(status="skipped", reason=f"not reached: the check was stopped ({exc})")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        record["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        save()
        if not args.keep_workdir and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu_check] wrote {json_path}", file=sys.stderr)
    print(json.dumps(record["summary"], indent=1, default=str))
    return record


# ----------------------------------------------------------------------------------------------
# arguments

def _budget(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in STEPS:
        raise argparse.ArgumentTypeError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget {text}: expected STEP=SECONDS") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--budget {text}: seconds must be > 0")
    return name, v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    k = sub.add_parser("pack", help="put data, weights and wheels into one folder to carry")
    k.add_argument("--dest", default=str(DEFAULT_PACK), help="the pack folder (default: .gpucheck)")
    k.add_argument("--data-root", default=os.environ.get("ATAC_DATA_ROOT"),
                   help="folder holding mvtec_ad/<category> (default: $ATAC_DATA_ROOT); '' for no data")
    k.add_argument("--category", default="grid", help="MVTec AD category (default: grid)")
    k.add_argument("--image-size", type=int, default=224, help="pixels, the runs' image_size (default: 224)")
    k.add_argument("--weights-file", default=None,
                   help="the converted MobileNetV2 file (default: where `atac weights fetch` puts it, "
                        "$ATAC_CACHE/weights/, else ~/.cache/atac/weights/)")
    k.add_argument("--no-weights", action="store_true", help="carry no weights (runs then need --weights none)")
    k.add_argument("--wheels", nargs="*", default=list(DEFAULT_WHEELS), metavar="NAME[==VERSION]",
                   help="packages to carry as wheels (default: grad-cam ttach, at the versions "
                        "installed here); --wheels alone: none")
    k.add_argument("--no-cache", action="store_true", help="do not use atac's pre-processing cache here")

    r = sub.add_parser("run", help="run the steps; write one JSON under --out",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="steps, in order: " + ", ".join(STEPS))
    r.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json and gpu_check.log "
                                                                "(default: $OUT)")
    r.add_argument("--json", default=JSON_NAME, help=f"file name of the JSON (default: {JSON_NAME})")
    r.add_argument("--pack", default=str(DEFAULT_PACK), help="the pack folder (default: .gpucheck)")
    r.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu (the dry run)")
    r.add_argument("--tiny", action="store_true",
                   help="the dry run's sizes: smoke preset, 64 px, batch 4, 1 + 2 iterations, random "
                        "speed batches, 2 shots, tests/test_cuda.py, mobilenet_v2 only")
    r.add_argument("--total-budget", type=float, default=TOTAL_BUDGET,
                   help=f"seconds for all steps together (default: {TOTAL_BUDGET})")
    r.add_argument("--budget", type=_budget, action="append", default=[], metavar="STEP=SECONDS",
                   help="one step's time limit (repeatable); defaults: "
                        + ", ".join(f"{n}={BUDGETS[n]}" for n in STEPS))
    r.add_argument("--skip", nargs="+", default=[], choices=STEPS, metavar="STEP", help="steps not to run")
    r.add_argument("--only", nargs="+", default=[], choices=STEPS, metavar="STEP", help="run only these steps")
    r.add_argument("--tests", nargs="+", default=None, metavar="PATH",
                   help="pytest paths of the tests step (default: tests/test_gpu_path.py "
                        "tests/test_cuda.py; --tiny: tests/test_cuda.py)")
    r.add_argument("--speed-backbones", nargs="+", default=None, metavar="NAME",
                   help="backbones of the eager speed steps (default: mobilenet_v2 resnet50; --tiny: mobilenet_v2)")
    r.add_argument("--speed-methods", nargs="+", default=["deviation", "atac"], metavar="NAME",
                   help="methods of the eager speed steps (default: deviation atac)")
    r.add_argument("--compiled-methods", nargs="+", default=["atac"], metavar="NAME",
                   help="methods of the compiled speed steps (default: atac; compiling is the slow part)")
    r.add_argument("--speed-batch", type=int, default=48, help="speed.py --batch (default: 48)")
    r.add_argument("--speed-image-size", type=int, default=224, help="speed.py --image-size (default: 224)")
    r.add_argument("--speed-warmup", type=int, default=3, help="speed.py --warmup (default: 3)")
    r.add_argument("--speed-iters", type=int, default=20, help="speed.py --iters (default: 20)")
    r.add_argument("--preset", default=None, help="the training runs' preset (default: paper; --tiny: smoke)")
    r.add_argument("--backbone", default="mobilenet_v2", help="the training runs' backbone (default: mobilenet_v2)")
    r.add_argument("--weights", default=None,
                   help="the training runs' weights: imagenet (the pack's file; default) | none (--tiny's default)")
    r.add_argument("--shots", type=int, default=None, help="the training runs' shots (default: 10; --tiny: 2)")
    r.add_argument("--seed", type=int, default=0, help="the training runs' seed (default: 0)")
    r.add_argument("--python", default=None, help="the Python of every step (default: this one)")
    r.add_argument("--workdir", default=None, help="scratch folder (default: a fresh one in /tmp, removed after)")
    r.add_argument("--keep-workdir", action="store_true", help="keep the scratch folder (runs, model.pt)")
    r.add_argument("--plan", action="store_true", help="print every step's command; run nothing")
    args = p.parse_args(argv)
    args.argv = argv[1:]
    if args.cmd == "run":
        if not args.out and not args.plan:
            p.error("run: --out DIR (or $OUT) is required")
        args.budget = dict(args.budget)
        t = args.tiny
        args.tests = args.tests or (["tests/test_cuda.py"] if t else ["tests/test_gpu_path.py", "tests/test_cuda.py"])
        args.speed_backbones = args.speed_backbones or (["mobilenet_v2"] if t else ["mobilenet_v2", "resnet50"])
        args.preset = args.preset or ("smoke" if t else "paper")
        args.weights = args.weights or ("none" if t else "imagenet")
        args.shots = args.shots or (2 if t else 10)
        if args.total_budget <= RESERVE:
            p.error(f"--total-budget must be > {RESERVE} s")
    return args


def cmd_plan(args) -> dict:
    """Each step's command as it would run now (no process started, nothing written)."""
    pack = Path(args.pack).resolve()
    work = Path(args.workdir or "/tmp/atac-gpucheck-PLAN")
    ctx = Ctx(args, pack, _load(pack / "manifest.json"), work, Path(args.out or "."), args.python or sys.executable,
              dict(os.environ), Path(os.devnull))
    plan = {}
    for step in STEP_LIST:
        made = step.make(ctx)
        plan[step.name] = {"skip": made} if isinstance(made, str) else {
            "command": made[0] if step.name != "env" else made[0][:2] + ["ENV_PROBE"]}
    print(json.dumps(plan, indent=1))
    return plan


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.cmd == "pack":
        return cmd_pack(args)
    if args.plan:
        return cmd_plan(args)
    return cmd_run(args)


if __name__ == "__main__":
    main()
