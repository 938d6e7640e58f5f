"""atac.study's bookkeeping: which CPU type trained each run of a study."""

import json

import pytest

from atac import study

WINDOWS = [
    {"from": "2026-12-01T09:00:00+00:00", "until": "2026-12-02T03:00:00+00:00",
     "cpu_model": "Xeon", "cpu_capability": "AVX512"},
    {"from": "2026-12-02T05:00:00+00:00", "until": None, "cpu_model": "EPYC", "cpu_capability": "AVX2"},
]


def _rec(seed, finished, machine=None):
    return {"seed": seed, "finished": finished, "machine": machine or {"platform": "Linux", "cpus": 2}}


def test_machine_types_reads_the_record_first_then_the_window_it_finished_in():
    recs = [_rec(0, "2026-12-01T10:00:00+00:00"), _rec(1, "2026-12-02T03:00:00+00:00"),  # until is inclusive
            _rec(3, "2026-12-02T06:00:00+00:00"),
            _rec(4, "2026-12-01T10:00:00+00:00", {"cpu_model": "Own", "cpu_capability": "AVX2"}),
            _rec(5, "2026-12-02T04:00:00+00:00")]                                          # between windows
    t = study.machine_types(recs, WINDOWS).set_index("cpu")
    assert t.loc["Xeon, AVX512", "runs"] == 2 and t.loc["Xeon, AVX512", "seeds"] == [0, 1]
    assert t.loc["EPYC, AVX2", "seeds"] == [3]
    assert t.loc["Own, AVX2", "seeds"] == [4]
    assert t.loc["not recorded", "seeds"] == [5]
    assert study.machine_sentence(t.reset_index()).startswith("4 CPU types: Xeon, AVX512 (2 runs, seeds 0, 1); ")


def test_machine_sentence_names_one_type_and_seed_ranges():
    recs = [_rec(s, "2026-12-02T06:00:00+00:00") for s in (0, 1, 2, 3)]
    assert study.machine_sentence(study.machine_types(recs, WINDOWS)) == "one CPU type: EPYC, AVX2 (4 runs, seeds 0–3)"
    assert study.machine_sentence(study.machine_types([], WINDOWS)) == "no CPU type yet (no runs)"


def test_load_machine_windows_absent_is_empty_and_bad_files_name_themselves(tmp_path):
    assert study.load_machine_windows(tmp_path / "none.json") == []
    bad = tmp_path / "bad.machines.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.machines.json"):
        study.load_machine_windows(bad)
    bad.write_text(json.dumps({"windows": [{"from": None, "until": None, "cpu_model": "X"}]}))
    with pytest.raises(ValueError, match="window 0 lacks cpu_capability"):
        study.load_machine_windows(bad)


def test_the_committed_windows_file_loads_and_does_not_overlap():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "paper_runs" / "results" / "zoom-study-cpu.machines.json"
    windows = study.load_machine_windows(path)
    assert len(windows) >= 2
    for a, b in zip(windows, windows[1:]):
        assert a["until"] is not None and a["until"] <= b["from"]
