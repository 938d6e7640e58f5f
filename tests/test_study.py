"""atac.study's bookkeeping: which CPU type trained each run of a study."""

import json
from pathlib import Path

import pandas as pd
import pytest

from atac import study

WINDOWS = [
    {"from": "2026-12-01T09:00:00+00:00", "until": "2026-12-02T03:00:00Z", "cpu_model": "Xeon", "cpu_capability": "AVX512"},
    {"from": "2026-12-02T05:00:00", "until": None, "cpu_model": "EPYC", "cpu_capability": "AVX2"},  # no offset: UTC
]
RESULTS = Path(__file__).resolve().parents[1] / "paper_runs" / "results"


def _windows(tmp_path, windows=WINDOWS):
    path = tmp_path / "w.machines.json"
    path.write_text(json.dumps({"windows": windows}))
    return study.load_machine_windows(path, required=True)


def _rec(seed, finished, machine=None):
    return {"seed": seed, "finished": finished, "machine": machine or {"platform": "Linux", "cpus": 2}}


def test_record_cpu_types_read_the_record_first_then_the_window_it_finished_in(tmp_path):
    w = _windows(tmp_path)
    recs = [_rec(0, "2026-12-01T10:00:00+00:00"),
            _rec(1, "2026-12-02T03:00:00+00:00"),                    # until is inclusive
            _rec(2, "2026-12-02T05:00:00+00:00"),                    # from is exclusive: between windows
            _rec(3, "2026-12-02T06:00:00Z"),
            _rec(4, "2026-12-02T01:00:00-05:00"),                    # 06:00 UTC
            _rec(5, "2026-12-01T10:00:00+00:00", {"cpu_model": "Own", "cpu_capability": "AVX2"}),
            _rec(6, "2026-12-01T10:00:00+00:00", {"cpu_model": "Own"}),  # half a type: the window's
            {"seed": 7}]                                              # no finished, no machine
    assert study.record_cpu_types(recs, w) == ["Xeon, AVX512", "Xeon, AVX512", None, "EPYC, AVX2", "EPYC, AVX2",
                                               "Own, AVX2", "Xeon, AVX512", None]
    t = study.machine_types(recs, w).set_index("cpu")
    assert t.loc["Xeon, AVX512", "runs"] == 3 and t.loc["Xeon, AVX512", "seeds"] == [0, 1, 6]
    assert t.loc["not recorded", "seeds"] == [2, 7]
    assert study.machine_sentence(t.reset_index()) == (
        "3 CPU types: Xeon, AVX512 (3 runs, seeds 0, 1, 6); EPYC, AVX2 (2 runs, seeds 3, 4); "
        "Own, AVX2 (1 run, seed 5), and 2 runs of no recorded CPU type")
    with pytest.raises(ValueError, match="record 1, finished"):
        study.record_cpu_types([_rec(0, "yesterday")], w)


def test_machine_sentence_names_one_type_seed_ranges_and_the_unknown():
    recs = [_rec(s, "2026-12-02T06:00:00+00:00", {"cpu_model": "EPYC", "cpu_capability": "AVX2"}) for s in range(4)]
    assert study.machine_sentence(study.machine_types(recs)) == "one CPU type: EPYC, AVX2 (4 runs, seeds 0–3)"
    assert study.machine_sentence(study.machine_types([_rec(0, None)])) == "no recorded CPU type (1 run)"
    assert study.machine_sentence(study.machine_types([])) == "no runs yet"


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a machine-windows file"),
    ({"other": []}, "not a machine-windows file"),
    ({"windows": ["from until cpu_model cpu_capability"]}, "list of objects"),
    ({"windows": [{"from": None, "until": None, "cpu_model": "X"}]}, "window 0 lacks cpu_capability"),
    ({"windows": [{**WINDOWS[0], "from": "bad"}]}, "window 0, from: 'bad' is not an ISO 8601 time"),
    ({"windows": [{**WINDOWS[0], "from": WINDOWS[0]["until"]}]}, "window 0 has 'from' not before 'until'"),
    ({"windows": [WINDOWS[1], WINDOWS[0]]}, "window 1 overlaps window 0"),
])
def test_bad_machine_windows_files_say_which_file_and_window(tmp_path, content, message):
    path = tmp_path / "bad.machines.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match="bad.machines.json") as err:
        study.load_machine_windows(path)
    assert message in str(err.value)


def test_an_absent_windows_file_is_empty_unless_required(tmp_path):
    assert study.load_machine_windows(tmp_path / "none.json") == []
    with pytest.raises(FileNotFoundError, match="none.json"):
        study.load_machine_windows(tmp_path / "none.json", required=True)


def test_cross_type_pairs_count_the_pairs_whose_arms_ran_on_different_types():
    rows = [{"arm": study.ARMS[a], "category": c, "seed": s, "cpu": cpu}
            for c in ("grid", "nut") for s in (0, 1) for a, cpu in (("A", "x"), ("B", "x"), ("C", "y" if s else "x"))]
    t = study.cross_type_pairs(pd.DataFrame(rows)).set_index("comparison")
    assert (t.loc["B − A", "n"], t.loc["B − A", "mixed"]) == (4, 0)
    assert (t.loc["C − B", "n"], t.loc["C − B", "mixed"]) == (4, 2)
    assert t.loc["D − B", "n"] == 0


def test_cross_type_pairs_without_a_cpu_column_say_how_to_add_one():
    rows = pd.DataFrame([{"arm": study.ARMS["A"], "category": "grid", "seed": 0}])
    with pytest.raises(KeyError, match="cross_type_pairs needs a 'cpu' column.*record_cpu_types"):
        study.cross_type_pairs(rows)


def test_the_committed_windows_cover_every_study_record_one_machine_each():
    from atac.results import load_records

    windows = study.load_machine_windows(RESULTS / "zoom-study-cpu.machines.json", required=True)
    records = load_records(RESULTS / "zoom-study-cpu.jsonl")
    cpus = study.record_cpu_types(records, windows)
    assert None not in cpus, "a study record finished outside every window"
    for i, w in enumerate(windows):   # each window is one sitting's machine: its records share one platform
        mine = {r["machine"]["platform"] for r, c in zip(records, study.record_cpu_types(records, [w])) if c}
        assert len(mine) <= 1, (i, mine)


def test_comparisons_on_one_cpu_type_leave_out_the_mixed_pairs_only():
    from test_stats import _record

    from atac.frame import records_frame

    recs, cpus = [], []
    for seed in range(4):            # B − A is +0.05 on seeds 0-2 (one type), -0.30 on seed 3 (mixed)
        recs += [_record("deviation", "grid", seed, 0.80), _record("atac", "grid", seed, 0.85 if seed < 3 else 0.50)]
        cpus += ["x", "x" if seed < 3 else "y"]
    frame = records_frame(recs)
    with pytest.raises(KeyError, match=r"comparisons\(one_cpu_type=True\) needs a 'cpu' column.*record_cpu_types"):
        study.comparisons(frame, one_cpu_type=True)
    frame["cpu"] = cpus
    every = study.comparisons(frame).set_index("comparison").iloc[[3]]
    one = study.comparisons(frame, one_cpu_type=True).set_index("comparison").iloc[[3]]
    assert every.index[0].startswith("B − A")
    assert every["n"].item() == 4 and round(every["mean"].item(), 4) == round((3 * 0.05 - 0.30) / 4, 4)
    assert one["n"].item() == 3 and round(one["mean"].item(), 4) == 0.05 and one["verdict"].item() == "above"
