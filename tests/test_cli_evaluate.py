"""atac evaluate: the model's own recorded split by default; another split (--seed, --shots,
another category, ...) only when its test set holds none of the model's training files (the same
file through a symlink, or a byte-identical copy, counts)."""

import json
import os
import re
import shutil

import pytest
import torch

from atac.cli import main
from atac.data.datasets import load_index
from atac.data.splits import make_split


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """A smoke model (weave, 2 shots, seed 0) trained on a copy of the synthetic data."""
    root = tmp_path_factory.mktemp("evaldata")
    for cat in ("weave", "grid"):
        shutil.copytree(synth_root / "synthetic" / cat, root / "synthetic" / cat)
    out = root / "run"
    assert main(["train", "--preset", "smoke", "--data-root", str(root), "--category", "weave",
                 "--shots", "2", "--seed", "0", "--quiet", "--out", str(out)]) == 0
    return root, out


def _evaluate(model, out, *flags):
    return main(["evaluate", str(model), "--out", str(out), "--quiet", *flags])


def test_model_pt_records_its_split_and_training_files(trained):
    root, out = trained
    state = torch.load(out / "model.pt", weights_only=False)
    record = json.loads((out / "metrics.json").read_text())
    assert state["split"] == record["split"]
    files = state["training_files"]
    assert [f["rel"] for f in files] == record["split"]["train_normal"] + record["split"]["train_anomalous"]
    weave = root / "synthetic" / "weave"
    assert files[0]["path"] == os.path.realpath(weave / files[0]["rel"])
    assert files[0]["size"] == (weave / files[0]["rel"]).stat().st_size and len(files[0]["sha256"]) == 64


def test_by_default_the_model_is_evaluated_on_its_own_recorded_split(trained, tmp_path, capsys):
    root, out = trained
    # a test file added to the data folder later is not part of the model's split
    extra = root / "synthetic" / "weave" / "test" / "good" / "zz_added.png"
    shutil.copy(root / "synthetic" / "weave" / "test" / "good" / "000.png", extra)
    try:
        assert _evaluate(out / "model.pt", tmp_path / "ev") == 0
    finally:
        extra.unlink()
    assert "test set: the model's own split (recorded in model.pt)" in capsys.readouterr().out
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    trained_record = json.loads((out / "metrics.json").read_text())
    assert ev["split"] == trained_record["split"]
    # one record layout (atac.run.run_record): the training run's, less what training measured
    # (the zoom diagnostics too), plus the checkpoint
    training = {"train_seconds", "epoch_losses", "train_telemetry", "zoom_diagnostics"}
    assert set(ev) == set(trained_record) - training | {"checkpoint"}
    assert ev["checkpoint"] == str(out / "model.pt") and ev["compiled"] is False
    for k in ("image_auroc", "image_auprc", "pixel_auroc", "weights_source", "precision", "config"):
        assert ev[k] == trained_record[k], k


def test_another_seed_whose_test_set_holds_training_anomalies_is_refused(trained, tmp_path, capsys):
    root, out = trained
    index = load_index("synthetic", "weave", root)
    mine = {s.rel for s in make_split(index, 2, 0).train_anomalous}
    theirs = {s.rel for s in make_split(index, 2, 1).test}
    assert mine & theirs  # seed 1's test set holds seed 0's training anomalies
    assert _evaluate(out / "model.pt", tmp_path / "ev", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert re.search(r"the test set asked for \(seed 1; the model was trained with seed 0\) holds "
                     rf"{len(mine & theirs)} of the 18 files .*model\.pt was trained on", err)
    for rel in mine & theirs:
        assert f"{rel} (the same file as training file {rel})" in err
    assert not (tmp_path / "ev").exists()  # nothing written


def test_a_symlink_to_or_a_copy_of_a_training_file_is_caught(trained, tmp_path, capsys):
    root, out = trained
    grid_good = root / "synthetic" / "grid" / "test" / "good"
    weave_train = root / "synthetic" / "weave" / "train" / "good"
    link, copy = grid_good / "zz_link.png", grid_good / "zz_copy.png"
    os.symlink(weave_train / "003.png", link)
    shutil.copy(weave_train / "005.png", copy)
    try:
        assert _evaluate(out / "model.pt", tmp_path / "ev", "--category", "grid") == 2
    finally:
        link.unlink()
        copy.unlink()
    err = capsys.readouterr().err
    assert "holds 2 of the 18 files" in err
    assert "test/good/zz_link.png (the same file as training file train/good/003.png)" in err
    assert "test/good/zz_copy.png (a byte-identical copy as training file train/good/005.png)" in err
    # without them, another category is a test set the model has not seen
    assert _evaluate(out / "model.pt", tmp_path / "ev", "--category", "grid") == 0
    assert "test set: category grid, none of the model's 18 training files in it" in capsys.readouterr().out


def test_an_older_model_pt_without_its_split_draws_it_from_its_config(trained, tmp_path, capsys):
    root, out = trained
    state = torch.load(out / "model.pt", weights_only=False)
    old = {k: state[k] for k in ("config", "model", "weights_source")}  # as atac wrote it before
    torch.save(old, tmp_path / "model.pt")
    assert _evaluate(tmp_path / "model.pt", tmp_path / "ev") == 0
    assert "test set: the model's own split (drawn from its config)" in capsys.readouterr().out
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["split"] == json.loads((out / "metrics.json").read_text())["split"]
    assert _evaluate(tmp_path / "model.pt", tmp_path / "ev2", "--seed", "1") == 2
    assert "holds" in capsys.readouterr().err and not (tmp_path / "ev2").exists()


def test_a_file_of_the_recorded_split_missing_from_the_data_is_named(trained, tmp_path, capsys):
    root, out = trained
    rel = json.loads((out / "metrics.json").read_text())["split"]["test"][0]
    gone, away = root / "synthetic" / "weave" / rel, tmp_path / "away.png"
    shutil.move(gone, away)
    try:
        assert _evaluate(out / "model.pt", tmp_path / "ev") == 2
    finally:
        shutil.move(away, gone)
    err = capsys.readouterr().err
    assert "model.pt: 1 file(s) of the recorded split are not in" in err and rel in err


def test_on_another_split_the_training_counts_are_the_models(trained, tmp_path, capsys):
    """Evaluated on another split, n_train_normal / n_train_anomalous count what the model was
    trained on (its recorded split), not the other split's training part; without a recorded split
    they are left out."""
    root, out = trained
    own = json.loads((out / "metrics.json").read_text())
    assert _evaluate(out / "model.pt", tmp_path / "ev", "--category", "grid", "--shots", "1") == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(ev["split"]["train_anomalous"]) == 1 and own["n_train_anomalous"] == 2
    assert (ev["n_train_normal"], ev["n_train_anomalous"]) == (own["n_train_normal"], own["n_train_anomalous"])
    state = torch.load(out / "model.pt", weights_only=False)
    torch.save({k: v for k, v in state.items() if k != "split"}, tmp_path / "model.pt")
    assert _evaluate(tmp_path / "model.pt", tmp_path / "ev2", "--category", "grid", "--shots", "1") == 0
    ev2 = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert "n_train_normal" not in ev2 and "n_train_anomalous" not in ev2
    capsys.readouterr()
