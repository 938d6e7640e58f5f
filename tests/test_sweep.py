"""Sweeps: grid expansion, filters, the atomic results file, resuming, and every executor.

Runs use the ``smoke`` budget on the session's small synthetic dataset (a couple of seconds each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from atac.cli import main
from atac.results import load_records
from atac.sweep import append_record, load_sweep, run_id, run_sweep, select, status


def write_sweep(folder: Path, synth_root: Path, grid: list[dict], base: dict | None = None,
                name: str = "t") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "results": f"results/{name}.jsonl",
        "base": {"preset": "smoke", "data_root": str(synth_root), **(base or {})},
        "grid": grid}))
    return path


def test_expansion_order_filters_and_ids(synth_root, tmp_path):
    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": ["weave", "grid"], "method": ["deviation", "atac"],
         "shots": 2, "seed": [0, 1]},
        {"dataset": "synthetic", "category": "weave", "method": "atac", "shots": [1, 2], "seed": 0},
        {"dataset": "synthetic", "category": "grid", "method": "atac", "shots": 3, "seed": 0,
         "patch_area": [0.02, 0.1]},   # a pair-valued field is one value, not an axis
    ])
    sweep = load_sweep(path)
    assert len(sweep.runs) == 8 + 1 + 1      # (weave, atac, 2 shots, seed 0) is in two blocks: once
    assert [r.config.patch_area for r in sweep.runs if r.config.shots == 3] == [(0.02, 0.1)]
    assert [r.config.seed for r in sweep.runs] == sorted(r.config.seed for r in sweep.runs)
    assert len({r.run_id for r in sweep.runs}) == len(sweep.runs)
    assert sweep.results == (tmp_path / "results" / "t.jsonl").resolve()
    assert sweep.runs[0].config.epochs == 1 and sweep.runs[0].config.preset == "smoke"
    assert len(select(sweep.runs, ["method=atac", "category=weave"])) == 3
    assert len(select(sweep.runs, ["seed=1"])) == 4
    with pytest.raises(ValueError, match="unknown config field 'colour'"):
        select(sweep.runs, ["colour=red"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        select(sweep.runs, ["seed"])
    # the id changes with the budget, not with the device or the data folder
    cfg = sweep.runs[0].config
    same = type(cfg).from_dict({**cfg.to_dict(), "device": "cpu", "data_root": "/elsewhere"})
    other = type(cfg).from_dict({**cfg.to_dict(), "epochs": 2})
    assert run_id(same) == run_id(cfg) != run_id(other)


@pytest.mark.parametrize("grid, message", [
    ([{"dataset": "synthetic", "shots": 0}], "grid block 1: config field 'shots'"),
    ([{"dataset": "synthetic", "seed": []}], "'seed' is an empty list"),
    ([{"datset": "synthetic"}], "unknown config field"),
])
def test_bad_sweep_files_name_the_problem(synth_root, tmp_path, grid, message):
    with pytest.raises(ValueError, match=message):
        load_sweep(write_sweep(tmp_path, synth_root, grid))


def test_unknown_top_level_key_and_unknown_method(synth_root, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ngrids: []\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_sweep(path)
    with pytest.raises(ValueError, match="grid block 1: unknown method 'nosuch'"):
        load_sweep(write_sweep(tmp_path, synth_root, [{"method": ["atac", "nosuch"], "seed": 0}]))


def test_a_sweep_file_reads_numbers_as_written_and_refuses_a_key_given_twice(synth_root, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nresults: results/s.jsonl\nbase:\n  preset: smoke\n  data_root: {synth_root}\n"
                    "  lr: 1e-3\ngrid:\n  - seed: [0, 1]\n    weight_decay: 2E-5\n")
    sweep = load_sweep(path)
    assert [(r.config.lr, r.config.weight_decay) for r in sweep.runs] == [(1e-3, 2e-5)] * 2
    path.write_text(path.read_text() + "name: again\n")
    with pytest.raises(ValueError, match=r"(?s)cannot read sweep file .*s\.yaml.*found the key 'name' twice "
                                         r"\(first on line 1\)"):
        load_sweep(path)


def test_append_is_atomic_and_never_duplicates(tmp_path):
    res = tmp_path / "r.jsonl"
    assert append_record(res, {"sweep": {"run_id": "a"}, "config": {}, "image_auroc": 0.5})
    assert not append_record(res, {"sweep": {"run_id": "a"}, "config": {}, "image_auroc": 0.9})
    assert append_record(res, {"sweep": {"run_id": "b"}, "config": {}, "image_auroc": 0.7})
    recs = load_records(res)
    assert [r["sweep"]["run_id"] for r in recs] == ["a", "b"] and recs[0]["image_auroc"] == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_append_keeps_other_lines_and_stores_the_split_once(tmp_path):
    from atac.results import split_store_path

    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps({"note": "a record without a run id", "image_auroc": 0.5}) + "\n")
    split = {"setting": "general", "shots": 1, "seed": 0, "known_type": None,
             "train_normal": ["good/0.png"], "train_anomalous": ["crack/0.png"], "test": ["good/1.png"]}
    for rid in ("a", "b"):                                  # two methods of one seed: one split
        assert append_record(res, {"sweep": {"run_id": rid}, "config": {}, "split": split, "image_auroc": 0.5})
    recs = load_records(res)
    assert recs[0] == {"note": "a record without a run id", "image_auroc": 0.5}
    assert [r["split"] for r in recs[1:]] == [split, split]
    assert len(json.loads(split_store_path(res).read_text())) == 1 and "good/1.png" not in res.read_text()


def test_a_recorded_run_is_skipped_whatever_its_execution_details(synth_root, tmp_path):
    """The sweep's "already recorded" check is atac.config.same_run: a record made on another
    device, data folder or evaluation batch is this run; one whose identity differs is not."""
    path = write_sweep(tmp_path, synth_root, [{"dataset": "synthetic", "category": "weave",
                                                "method": "deviation", "shots": 2, "seed": [0, 1]}])
    sweep = load_sweep(path)
    a, b = sweep.runs
    elsewhere = {**a.config.to_dict(), "device": "cuda:3", "data_root": "/elsewhere", "eval_batch_size": 7}
    edited = {**b.config.to_dict(), "lr": 1e-3}
    for r, config in ((a, elsewhere), (b, edited)):
        append_record(sweep.results, {"sweep": {"run_id": r.run_id}, "config": config, "image_auroc": 0.5})
    assert [st.split(" ")[0] for _, st in status(sweep)] == ["done", "pending"]
    assert run_sweep(sweep, only=["seed=0"], threads=1, progress=False).skipped == 1


def test_local_sweep_resumes_without_redoing_and_pool_matches_serial(synth_root, tmp_path):
    grid = [{"dataset": "synthetic", "category": "weave", "method": ["deviation", "atac"], "shots": 2,
             "seed": [0, 1]}]
    sweep = load_sweep(write_sweep(tmp_path, synth_root, grid))
    # one thread everywhere: the same arithmetic in-process and in the pool's workers
    first = run_sweep(sweep, only=["seed=0"], threads=1, progress=False)
    assert (first.finished, first.skipped, first.failed) == (2, 0, {})
    recs = load_records(sweep.results)
    assert {r["sweep"]["run_id"] for r in recs} == {r.run_id for r in sweep.runs if r.config.seed == 0}
    assert all(r["config"]["epochs"] == 1 and r["sweep"]["name"] == "t" for r in recs)
    states = dict((r.run_id, s) for r, s in status(sweep))
    assert sum(s.startswith("done") for s in states.values()) == 2
    second = run_sweep(sweep, threads=1, progress=False)          # only the two seed-1 runs are left
    assert (second.finished, second.skipped) == (2, 2)
    again = run_sweep(sweep, progress=False)
    assert (again.finished, again.skipped) == (0, 4)
    serial = {r["sweep"]["run_id"]: r["image_auroc"] for r in load_records(sweep.results)}
    assert len(serial) == 4 == len(load_records(sweep.results))
    sessions = [json.loads(x) for x in sweep.results.with_name("t.sessions.jsonl").read_text().splitlines()]
    assert [s["runs_finished"] for s in sessions] == [2, 2]

    # the same runs on a pool of two workers (fresh results file and run folders) give the same AUROCs
    pooled = load_sweep(sweep.file, runs_dir=tmp_path / "pool-runs", results=tmp_path / "pool.jsonl")
    rep = run_sweep(pooled, jobs=2, threads=1, progress=False)
    assert rep.finished == 4 and not rep.failed
    pool = {r["sweep"]["run_id"]: r["image_auroc"] for r in load_records(pooled.results)}
    assert pool.keys() == serial.keys()
    for k in serial:
        assert pool[k] == pytest.approx(serial[k], abs=1e-6)


def test_a_failed_run_does_not_stop_the_sweep(synth_root, tmp_path, capsys):
    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": ["weave", "nosuchcat"], "method": "deviation", "shots": 2,
         "seed": 0}])
    assert main(["sweep", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed: nosuchcat-deviation" in err and "1 runs finished" in err
    assert len(load_records(tmp_path / "results" / "t.jsonl")) == 1


def test_submitit_local_executor_runs_a_two_run_sweep(synth_root, tmp_path, capsys):
    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": "weave", "method": "deviation", "shots": 2, "seed": [0, 1]}])
    assert main(["sweep", str(path), "--executor", "submitit-local", "--jobs", "2", "--threads", "1",
                 "--quiet"]) == 0
    recs = load_records(tmp_path / "results" / "t.jsonl")
    assert len(recs) == 2 and {r["seed"] for r in recs} == {0, 1}
    assert all(r["sweep"]["executor"] == "submitit-local" for r in recs)
    assert list((tmp_path / "runs" / "t" / "submitit").glob("*_result.pkl"))   # submitit ran them
    assert main(["sweep", str(path), "--list"]) == 0
    assert "2 runs: 2 done" in capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_sweep_finishes_without_losing_or_redoing_runs(synth_root, tmp_path):
    grid = [{"dataset": "synthetic", "category": "weave", "method": "deviation", "shots": 2,
             "seed": [0, 1, 2, 3]}]
    path = write_sweep(tmp_path, synth_root, grid, base={"epochs": 3, "steps_per_epoch": 3})
    results = tmp_path / "results" / "t.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "atac.cli", "sweep", str(path), "--quiet", "--jobs", "2", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (results.is_file() and load_records(results)):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)      # the whole sweep, workers included, mid-way
    proc.wait()
    before = {r["sweep"]["run_id"]: r for r in load_records(results)}
    assert 1 <= len(before) < 4
    time.sleep(0.5)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = load_records(results)
    ids = [r["sweep"]["run_id"] for r in after]
    assert len(ids) == len(set(ids)) == 4
    for r in after:                            # the runs finished before the kill were kept as they were
        if r["sweep"]["run_id"] in before:
            assert r == before[r["sweep"]["run_id"]]
    assert f"{len(before)} already recorded" in done.stderr


def test_reproduce_a_recorded_run(synth_root, tmp_path, capsys):
    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": "weave", "method": "atac", "shots": 2, "seed": 3}])
    sweep = load_sweep(path)
    run_sweep(sweep, threads=1, progress=False)
    rid = sweep.runs[0].run_id
    res = str(sweep.results)
    assert main(["reproduce", res, rid, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "reproduced within 0.01" in out and "+0.0000" in out
    assert main(["reproduce", res, rid, "--out", str(tmp_path / "again"), "--quiet"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["reproduce", res, "nosuch", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert f"no run 'nosuch' (runs there: {rid})" in capsys.readouterr().err


def test_table_of_a_file_without_ten_shot_runs(synth_root, tmp_path, capsys):
    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": "weave", "method": "deviation", "shots": 1, "seed": 0}])
    run_sweep(load_sweep(path), threads=1, progress=False)
    assert main(["table", "table1", "--results", str(tmp_path / "results" / "t.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "synthetic / weave" in out and "Ladder order" not in out


def test_identity_keeps_precision_and_the_flags_win(synth_root, tmp_path, capsys):
    from atac.config import RunConfig

    path = write_sweep(tmp_path, synth_root, [
        {"dataset": "synthetic", "category": "weave", "method": "deviation", "shots": 2,
         "amp": ["auto", "bf16", False], "seed": 0, "clahe": [True, False]}],
        base={"data_root": "/missing/root"})
    sweep = load_sweep(path)
    assert len(sweep.runs) == 6                      # auto, bf16 and off (YAML false) are three runs
    assert {r.config.amp for r in sweep.runs} == {"auto", "bf16", "off"}
    assert len(select(sweep.runs, ["clahe=false", "amp=bf16"])) == 1      # typed comparison
    assert len(select(sweep.runs, ["lr=2e-4"])) == 6
    cfg = RunConfig.from_dict({"amp": False})
    assert cfg.amp == "off"
    # --data-root wins over the file's data_root (it is not part of a run's identity)
    assert main(["sweep", str(path), "--data-root", str(synth_root), "--only", "amp=auto",
                 "--only", "clahe=true", "--threads", "1", "--quiet"]) == 0
    assert len(load_records(tmp_path / "results" / "t.jsonl")) == 1
    assert main(["sweep", str(path), "--only", "seed=7", "--list"]) == 0
    assert "matches none of the 6 runs" in capsys.readouterr().err


def _six_seed_sweep(tmp_path, synth_root, steps: int, *extra: str) -> tuple[list[str], dict]:
    """A six-run DevNet sweep file (steps epochs x steps steps) and the command line that runs it."""
    grid = [{"dataset": "synthetic", "category": "weave", "method": "deviation", "shots": 2,
             "seed": [0, 1, 2, 3, 4, 5]}]
    path = write_sweep(tmp_path, synth_root, grid, base={"epochs": steps, "steps_per_epoch": steps})
    cmd = [sys.executable, "-m", "atac.cli", "sweep", str(path), "--quiet", *extra, "--threads", "1"]
    return cmd, {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_ctrl_c_stops_a_pooled_sweep_at_once(synth_root, tmp_path):
    cmd, env = _six_seed_sweep(tmp_path, synth_root, 4, "--jobs", "2")
    # a shell that starts jobs in the background (as CI may) leaves SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the sweep the default disposition, as a terminal does
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "runs" / "t"
    deadline = time.time() + 240
    while time.time() < deadline and not list(runs.glob("*/checkpoint.pt")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)       # a terminal's Ctrl-C: the whole process group
    t0 = time.time()
    rc = proc.wait(timeout=60)
    assert rc == 130 and time.time() - t0 < 30
    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns) for p in runs.rglob("*") if p.is_file())

    first = snapshot()
    time.sleep(3.0)
    assert snapshot() == first               # no orphan worker goes on training or writing
    results = tmp_path / "results" / "t.jsonl"
    n_before = len(load_records(results)) if results.is_file() else 0
    assert n_before < 6                      # the queue was not worked off after Ctrl-C
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ids = [r["sweep"]["run_id"] for r in load_records(results)]
    assert len(ids) == len(set(ids)) == 6


@pytest.mark.slow
def test_a_terminated_sweep_still_logs_its_session(synth_root, tmp_path):
    cmd, env = _six_seed_sweep(tmp_path, synth_root, 3)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results" / "t.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (results.is_file() and load_records(results)):
        time.sleep(0.2)
    proc.terminate()                         # `kill PID` (SIGTERM) of the sweep process
    assert proc.wait(timeout=60) != 0
    n = len(load_records(results))
    assert 1 <= n < 6
    sessions = [json.loads(line) for line in
                (tmp_path / "results" / "t.sessions.jsonl").read_text().splitlines()]
    assert sessions[-1]["interrupted"] is True and sessions[-1]["runs_finished"] == n
