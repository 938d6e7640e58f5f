"""benchmarks/speed.py: a tiny CPU run of its main function, the JSON it writes, and the estimate
of one full run (on a small synthetic MVTec-layout category, with a smoke budget)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("atac_benchmark_speed", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


TINY = ["--device", "cpu", "--threads", "1", "--backbones", "mobilenet_v2", "--image-size", "64",
        "--batch", "4", "--warmup", "1", "--iters", "2", "--random", "--quiet"]


def test_tiny_cpu_run_writes_ratios(speed, tmp_path, capsys):
    out = tmp_path / "speed.json"
    result = speed.main(TINY + ["--json", str(out)])
    data = json.loads(out.read_text())
    assert data["settings"]["device"] == "cpu" and data["settings"]["batch"] == 4
    assert data["settings"]["image_size"] == 64 and data["settings"]["iters"] == 2
    assert data["settings"]["amp"] == "off" and data["settings"]["compile"] is False
    assert data["settings"]["weights"] == "none" and data["settings"]["torch_threads"] == 1
    for key in ("cpu_count", "torch", "torch_threads", "device_name"):
        assert key in data["machine"]
    assert "git_commit" in data and "torch" in data["packages"]
    assert set(data["results"]) == {"mobilenet_v2"}
    assert set(data["results"]["mobilenet_v2"]) == {"deviation", "atac"}
    for method, r in data["results"]["mobilenet_v2"].items():
        for key in ("train_ratio", "infer_ratio", "train_images_per_s", "infer_images_per_s",
                    "plain_train_images_per_s", "plain_infer_images_per_s"):
            assert _positive(r[key]), (method, key, r[key])
        assert set(r["median_seconds"]) == {"train", "plain_train", "infer", "plain_infer"}
        assert all(len(v) == 2 for v in r["seconds"].values())
        assert r["train_ratio"] == pytest.approx(r["median_seconds"]["train"] / r["median_seconds"]["plain_train"])
        pi = r["paired_ratios"]["infer"]
        assert pi["ratios"] == pytest.approx([a / b for a, b in zip(r["seconds"]["infer"], r["seconds"]["plain_infer"])])
        assert min(pi["ratios"]) <= pi["ci95"][0] <= pi["median"] <= pi["ci95"][1] <= max(pi["ratios"])
        assert _positive(r["peak_memory_mib"]["process"]) and "RSS" in r["peak_memory_kind"]
    # every paper_runs sweep gets a run count and an estimate in hours
    names = {e["file"]: e for e in data["sweeps"]}
    assert "paper_runs/table1-cpu.yaml" in names
    for e in data["sweeps"]:
        assert e["runs"] > 0 and _positive(e["estimated_hours"]) and not e["not_estimated"]
    assert result["results"]["mobilenet_v2"]["atac"]["train_ratio"] == data["results"]["mobilenet_v2"]["atac"]["train_ratio"]
    printed = capsys.readouterr().out
    assert "train_ratio" in printed and "table1-cpu" in printed and "per-iteration ratios" in printed


def test_paired_ratio_interval(speed):
    flat = speed.paired_ratio([2.0] * 9, [1.0] * 9)
    assert flat["median"] == 2.0 and flat["ci95"] == [2.0, 2.0] and flat["n"] == 9
    noisy = speed.paired_ratio([2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8], [1.0] * 9)
    assert noisy["median"] == pytest.approx(2.4)
    lo, hi = noisy["ci95"]
    assert 2.0 <= lo < 2.4 < hi <= 2.8       # a spread sample gives a real interval around its median


def test_bad_arguments_are_refused(speed):
    with pytest.raises(SystemExit):
        speed.parse_args(["--methods", "gradcam_zoom"])   # two-stage: not a single training step
    with pytest.raises(SystemExit):
        speed.parse_args(["--batch", "1"])


def test_sweeps_none_means_no_estimate(speed):
    assert speed.parse_args(["--sweeps", "none"]).sweeps == []
    assert speed.parse_args(["--sweeps"]).sweeps == []
    assert speed.parse_args([]).sweeps is None                 # the default: paper_runs/*.yaml
    assert speed.parse_args(["--sweeps", "a.yaml"]).sweeps == ["a.yaml"]


def test_cost_model_scaling(speed):
    from atac.config import RunConfig

    rows = [{"backbone": "mobilenet_v2", "method": "deviation",
             "median_seconds": {"train": 1.0, "infer": 0.5, "plain_train": 1.0, "plain_infer": 0.5}}]
    cm = speed.CostModel(rows, batch=4, size=64)
    base = dict(backbone="mobilenet_v2", image_size=64, batch_size=4, epochs=1, steps_per_epoch=10)
    dev = cm.run_seconds(RunConfig(method="deviation", **base), n_test=8, n_train=0)
    assert dev["train_seconds"] == pytest.approx(10.0) and dev["eval_seconds"] == pytest.approx(1.0)
    big = cm.run_seconds(RunConfig(method="deviation", **{**base, "image_size": 128, "batch_size": 8}),
                         n_test=8, n_train=0)
    assert big["train_seconds"] == pytest.approx(80.0)      # 2x batch, 4x pixels
    atac = cm.run_seconds(RunConfig(method="atac", **base), n_test=8, n_train=0)
    assert atac["train_seconds"] == pytest.approx(20.0)     # two backbone passes, stated
    assert any("atac" in n for n in cm.notes)
    two = cm.run_seconds(RunConfig(method="gradcam_zoom", **base), n_test=8, n_train=0)
    assert two["train_seconds"] == pytest.approx(20.0)      # two deviation trainings


def test_full_run_is_timed_and_compared(speed, synth_root, monkeypatch):
    from atac.config import preset

    # the cpu preset cut to a smoke budget, on the synthetic grid (MVTec layout)
    monkeypatch.setattr(speed, "preset", lambda name: preset("smoke"))
    args = speed.parse_args(TINY)
    args.batch, args.full_run = 4, str(synth_root / "synthetic")
    rows = [{"backbone": "mobilenet_v2", "method": "atac",
             "median_seconds": {"train": 0.1, "infer": 0.05, "plain_train": 0.05, "plain_infer": 0.02}}]
    fr = speed.full_run(args, speed.pick_device("cpu"), rows)
    assert fr["config"]["method"] == "atac" and fr["config"]["backbone"] == "mobilenet_v2"
    assert fr["weights"] in ("imagenet", "none")
    assert _positive(fr["wall_seconds"]) and fr["train_seconds"] is not None
    assert _positive(fr["estimate"]["total_seconds"]) and _positive(fr["estimate"]["estimate_over_wall"])


def test_zoom_overhead_benchmark_runs_and_reports(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "z.json"
    done = subprocess.run([sys.executable, str(SCRIPT.with_name("zoom_overhead.py")), "--image-size", "64",
                           "--batch", "2", "--iters", "1", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    ms = data["stages"]["milliseconds"]
    assert ms["ATACNet.forward"] > 0 and ms["crop_and_resize (roi_align)"] > 0
    assert data["stages"]["grid_sample_max_abs_difference"] < 1e-3   # the same crops, up to rounding
    assert data["graphs"]["system"]["allocator"] == "system"
    assert data["graphs"]["keep"]["allocator"].startswith(("glibc", "system"))


def test_checkpoint_on_its_test_set_beside_the_worst_case(speed, synth_root, tmp_path, capsys):
    """--checkpoint: a smoke-trained ATAC-Net model.pt timed on its run's own test images against
    the plain backbone (the zoom decisions its own), next to the fixed-batch worst case (every
    image through the crop pass). Fields only: no timing is asserted."""
    from atac.config import preset
    from atac.run import run

    c = preset("smoke")
    c.data_root, c.method, c.shots, c.device = str(synth_root), "atac", 2, "cpu"
    res = run(c, tmp_path / "run", progress=False)
    out = tmp_path / "speed.json"
    speed.main(TINY + ["--methods", "atac", "--sweeps", "none", "--checkpoint", str(tmp_path / "run" / "model.pt"),
                       "--json", str(out)])
    data = json.loads(out.read_text())
    worst = data["results"]["mobilenet_v2"]["atac"]
    assert worst["zoom_mode"] == "all" and worst["zoomed_fraction"] == 1.0
    ck = data["checkpoint"]
    n = res.metrics["n_test_normal"] + res.metrics["n_test_anomalous"]
    assert ck["method"] == "atac" and ck["backbone"] == "mobilenet_v2" and ck["n_test"] == n
    assert ck["n_test_normal"] == res.metrics["n_test_normal"] and ck["eval_batch_size"] == c.eval_batch_size
    assert 0 <= ck["zoomed"] <= n and 0.0 <= ck["zoom_rate"] <= 1.0
    # the model's own zoom decisions and scores, as its run recorded them
    assert ck["zoom_rate_normal"] == pytest.approx(res.metrics["zoom_rate_normal"])
    assert ck["zoom_rate_anomalous"] == pytest.approx(res.metrics["zoom_rate_anomalous"])
    assert ck["image_auroc"] == pytest.approx(res.metrics["image_auroc"], abs=1e-6)
    assert ck["recorded"]["image_auroc"] == res.metrics["image_auroc"]
    for key in ("infer_ratio", "infer_images_per_s", "plain_infer_images_per_s"):
        assert _positive(ck[key]), key
    pi = ck["paired_ratios"]["infer"]
    assert pi["n"] == 2 and len(ck["seconds"]["infer"]) == len(ck["seconds"]["plain_infer"]) == 2
    assert pi["ratios"] == pytest.approx([a / b for a, b in zip(ck["seconds"]["infer"], ck["seconds"]["plain_infer"])])
    assert ck["fixed_batch"]["zoomed_fraction"] == 1.0 and ck["fixed_batch"]["infer_ratio"] == worst["infer_ratio"]
    assert "checkpoint" in capsys.readouterr().out
    # --checkpoint-only: no fixed-batch blocks, no sweep estimate
    only = speed.main(TINY + ["--checkpoint", str(tmp_path / "run" / "model.pt"), "--checkpoint-only",
                              "--zoom", "model", "--json", str(tmp_path / "only.json")])
    assert only["results"] == {} and "sweeps" not in only and only["checkpoint"]["n_test"] == n
    with pytest.raises(SystemExit):
        speed.parse_args(["--checkpoint-only"])


def test_zoom_model_mode_reports_the_fraction_the_model_zooms(speed, tmp_path):
    data = speed.main(TINY + ["--methods", "deviation", "atac", "--zoom", "model", "--sweeps", "none",
                              "--json", str(tmp_path / "z.json")])
    rows = data["results"]["mobilenet_v2"]
    assert rows["atac"]["zoom_mode"] == "model" and 0.0 <= rows["atac"]["zoomed_fraction"] <= 1.0
    assert rows["deviation"]["zoom_mode"] is None and rows["deviation"]["zoomed_fraction"] is None
