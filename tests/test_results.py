"""atac.results: the code's commit (cached per process, dirty only for code changes), the split
store, records checked on read, and atomic writes on a full disk."""

import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from atac.results import _ask_git, git_commit

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@needs_git
def test_dirty_means_the_code_changed_and_the_answer_is_kept(tmp_path):
    code = tmp_path / "pkg"
    code.mkdir()
    (code / "mod.py").write_text("x = 1\n")
    (tmp_path / "results.jsonl").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    first = git_commit(code)
    assert first and not first.endswith("+dirty")
    (tmp_path / "results.jsonl").write_text("{}\n{}\n")   # a sweep appending its results
    assert not _ask_git(code).endswith("+dirty")
    (code / "mod.py").write_text("x = 2\n")                 # the code itself changed
    assert _ask_git(code).endswith("+dirty")
    _git(tmp_path, "commit", "-qam", "two")
    assert _ask_git(code) != first
    assert git_commit(code) == first                        # this process still runs what it loaded


def _record(i, seed=0, test=("good/1.png", "crack/2.png")):
    return {"image_auroc": 0.5 + i / 100, "sweep": {"run_id": f"r{i}"},
            "split": {"setting": "general", "shots": 1, "seed": seed, "known_type": None,
                      "train_normal": ["good/0.png"], "train_anomalous": ["crack/1.png"], "test": list(test)}}


def test_split_files_are_stored_once_and_loaded_back_whole(tmp_path):
    import json

    from atac.results import load_records, split_store_path, write_records

    res = tmp_path / "r.jsonl"
    records = [_record(0), _record(1), _record(2, seed=1, test=("good/9.png", "crack/3.png")),
               {"image_auroc": 0.9}]                       # no split: written as it is
    write_records(res, records)
    store = json.loads(split_store_path(res).read_text())
    assert len(store) == 2                                  # two distinct splits, each once
    lines = [json.loads(x) for x in res.read_text().splitlines()]
    assert "test" not in lines[0]["split"] and lines[0]["split"]["files"].startswith("sha256:")
    assert lines[0]["split"]["seed"] == 0 and lines[3] == {"image_auroc": 0.9}
    assert load_records(res) == records                     # whole again, in the split's own key order
    assert list(load_records(res)[0]["split"]) == list(records[0]["split"])
    write_records(res, load_records(res))                   # rewriting is stable
    assert load_records(res) == records and json.loads(split_store_path(res).read_text()) == store


def test_a_missing_or_edited_split_store_is_named(tmp_path):
    import json

    from atac.results import load_records, split_store_path, write_records

    res = tmp_path / "r.jsonl"
    write_records(res, [_record(0)])
    store_path = split_store_path(res)
    store = json.loads(store_path.read_text())
    (key, files), = store.items()
    files["test"].append("crack/99.png")                    # an entry that no longer matches its hash
    store_path.write_text(json.dumps({key: files}))
    with pytest.raises(ValueError, match="does not match its hash"):
        load_records(res)
    store_path.unlink()
    with pytest.raises(ValueError, match=r"record 1: its split files sha256:\w+ are not in .*r\.splits\.json"):
        load_records(res)


@pytest.mark.parametrize("field,value,error", [
    ("image_auroc", "0.9", "image_auroc must be a number in [0, 1], got '0.9'"),
    ("image_auroc", 1.7, "image_auroc must be a number in [0, 1], got 1.7"),
    ("image_auroc", None, "image_auroc must be a number in [0, 1], got None"),
    ("image_auroc", True, "image_auroc must be a number in [0, 1], got True"),
    ("pixel_auroc", -0.1, "pixel_auroc must be a number in [0, 1], got -0.1"),
    ("image_auprc", "n/a", "image_auprc must be a number in [0, 1], got 'n/a'"),
    ("view_auroc", {"full": 0.8, "zoom": "0.7"}, "view_auroc.zoom must be a number in [0, 1], got '0.7'"),
    ("head_auroc", [0.5], "head_auroc must map names to numbers in [0, 1], got [0.5]"),
    ("shots", "10", "shots must be a whole number, got '10'"),
])
def test_records_are_checked_on_read_naming_the_file_and_line(tmp_path, field, value, error):
    import json

    from atac.results import load_record, load_records

    good = {"method": "atac", "shots": 10, "seed": 0, "image_auroc": 0.9, "pixel_auroc": None,
            "view_auroc": {"full": 0.8, "zoom": 0.7}}
    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, field: value}) + "\n")
    with pytest.raises(ValueError) as exc:
        load_records(res)
    assert str(exc.value) == f"{res}, line 3: {error}"
    (tmp_path / "metrics.json").write_text(json.dumps({**good, field: value}))
    with pytest.raises(ValueError, match=r"metrics\.json: " + re.escape(error) + "$"):
        load_record(tmp_path / "metrics.json")
    res.write_text(json.dumps(good) + "\n")
    assert load_records(res) == [good]


def test_a_record_without_image_auroc_is_a_clear_error(tmp_path):
    import json

    from atac.results import load_record, load_records

    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps({"image_auroc": 0.5}) + "\n" + json.dumps({"method": "atac", "seed": 0}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl, line 2: no image_auroc; a run record has its image "
                                         r"AUROC \(fields: method, seed\)"):
        load_records(res)
    res.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r"r\.jsonl, line 1: not a record"):
        load_records(res)
    (tmp_path / "metrics.json").write_text("{\"method\": \"atac\"}")
    with pytest.raises(ValueError, match=r"metrics\.json: no image_auroc"):
        load_record(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(ValueError, match=r"metrics\.json: cannot be read as a run record"):
        load_record(tmp_path / "metrics.json")


TORCH_DISK_FULL = ("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                   "data/3: file write failed")


def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    import torch

    import atac.results as results
    from atac.results import WriteError, atomic_torch_save, atomic_write_text

    target = tmp_path / "metrics.json"
    atomic_write_text(target, "before\n")

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", fsync_full)
    with pytest.raises(WriteError, match=r"cannot write .*metrics\.json: no space left on device.*"
                                         r"earlier metrics\.json is kept"):
        atomic_write_text(target, "after\n")
    monkeypatch.undo()
    assert target.read_text() == "before\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]

    def save_part_then_fail(obj, f):  # torch's writer: some bytes written, then its enforce error
        with open(f, "wb") as fh:
            fh.write(b"x" * 1000)
        raise RuntimeError(TORCH_DISK_FULL)

    monkeypatch.setattr(torch, "save", save_part_then_fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=100, used=100, free=0))
    with pytest.raises(WriteError, match=r"cannot write .*model\.pt: no space left on device"):
        atomic_torch_save({"a": 1}, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10**12, used=0, free=10**12))
    with pytest.raises(WriteError, match=r"model\.pt: the write failed \(\[enforce fail"):
        atomic_torch_save({"a": 1}, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    monkeypatch.setattr(torch, "save", lambda obj, f: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):  # not a write failure: passed on as it is
        atomic_torch_save({"a": 1}, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_machine_names_the_cpu_type_and_compares_it():
    from atac.results import machine, same_machine_type

    m = machine()
    assert isinstance(m["cpu_capability"], str) and m["cpu_capability"]   # e.g. AVX512, AVX2, DEFAULT
    other = dict(m, cpu_capability="AVX2" if m["cpu_capability"] != "AVX2" else "AVX512")
    assert same_machine_type(m, dict(m)) is (True if m["cpu_model"] else None)
    if m["cpu_model"]:
        assert same_machine_type(m, other) is False
    old = {"platform": "Linux", "processor": "x86_64", "cpus": 2}   # a record from before the fields
    assert same_machine_type(old, m) is None
