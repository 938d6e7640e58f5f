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


def _verdicts(readings):
    """A comparisons() table with the given verdict per comparison prefix (others: not distinguishable)."""
    rows = []
    for hyp, what, _terms, sign in study.COMPARISONS:
        v = readings.get(what.split(":")[0], "not distinguishable")
        rows.append({"hypothesis": hyp, "comparison": what, "n": 18, "mean": 0.0, "ci_low": -0.01,
                     "ci_high": 0.01, "verdict": v, "reading": study._reading(v, sign)})
    return pd.DataFrame(rows)


def test_findings_read_each_hypothesis_from_its_registered_comparison():
    h5 = {"reading": "as predicted"}
    v = _verdicts({"C − B": "above", "D − B": "below", "(H − G) − (B − A)": "below", "B − A": "below",
                   "H − A": "above"})   # H − A is not H4's registered comparison: it does not decide H4
    assert study.findings(v, h5) == {"H1": "supported", "H2": "refuted", "H4": "supported", "H5": "supported"}
    v = _verdicts({"C − B": "below", "(D − F) − (B − A)": "above"})
    assert study.findings(v, {"reading": "opposite to the prediction"}) == {
        "H1": "refuted", "H2": "not shown", "H4": "not shown", "H5": "refuted"}
    assert study.findings(pd.DataFrame(), {"reading": "not yet measured"}) == dict.fromkeys(
        ("H1", "H2", "H4", "H5"), "not yet measured")


def test_claim_groups_the_step_v_arms_against_step_iii_by_verdict():
    v = _verdicts({"B − A": "below", "C − A": "above", "E − A": "below", "H − A": "above"})
    assert study.claim(v) == {"above": ["C"], "not distinguishable": ["D"], "below": ["B", "E"],
                              "too few pairs": []}
    assert study.claim(pd.DataFrame())["above"] == []


def _telemetry_record(method, category, seed, margin_last, **fields):
    from test_stats import _record

    r = _record(method, category, seed, 0.9, **fields)
    r["train_telemetry"] = [{"epoch": 0, "margin_met_full_anomalous": 0.0},
                            {"epoch": 1, "margin_met_full_anomalous": margin_last}]
    return r


def test_margin_check_pairs_the_last_epoch_of_c_and_b():
    from atac.frame import records_frame, telemetry_frame

    recs = []
    for seed in range(4):   # C − B at the last epoch: +0.2 in every pair; epoch 0 (0 − 0) must not count
        recs += [_telemetry_record("atac", "grid", seed, 0.5), _telemetry_record("atac", "grid", seed, 0.7,
                                                                                  zoom_loss="per_view")]
    m = study.margin_check(records_frame(recs), telemetry_frame(recs), n_resamples=200)
    assert m["n"] == 4 and m["mean"] == pytest.approx(0.2) and m["n_positive"] == 4
    assert m["verdict"] == "above" and m["reading"] == "as predicted"
    assert (m["n_ties"], m["b_at_ceiling"]) == (0, 0)
    ceiling = [_telemetry_record("atac", "grid", 0, 1.0), _telemetry_record("atac", "grid", 0, 1.0, zoom_loss="per_view")]
    m = study.margin_check(records_frame(ceiling), telemetry_frame(ceiling), n_resamples=200)
    assert (m["n"], m["n_ties"], m["b_at_ceiling"]) == (1, 1, 1)
    only_b = recs[::2]
    m = study.margin_check(records_frame(only_b), telemetry_frame(only_b))
    assert m["n"] == 0 and m["reading"] == "not yet measured"


def test_zoom_effect_sets_the_final_auroc_beside_the_full_image_one():
    from test_stats import _record

    from atac.frame import diagnostics_frame

    recs = []
    # (full-image AUROC, crop-alone AUROC, final AUROC, normal zoom rate): the crop's own AUROC is
    # not the final one and must not count
    for seed, (full, zoom, final, normal_rate) in enumerate([(0.8, 0.6, 0.8, 0.0), (0.7, 0.9, 0.75, 0.2),
                                                              (0.9, 0.9, 0.88, 0.0)]):
        r = _record("atac", "grid", seed, final)
        r.update(view_auroc={"full": full, "zoom": zoom}, zoom_rate_normal=normal_rate,
                 zoom_rate_anomalous=0.6, zoom_diagnostics={"auroc_zoomed_anomalies": 1.0 if seed else None,
                                                            "auroc_unzoomed_anomalies": 0.6})
        recs.append(r)
    recs.append(_record("deviation", "grid", 0, 0.95))          # another arm: left out
    e = study.zoom_effect(diagnostics_frame(recs))
    assert e["n"] == 3 and e["n_changed"] == 2 and e["n_changed_normals_zoomed"] == 1
    assert e["mean_change"] == pytest.approx((0.05 - 0.02) / 3) and e["max_abs_change"] == pytest.approx(0.05)
    assert e["auroc_zoomed"] == pytest.approx(1.0) and e["zoom_rate_normal"] == pytest.approx(0.2 / 3)
    unknown = [{**r, "zoom_rate_normal": None} for r in recs]     # a rate not recorded is not a zero
    assert study.zoom_effect(diagnostics_frame(unknown))["n_changed_normals_zoomed"] is None
    assert study.zoom_effect(diagnostics_frame(recs[3:])) == {"n": 0, **dict.fromkeys(
        ("zoom_rate_anomalous", "zoom_rate_normal", "auroc_zoomed", "auroc_unzoomed", "n_changed",
         "n_changed_normals_zoomed", "mean_change", "max_abs_change"))}


def test_full_image_auroc_is_the_full_view_of_a_zoom_arm_and_the_score_of_the_rest():
    from test_stats import _record

    from atac.frame import records_frame

    zoom = _record("atac", "grid", 0, 0.85)
    zoom["view_auroc"] = {"full": 0.80, "zoom": 0.95}
    f = study.full_image_auroc(records_frame([zoom, _record("deviation", "grid", 0, 0.90)]))
    assert f["full_image_auroc"].tolist() == pytest.approx([0.80, 0.90])
    assert study.full_image_auroc(records_frame([_record()]))["full_image_auroc"].tolist() == [0.9]
    # a zoom run without view_auroc has no full-image AUROC: NaN, not its final one
    assert study.full_image_auroc(records_frame([_record("atac")]))["full_image_auroc"].isna().all()
