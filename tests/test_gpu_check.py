"""benchmarks/gpu_check.py: its CPU dry run, end to end through benchmarks/gpu_check.sh (a pack of
a small synthetic MVTec-layout category, a stand-in weights file and a stand-in wheel; every step at
tiny sizes), its time limits, and the commands its GPU run would start."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("atac_benchmark_gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (one module), as pip installs it offline."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpucheck_probe-0.1-py3-none-any.whl"
    info = "gpucheck_probe-0.1.dist-info"
    files = {"gpucheck_probe.py": "VALUE = 17\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpucheck-probe\nVersion: 0.1\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory, synth_root, gpu_check):
    import torch
    import torchvision

    root = tmp_path_factory.mktemp("gpucheck")
    # a stand-in for the converted ImageNet file (random values): what is tested is the route
    weights = root / "weights" / "mobilenet_v2_features.pth"
    weights.parent.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().features.state_dict(), weights)
    dest = root / "pack"
    manifest = gpu_check.main(["pack", "--dest", str(dest), "--data-root", str(synth_root / "synthetic"),
                               "--category", "grid", "--image-size", "64", "--weights-file", str(weights),
                               "--wheels", "--no-cache"])
    _wheel(dest / "wheels")
    return dest, manifest


def test_pack_holds_preprocessed_data_weights_and_a_manifest(pack):
    dest, m = pack
    assert m["data"]["verified_equal"] is True and m["data"]["clahe_applied"] is True
    assert m["data"]["image_size"] == 64 and m["data"]["category"] == "grid"
    assert (dest / "data" / "mvtec_ad" / "grid" / "train" / "good").is_dir()
    assert any((dest / "data" / "mvtec_ad" / "grid" / "ground_truth").rglob("*_mask.png"))
    assert (dest / "weights" / Path(m["weights"]["file"]).name).is_file()
    assert json.loads((dest / "manifest.json").read_text())["source_sha256"] == m["source_sha256"]
    assert m["wheels"] == []          # --wheels alone: none fetched (the test adds its own)


@pytest.fixture(scope="module")
def dry_run(pack, gpu_check, tmp_path_factory):
    dest, _ = pack
    out = tmp_path_factory.mktemp("gpucheck-out")
    work = tmp_path_factory.mktemp("gpucheck-work")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--out", str(out),
                           "--pack", str(dest), "--device", "cpu", "--tiny", "--weights", "imagenet",
                           "--workdir", str(work), "--skip", *gpu_check.COMPILED],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), out, work


@pytest.mark.slow
def test_the_cpu_dry_run_writes_every_step(dry_run, gpu_check):
    rec, out, work = dry_run
    steps = rec["steps"]
    assert list(steps) == list(gpu_check.STEPS)
    for name in gpu_check.COMPILED:
        assert steps[name]["status"] == "skipped" and steps[name]["reason"]
    ran = [n for n in gpu_check.STEPS if n not in gpu_check.COMPILED]
    for name in ran:
        e = steps[name]
        assert e["status"] == "ok", (name, e.get("reason"), e.get("output_tail", "")[-2000:])
        assert e["seconds"] > 0 and e["budget_seconds"] > 0 and e["timeout_seconds"] <= e["budget_seconds"]
        assert e["command"] and e["result"] is not None, name
    assert rec["finished"] and rec["seconds"] < rec["total_budget_seconds"]
    assert rec["code"]["same_code_as_pack"] is True
    assert (out / "gpu_check.log").is_file() and "train_atac" in (out / "gpu_check.log").read_text()


@pytest.mark.slow
def test_the_dry_run_figures(dry_run):
    rec, _, work = dry_run
    s = rec["steps"]
    env = s["env"]["result"]
    assert env["cuda_available"] is False and env["imports"]["atac.train"] == "ok"
    assert env["atac_file"].startswith(str(REPO))
    assert str(work / "site") in env["sys_path"]                 # the pack's wheels, installed offline
    assert (work / "site" / "gpucheck_probe.py").is_file()
    t = s["tests"]["result"]
    assert t["skipped"] > 0 and t["failed"] == 0 and t["errors"] == 0     # no CUDA: every test skips
    fp32, bf16 = s["speed_fp32_eager"]["result"], s["speed_bf16_eager"]["result"]
    assert fp32["settings"]["amp"] == "off" and bf16["settings"]["amp"].startswith("bf16")
    for r in (fp32, bf16):
        assert set(r["results"]["mobilenet_v2"]) == {"deviation", "atac"}
        assert r["results"]["mobilenet_v2"]["atac"]["infer_ratio"] > 0
    for m in ("atac", "deviation"):
        r = s[f"train_{m}"]["result"]
        assert r["method"] == m and 0.0 <= r["image_auroc"] <= 1.0
        assert r["config"]["clahe"] is False and r["config"]["image_size"] == 64
        assert "carried by gpu_check pack" in r["weights_source"]   # the carried file, offline route
        assert "split" not in r and r["split_sizes"]
    ck = s["speed_checkpoint"]["result"]["checkpoint"]
    assert ck["method"] == "atac" and ck["n_test"] > 0 and ck["infer_ratio"] > 0
    sm = rec["summary"]
    assert sm["status"]["train_atac"] == "ok" and "checkpoint_test_set" in sm
    assert "mobilenet_v2/atac/bf16/eager" in sm["speed"] and "mobilenet_v2/deviation/off/eager" in sm["speed"]
    assert sm["train_atac"]["image_auroc"] == s["train_atac"]["result"]["image_auroc"]


def test_a_step_past_its_limit_is_killed_and_the_rest_is_not_started(pack, gpu_check, tmp_path):
    dest, _ = pack
    rec = gpu_check.main(["run", "--out", str(tmp_path), "--pack", str(dest), "--device", "cpu", "--tiny",
                          "--only", "env", "tests", "--budget", "env=0.3", "--total-budget", "12"])
    s = rec["steps"]
    assert s["env"]["status"] == "timeout" and s["env"]["returncode"] is None
    assert s["tests"]["status"] == "skipped" and "not started" in s["tests"]["reason"]
    assert s["wheels"]["status"] == "skipped" and s["wheels"]["reason"] == "--skip / --only"
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert on_disk["steps"]["env"]["status"] == "timeout" and on_disk["finished"]


def test_the_gpu_plan(pack, gpu_check, capsys):
    dest, _ = pack
    plan = gpu_check.main(["run", "--plan", "--pack", str(dest)])
    assert set(plan) == set(gpu_check.STEPS)
    cmd = {k: " ".join(v.get("command", [])) for k, v in plan.items()}
    for name in gpu_check.COMPILED:
        assert "--compile" in cmd[name] and "--device cuda" in cmd[name]
        assert ("--amp" in cmd[name]) == ("bf16" in name)
        assert f"--backbones {name.split('_', 3)[3]} --methods atac" in cmd[name]
    assert "--backbones mobilenet_v2 resnet50" in cmd["speed_fp32_eager"] and "--amp" not in cmd["speed_fp32_eager"]
    assert "--amp" in cmd["speed_bf16_eager"] and "--data-root" in cmd["speed_bf16_eager"]
    for m in ("atac", "deviation"):
        c = cmd[f"train_{m}"]
        assert f"--method {m}" in c and "--preset paper" in c and "--weights imagenet" in c
        assert "--clahe false" in c and "--shots 10" in c and "--backbone mobilenet_v2" in c
    assert "tests/test_gpu_path.py tests/test_cuda.py" in cmd["tests"]
    assert "skip" in plan["speed_checkpoint"]                    # no model.pt before train_atac ran
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["run", "--out", "x", "--budget", "nosuchstep=3"])


def test_a_stopped_check_still_leaves_its_json(pack, tmp_path):
    """SIGTERM (the device tool's limit, Ctrl-C) mid-step: the step's process group is killed, the
    step says interrupted, the steps not reached say so, and the JSON is complete."""
    import signal
    import time

    dest, _ = pack
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "run", "--out", str(tmp_path), "--pack", str(dest),
                             "--device", "cpu", "--tiny", "--only", "env", "tests", "speed_fp32_eager"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = tmp_path / "gpu_check.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the env step is under way
        try:
            if json.loads(path.read_text())["steps"]["env"]["status"] == "running":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    rec = json.loads(path.read_text())
    assert rec["interrupted"] == "signal 15" and rec["finished"]
    st = {n: rec["steps"][n]["status"] for n in ("env", "tests", "speed_fp32_eager")}
    # the step under way when the signal came (env, or tests on a fast machine) says so
    assert st in ({"env": "interrupted", "tests": "skipped", "speed_fp32_eager": "skipped"},
                  {"env": "ok", "tests": "interrupted", "speed_fp32_eager": "skipped"}), st
    assert "not reached" in rec["steps"]["speed_fp32_eager"]["reason"]
