"""End-to-end CPU runs on the synthetic data (weights none, tiny budget)."""

import csv
import json
import os
import re

import pytest
import torch

import atac.train as train_mod
from atac.cli import main
from atac.config import RunConfig, preset
from atac.run import run
from atac.train import BalancedBatches

REQUIRED = ["method", "backbone", "weights_source", "dataset", "category", "setting", "shots", "seed",
            "image_auroc", "image_auprc", "pixel_auroc", "n_train_normal", "n_train_anomalous",
            "n_test_normal", "n_test_anomalous", "train_seconds", "device", "git_commit", "config"]


def _cfg(synth_root, **kw) -> RunConfig:
    cfg = preset("smoke")
    cfg.data_root = str(synth_root)
    cfg.category = "weave"
    cfg.backbone = "mobilenet_v2"
    cfg.weights = "none"
    cfg.shots = 2
    cfg.epochs = 2
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.slow
def test_end_to_end_run_writes_the_record(synth_root, tmp_path):
    res = run(_cfg(synth_root), tmp_path / "r", progress=False)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for k in REQUIRED:
        assert k in m, k
    assert 0.0 <= m["image_auroc"] <= 1.0 and m["pixel_auroc"] is not None
    assert m["n_train_anomalous"] == 2 and m["n_train_normal"] == 16
    assert m["weights_source"].startswith("none")
    rows = list(csv.DictReader(open(tmp_path / "r" / "scores.csv")))
    assert len(rows) == m["n_test_normal"] + m["n_test_anomalous"]
    assert set(rows[0]) >= {"path", "label", "defect_type", "score"}
    assert not set(m["split"]["test"]) & set(m["split"]["train_anomalous"])
    assert (tmp_path / "r" / "model.pt").is_file() and not (tmp_path / "r" / "checkpoint.pt").exists()
    assert len(m["epoch_losses"]) == 2
    assert res.predictions.attention.shape[0] == len(rows)
    assert "n_test_empty_masks" not in m  # written only when there are any


@pytest.mark.slow
def test_same_seed_same_scores_and_resume_after_interruption(synth_root, tmp_path, monkeypatch):
    a = run(_cfg(synth_root), tmp_path / "a", progress=False)
    b = run(_cfg(synth_root), None, progress=False)
    assert torch.equal(a.predictions.scores, b.predictions.scores)

    calls = {"n": 0}
    real_save = train_mod.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        calls["n"] += 1
        if path.name == "checkpoint.pt" and calls["n"] == 1:
            raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(train_mod, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(synth_root), tmp_path / "c", progress=False)
    assert (tmp_path / "c" / "checkpoint.pt").is_file() and not (tmp_path / "c" / "metrics.json").exists()
    monkeypatch.setattr(train_mod, "atomic_torch_save", real_save)
    c = run(_cfg(synth_root), tmp_path / "c", progress=False)
    assert torch.allclose(a.predictions.scores, c.predictions.scores, atol=1e-5)
    assert c.metrics["epoch_losses"] == a.metrics["epoch_losses"]


def test_resume_refuses_a_different_config(synth_root, tmp_path, monkeypatch):
    def die(obj, path):
        torch.save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "atomic_torch_save", die)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(synth_root, epochs=1), tmp_path / "d", progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="different config.*lr"):
        run(_cfg(synth_root, epochs=1, lr=1e-3), tmp_path / "d", progress=False)
    # the test is atac.config.same_run: a precision other than the default's is part of the run
    with pytest.raises(ValueError, match=r"different config \(fields: amp\)"):
        run(_cfg(synth_root, epochs=1, amp="bf16"), tmp_path / "d", progress=False)
    # execution details may change: the checkpoint's one epoch is resumed (nothing left to train)
    res = run(_cfg(synth_root, epochs=1, device="cpu", eval_batch_size=3), tmp_path / "d", progress=False)
    assert len(res.metrics["epoch_losses"]) == 1


def test_balanced_batches_and_pseudo_anomaly_labels():
    cfg = RunConfig(batch_size=8, pseudo_prob=1.0, image_size=32)
    normals = torch.full((5, 3, 32, 32), 100, dtype=torch.uint8)
    normals[:, :, ::2] = 200  # texture, so a pasted, jittered patch changes pixels
    anomalies = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
    x, y = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(0)).next()
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y[4:].tolist() == [1.0] * 4  # the real anomalies
    assert y[:4].sum() >= 1  # pseudo-anomalies (p = 1, unless a patch had zero area)
    cfg.pseudo_prob = 0.0
    _, y = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(0)).next()
    assert y.tolist() == [0.0] * 4 + [1.0] * 4


@pytest.mark.slow
def test_cli_train_and_evaluate(synth_root, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--preset", "smoke", "--data-root", str(synth_root), "--category", "grid",
               "--backbone", "resnet18", "--weights", "none", "--shots", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "image AUROC" in capsys.readouterr().out
    rc = main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "ev"), "--quiet"])
    assert rc == 0
    first = json.loads((out / "metrics.json").read_text())["image_auroc"]
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())["image_auroc"]
    assert again == pytest.approx(first, abs=1e-6)
    before = (out / "metrics.json").read_text()
    assert main(["evaluate", str(out / "model.pt"), "--out", str(out), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err and (out / "metrics.json").read_text() == before
    (out / "metrics.json").write_text("[]")  # not a training record: protected, not overwritten
    rc = main(["train", "--preset", "smoke", "--data-root", str(synth_root), "--category", "grid",
               "--weights", "none", "--out", str(out), "--quiet"])
    assert rc == 2 and "not the record" in capsys.readouterr().err


def test_cli_errors_are_clear(synth_root, tmp_path, capsys):
    rc = main(["train", "--preset", "smoke", "--data-root", str(synth_root), "--shots", "500",
               "--weights", "none", "--out", str(tmp_path / "x")])
    assert rc == 2 and "shots=500" in capsys.readouterr().err
    rc = main(["train", "--dataset", "mvtec_ad", "--data-root", str(tmp_path), "--category", "carpet",
               "--weights", "none", "--out", str(tmp_path / "y")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(["train", "--setting", "hard", "--weights", "none"])
    assert rc == 2 and "known_type" in capsys.readouterr().err


@pytest.mark.slow
def test_finished_results_are_never_overwritten_by_another_run(synth_root, tmp_path, capsys):
    args = ["train", "--preset", "smoke", "--data-root", str(synth_root), "--weights", "none",
            "--backbone", "mobilenet_v2", "--shots", "1", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(args) == 0
    before = (tmp_path / "r" / "metrics.json").read_text()
    assert main(args) == 0  # same config: reported, not retrained
    assert "already holds this run" in capsys.readouterr().out
    assert main(args[:-3] + ["--seed", "5", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "different run" in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.json").read_text() == before
    # a hand-edited record without its image AUROC, or with one outside [0, 1]: named, kept
    for edit, error in ((lambda m: m.pop("image_auroc"), "metrics.json: no image_auroc"),
                        (lambda m: m.update(image_auroc=1.7),
                         "image_auroc must be a number in [0, 1], got 1.7")):
        m = json.loads(before)
        edit(m)
        (tmp_path / "r" / "metrics.json").write_text(json.dumps(m))
        assert main(args) == 2
        err = capsys.readouterr().err
        assert error in err and "nothing was overwritten" in err
        assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == m


def test_an_output_folder_in_use_is_refused(synth_root, tmp_path, monkeypatch):
    from atac.locks import RunLock

    out = tmp_path / "busy"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(ValueError, match="in use by another run"):
            run(_cfg(synth_root), out, progress=False)
    (out / ".lock").write_text("999999999")  # a stale lock: its process is gone
    with RunLock(out):
        assert (out / ".lock").read_text() == str(os.getpid())
    assert not (out / ".lock").exists()
    # a failure while taking the lock leaves no descriptor (and no lock) behind
    def full_disk(fd, n):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "ftruncate", full_disk)
        with pytest.raises(OSError, match="No space"):
            with RunLock(out):
                pass
    with RunLock(out):
        pass
    # a lock file left by a dead run whose pid now belongs to a live process is stale too
    (out / ".lock").write_text(str(os.getppid()))
    with RunLock(out):
        with pytest.raises(ValueError, match=f"in use by another run \\(process {os.getpid()}\\)"):
            with RunLock(out):
                pass
    assert not (out / ".lock").exists()


def test_scores_csv_gives_the_recorded_metrics_exactly(synth_root, tmp_path):
    from atac.evaluate import image_metrics

    res = run(_cfg(synth_root, epochs=1), tmp_path / "r", progress=False)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "r" / "scores.csv")))
    labels = [int(r["label"]) for r in rows]
    scores = [float(r["score"]) for r in rows]
    assert scores == [float(v) for v in res.predictions.scores]  # each score reads back as itself
    assert [float(r["score_zoom"]) for r in rows] == [float(v) for v in res.predictions.score_zoom]
    again = image_metrics(labels, scores)
    assert again["image_auroc"] == m["image_auroc"] and again["image_auprc"] == m["image_auprc"]


def test_a_full_disk_during_training_names_the_checkpoint(synth_root, tmp_path, monkeypatch, capsys):
    import shutil
    from types import SimpleNamespace

    real_save = torch.save

    def checkpoint_fails(obj, f):  # the disk fills up while the first checkpoint is written
        if ".checkpoint.pt." not in str(f):
            return real_save(obj, f)
        with open(f, "wb") as fh:
            fh.write(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                           "writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", checkpoint_fails)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=100, used=100, free=0))
    out = tmp_path / "full"
    rc = main(["train", "--preset", "smoke", "--data-root", str(synth_root), "--category", "weave",
               "--weights", "none", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot write {out / 'checkpoint.pt'}: no space left on device" in err
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary file left behind


def _nan_at_call(monkeypatch, n: int) -> None:
    """From now on, the training loss of the n-th step (counted from 1) is NaN."""
    import atac.models.atacnet as atacnet_mod  # where ATACNet.training_loss computes the loss

    calls = {"n": 0}
    real = atacnet_mod.zoom_loss

    def loss(*args):
        calls["n"] += 1
        value = real(*args)
        return value * float("nan") if calls["n"] == n else value

    monkeypatch.setattr(atacnet_mod, "zoom_loss", loss)


def test_a_diverging_run_stops_at_the_step_naming_the_checkpoint_to_delete(synth_root, tmp_path, monkeypatch):
    from conftest import count_training_steps

    cfg = dict(epochs=3, steps_per_epoch=2)
    out = tmp_path / "nan"
    steps = count_training_steps(monkeypatch)
    _nan_at_call(monkeypatch, 3)  # epoch 2, step 1
    with pytest.raises(ValueError, match=r"diverged: the loss is nan at epoch 2, step 1 of 2 .*delete "
                                         + re.escape(str(out / "checkpoint.pt"))):
        run(_cfg(synth_root, **cfg), out, progress=False)
    assert steps["n"] == 3  # stopped at that step
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and torch.isfinite(torch.tensor(state["losses"])).all()  # epoch 1 only


def test_a_checkpoint_with_non_finite_losses_or_weights_is_never_resumed(synth_root, tmp_path, monkeypatch):
    def die(obj, path):  # killed right after the first checkpoint
        torch.save(obj, path)
        raise KeyboardInterrupt

    out = tmp_path / "r"
    monkeypatch.setattr(train_mod, "atomic_torch_save", die)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(synth_root), out, progress=False)
    monkeypatch.undo()
    good = torch.load(out / "checkpoint.pt", weights_only=False)

    def nan_loss(st):  # as an earlier atac saved a diverged epoch
        st["losses"][0] = float("nan")

    def inf_weight(st):
        next(v for v in st["model"].values() if v.is_floating_point()).fill_(float("inf"))

    for what, edit in (("the loss of epoch 1 is nan", nan_loss), ("the weight .* is not finite", inf_weight)):
        bad = torch.load(out / "checkpoint.pt", weights_only=False)
        edit(bad)
        torch.save(bad, out / "checkpoint.pt")
        with pytest.raises(ValueError, match=re.escape(f"{out / 'checkpoint.pt'} holds a run that diverged")
                                             + rf" \({what}\); it is not resumed from: delete it"):
            run(_cfg(synth_root), out, progress=False)
        torch.save(good, out / "checkpoint.pt")
    assert not (out / "metrics.json").exists()


def test_on_an_accelerator_the_loss_is_checked_once_per_epoch(synth_root, tmp_path, monkeypatch):
    from conftest import count_training_steps

    steps = count_training_steps(monkeypatch)
    monkeypatch.setattr(train_mod, "_checks_each_step", lambda device: False)  # CUDA's check
    _nan_at_call(monkeypatch, 3)
    with pytest.raises(ValueError, match=r"diverged: the mean loss of epoch 2 is nan \(on cpu the loss is "
                                         r"checked once per epoch\)"):
        run(_cfg(synth_root, epochs=3, steps_per_epoch=2), tmp_path / "r", progress=False)
    assert steps["n"] == 4 and torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_cli_a_learning_rate_that_diverges(synth_root, tmp_path, capsys):
    rc = main(["train", "--preset", "smoke", "--data-root", str(synth_root), "--weights", "none",
               "--lr", "1e30", "--quiet", "--out", str(tmp_path / "big")])
    err = capsys.readouterr().err
    assert rc == 2 and "training diverged: the loss is" in err and "epoch 1, step" in err
    assert "lr 1e+30" in err and not (tmp_path / "big" / "metrics.json").exists()


def _with_empty_masks(synth_root, tmp_path, defect_type: str):
    """A copy of the synthetic weave category whose ``defect_type`` masks mark no pixel."""
    import shutil

    import numpy as np
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(synth_root / "synthetic" / "weave", root / "synthetic" / "weave")
    for mask in (root / "synthetic" / "weave" / "ground_truth" / defect_type).iterdir():
        Image.fromarray(np.zeros_like(np.array(Image.open(mask)))).save(mask)
    return root


def test_the_record_counts_the_empty_masks_of_the_test_set(synth_root, tmp_path, capsys):
    root = _with_empty_masks(synth_root, tmp_path, "hole")
    out = tmp_path / "r"
    assert main(["train", "--preset", "smoke", "--data-root", str(root), "--category", "weave",
                 "--shots", "2", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    n_holes = sum(1 for rel in m["split"]["test"] if "/hole/" in rel)
    assert n_holes > 0 and m["n_test_empty_masks"] == n_holes
    assert main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_test_empty_masks"] == n_holes


def test_cli_data_warnings_are_one_line_each_other_warnings_as_before(synth_root, tmp_path, capsys,
                                                                      monkeypatch):
    import warnings

    import atac.cli_run as cli_run
    from atac.data.datasets import DataWarning

    root = _with_empty_masks(synth_root, tmp_path, "hole")
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["train", "--preset", "smoke", "--data-root", str(root), "--category", "weave",
                     "--shots", "2", "--quiet", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^atac: warning: \d+ anomalous image\(s\) have an empty ground-truth mask and are "
                     r"left out of pixel metrics: .*hole", err, re.M)
    assert "DataWarning" not in err and "warnings.warn" not in err
    assert warnings.showwarning is before  # main puts the hook back

    def two_warnings(args):
        warnings.warn("something else", UserWarning)
        warnings.warn("about the data", DataWarning)
        return 0

    monkeypatch.setattr(cli_run, "cmd_methods", two_warnings)
    with pytest.warns(UserWarning, match="something else") as rec:  # passed on as it was
        assert main(["methods"]) == 0
    assert [str(w.message) for w in rec] == ["something else"]
    assert capsys.readouterr().err == "atac: warning: about the data\n"
