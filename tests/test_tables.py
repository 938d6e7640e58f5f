"""atac.reporting and atac.charts: our results next to the paper's Tables 1 and 2."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pandas as pd
import pytest

from atac import charts, reporting
from atac.results import load_records

REPO = Path(__file__).resolve().parents[1]
SHARED_TABLE1 = Path("/work/shared/paper/table1.csv")
CPU_BUDGET = {"preset": "cpu", "epochs": 15, "steps_per_epoch": 20, "batch_size": 16, "image_size": 224}


def rec(method, value, seed=0, category="grid", dataset="mvtec_ad", shots=10, backbone="mobilenet_v2",
        setting="general", config=CPU_BUDGET):
    return {"method": method, "backbone": backbone, "dataset": dataset, "category": category,
            "setting": setting, "known_type": None, "shots": shots, "seed": seed,
            "image_auroc": value, "config": dict(config)}


def ladder_records(means: dict[str, float], category="grid"):
    """Three seeds per method around the given means (±0.01)."""
    return [rec(m, v + d, seed=s, category=category)
            for m, v in means.items() for s, d in enumerate((-0.01, 0.0, 0.01))]


def test_published_table1():
    pub = reporting.published_table1()
    assert len(pub) == 16 * 4
    grid = {r["method"]: r["image_auroc"] for r in pub if r["category"] == "grid"}
    assert grid == {"cutmix_bce": 0.729, "weighted_ce": 0.931, "deviation": 0.947, "atac": 0.988}
    assert {r["category"] for r in pub if r["n_anomaly_types"] is None} == {"mean"}
    assert "2406.14398" in reporting.CITATION


@pytest.mark.skipif(not SHARED_TABLE1.is_file(), reason="shared paper folder not present")
def test_published_copy_equals_shared():
    for name in ("table1.csv", "table2.csv"):
        assert (REPO / "atac" / "published" / name).read_bytes() == (SHARED_TABLE1.parent / name).read_bytes()


def test_rows_mean_std_paper_diff():
    recs = [rec("atac", v, seed=s) for s, v in enumerate((0.90, 0.92, 0.94))]
    recs.append(rec("deviation", 0.95))
    rows = reporting.table1_rows(recs)
    assert [r["method"] for r in rows] == ["deviation", "atac"]  # ladder order III before V
    atac = rows[1]
    assert atac["n"] == 3 and atac["seeds"] == [0, 1, 2] and atac["step"] == "V"
    assert atac["mean"] == pytest.approx(0.92)
    assert atac["std"] == pytest.approx(statistics.stdev([0.90, 0.92, 0.94]))
    assert atac["paper"] == 0.988
    assert atac["diff"] == pytest.approx(0.92 - 0.988)
    dev = rows[0]
    assert dev["n"] == 1 and dev["std"] is None and dev["paper"] == 0.947


def test_rows_without_paper_value():
    recs = [rec("atac", 0.75, dataset="magnetic_tile", category="magnetic_tile"),
            rec("atac", 0.9, shots=1),                     # Table 1 is ten shots only
            rec("gradcam_zoom", 0.9),                      # step IV: no column
            rec("dra", 0.9)]
    rows = reporting.table1_rows(recs)
    assert all(r["paper"] is None and r["diff"] is None for r in rows)
    grid10 = [r["method"] for r in rows if r["category"] == "grid" and r["shots"] == 10]
    assert grid10 == ["gradcam_zoom", "dra"]


def test_rows_keep_backbones_and_budgets_apart_and_drop_hard_setting():
    recs = [rec("atac", 0.9, backbone="resnet50"), rec("atac", 0.8, backbone="mobilenet_v2"),
            rec("atac", 0.7, config={**CPU_BUDGET, "epochs": 30}),
            rec("atac", 0.1, seed=5, setting="hard")]
    rows = reporting.table1_rows(recs)
    assert sorted(r["mean"] for r in rows) == [0.7, 0.8, 0.9]
    assert all(r["n"] == 1 for r in rows)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="empty"):
        reporting.table1_rows([])
    bad = rec("atac", 0.9)
    del bad["backbone"]
    with pytest.raises(ValueError, match="backbone"):
        reporting.table1_rows([bad])
    with pytest.raises(ValueError, match="image_auroc"):
        reporting.table1_rows([rec("atac", None)])
    with pytest.raises(ValueError, match="general"):
        reporting.table1_rows([rec("atac", 0.9, setting="hard")])
    with pytest.raises(ValueError, match="more than once"):
        reporting.table1_rows([rec("atac", 0.9), rec("atac", 0.8)])
    with pytest.raises(ValueError, match="no rows"):
        reporting.render_table1([])
    with pytest.raises(ValueError, match="format"):
        reporting.render_table1(reporting.table1_rows([rec("atac", 0.9)]), fmt="html")


def test_render_markdown_and_csv():
    rows = reporting.table1_rows(ladder_records({"deviation": 0.95, "atac": 0.97}))
    md = reporting.render_table1(rows)
    assert "2406.14398" in md and "±" in md and "ResNet-50" in md and "mobilenet_v2" in md
    assert "0.970 ± 0.010 (3)" in md and "0.988" in md and "V atac paper" in md
    # the paper's layout: a line per class and M, per method ours beside the paper's
    wide = reporting.table1_wide(rows)
    assert list(wide.index) == [("grid", 10)] and wide.index.names == ["class", "M"]
    assert list(wide.columns) == [("I cutmix_bce", "ours"), ("I cutmix_bce", "paper"),
                                  ("II weighted_ce", "ours"), ("II weighted_ce", "paper"),
                                  ("III deviation", "ours"), ("III deviation", "paper"),
                                  ("V atac", "ours"), ("V atac", "paper")]
    assert wide.loc[("grid", 10), ("V atac", "ours")] == "0.970 ± 0.010 (3)"
    assert wide.loc[("grid", 10), ("V atac", "paper")] == "0.988"
    assert wide.loc[("grid", 10), ("I cutmix_bce", "ours")] == "—"
    assert wide.loc[("grid", 10), ("I cutmix_bce", "paper")] == "0.729"   # the paper's, where we have no run
    assert reporting.table1_wide(pd.DataFrame(rows)).equals(wide)          # rows as a frame
    html = reporting.to_html(wide)
    assert 'class="atac-results"' in html and "0.970\u202f±\u202f.010" in html and "2406.14398" in html
    text = reporting.render_table1(rows, fmt="csv")
    back = list(csv.DictReader(io.StringIO(text)))
    assert len(back) == 2
    assert float(back[1]["mean"]) == pytest.approx(0.97)
    assert float(back[1]["paper"]) == 0.988
    assert back[1]["seeds"] == "0;1;2"
    one = list(csv.DictReader(io.StringIO(reporting.render_table1(reporting.table1_rows([rec("atac", 0.9)]),
                                                                  "csv"))))
    assert one[0]["std"] == ""


def test_figure_axes(tmp_path):
    recs = (ladder_records({"deviation": 0.95, "atac": 0.97})
            + [rec("atac", 0.7, dataset="magnetic_tile", category="magnetic_tile")]
            + [rec("atac", 0.8, category="carpet", shots=1)])
    out = tmp_path / "t1.png"
    fig = charts.table1_figure(reporting.table1_rows(recs), path=out)
    assert len(fig.axes) == 3 and out.stat().st_size > 0
    # the grid panel shows the four Table 1 methods (the paper's values) in ladder order
    grid_ax = [ax for ax in fig.axes if "grid" in ax.get_title()][0]
    labels = [t.get_text().split("\n")[-1] for t in grid_ax.get_xticklabels()]
    assert labels == ["cutmix_bce", "weighted_ce", "deviation", "atac"]


def test_ladder_order_flips():
    good = {"atac": 0.97, "deviation": 0.95, "weighted_ce": 0.93, "cutmix_bce": 0.80}
    (v,) = reporting.ladder_order(reporting.table1_rows(ladder_records(good)))
    assert v["holds"] is True and v["verdict"] == "holds" and v["paper_holds"] is True
    assert v["means"]["atac"] == pytest.approx(0.97)
    bad = {**good, "atac": 0.917, "deviation": 0.978}
    (v,) = reporting.ladder_order(reporting.table1_rows(ladder_records(bad)))
    assert v["holds"] is False
    assert v["verdict"] == "does not hold: deviation 0.978 > atac 0.917"
    (v,) = reporting.ladder_order(reporting.table1_rows([rec("atac", 0.9)]))
    assert v["holds"] is None and "cannot tell" in v["verdict"] and "cutmix_bce" in v["verdict"]
    # the paper's own ordering fails for toothbrush (deviation 0.861 < weighted_ce 0.901)
    (v,) = reporting.ladder_order(reporting.table1_rows(ladder_records(good, category="toothbrush")))
    assert v["paper_holds"] is False
    with pytest.raises(ValueError, match="shots"):
        reporting.ladder_order(reporting.table1_rows([rec("atac", 0.9)]), shots=1)


def test_ladder_pairs_judge_each_claim_paired_by_seed():
    good = {"atac": 0.90, "deviation": 0.95, "weighted_ce": 0.93, "cutmix_bce": 0.80}
    rows = reporting.table1_rows(ladder_records(good))
    pairs = {(p["better"], p["worse"]): p for p in reporting.ladder_pairs(rows)}
    assert list(pairs) == list(reporting.LADDER_CLAIMS)
    p = pairs[("weighted_ce", "cutmix_bce")]
    assert p["verdict"] == "supported" and p["diff"] == pytest.approx(0.13)
    assert p["spread"] == pytest.approx(0.01) and p["n_better"] == p["n_worse"] == 3 and not p["one_seed"]
    # the same offset in every seed: each pair differs by exactly 0.13, a degenerate interval
    assert p["sentence"] == ("supported: weighted_ce 0.930 > cutmix_bce 0.800 (+0.130; paired over 3 seeds: "
                             "+0.130 [+0.130, +0.130])")
    assert p["paired"]["n"] == 3 and p["paired"]["n_positive"] == 3
    assert (p["paper_better"], p["paper_worse"]) == (0.931, 0.729)
    p = pairs[("atac", "deviation")]
    assert p["verdict"] == "not supported" and p["sentence"].startswith("not supported: atac 0.900 < deviation")
    assert "the interval below 0" in p["sentence"]
    # seeds that disagree: the interval includes 0, not resolved
    recs = [r for r in ladder_records(good) if r["method"] != "deviation"]
    recs += [rec("deviation", 0.93 + d, seed=s) for s, d in enumerate((0.02, -0.02, 0.01))]
    p = [p for p in reporting.ladder_pairs(reporting.table1_rows(recs)) if p["better"] == "deviation"][0]
    assert p["verdict"] == "not resolved" and "the 95% interval includes 0" in p["sentence"]
    assert "fragile" not in p["sentence"]                  # the t check agrees: nothing added
    # three seeds, the mean below and the differences spread (0, -0.025, -0.109): the bootstrap's
    # verdict stands, the t check flags it
    recs = [r for r in ladder_records(good) if r["method"] != "atac"]
    recs += [rec("atac", 0.95 + d, seed=s) for s, d in enumerate((-0.01, -0.025, -0.099))]
    p = [p for p in reporting.ladder_pairs(reporting.table1_rows(recs)) if p["better"] == "atac"][0]
    assert p["verdict"] == "not supported" and p["paired"]["t_verdict"] == "not distinguishable"
    assert p["sentence"].endswith(f"the interval below 0; fragile: a t interval over the same pairs, "
                                  f"[{p['paired']['t_low']:+.3f}, {p['paired']['t_high']:+.3f}], includes 0)")
    # one seed each: no interval, not resolved; a missing method: cannot tell
    rows = reporting.table1_rows([rec("atac", 0.9), rec("deviation", 0.8)])
    pairs = {(p["better"], p["worse"]): p for p in reporting.ladder_pairs(rows)}
    p = pairs[("atac", "deviation")]
    assert p["spread"] is None and p["one_seed"] and p["verdict"] == "not resolved"
    assert "too few paired seeds for an interval" in p["sentence"]
    p = pairs[("weighted_ce", "cutmix_bce")]
    assert p["verdict"] == "cannot tell" and p["missing"] == ["weighted_ce", "cutmix_bce"] and p["diff"] is None
    # budgets are never compared across
    other = dict(CPU_BUDGET, epochs=10)
    rows = reporting.table1_rows([rec("atac", 0.9), rec("deviation", 0.8, config=other)])
    assert {p["verdict"] for p in reporting.ladder_pairs(rows)} == {"cannot tell"}
    with pytest.raises(ValueError, match="shots"):
        reporting.ladder_pairs(rows, shots=1)


def test_describe_setups():
    rows = reporting.table1_rows([rec("atac", 0.9), rec("atac", 0.9, backbone="resnet50",
                                                       config={**CPU_BUDGET, "preset": "paper"})])
    text = reporting.describe_setups(rows)
    assert text == ("mobilenet_v2 (not the paper's ResNet-50) at the budget cpu: 15 epochs × 20 steps, "
                    "batch 16, 224 px (not the paper's budget); resnet50 (the paper's backbone) at the "
                    "budget paper: 15 epochs × 20 steps, batch 16, 224 px (the paper preset)")
    rows = reporting.table1_rows([rec("atac", 0.9), rec("atac", 0.9, config={**CPU_BUDGET, "epochs": 10})])
    assert reporting.describe_setups(rows) == (
        "mobilenet_v2 (not the paper's ResNet-50) at the budgets cpu: 10 epochs × 20 steps, batch 16, "
        "224 px and cpu: 15 epochs × 20 steps, batch 16, 224 px (not the paper's budgets)")
    with pytest.raises(ValueError):
        reporting.describe_setups([])


def test_recorded_results_file_by_file(tmp_path):
    import json

    res = tmp_path / "results"
    res.mkdir()
    # the same seed in two files: each file is summarised on its own, never pooled
    (res / "a.jsonl").write_text(json.dumps(rec("atac", 0.9)) + "\n")
    (res / "b-partial.jsonl").write_text("\n".join(json.dumps(r) for r in (
        rec("atac", 0.7), rec("deviation", 0.8),
        dict(rec("atac", 0.6, setting="hard", category="magnetic_tile", dataset="magnetic_tile"),
             known_type="crack"))) + "\n")
    (res / "a.sessions.jsonl").write_text(json.dumps({"command": "atac sweep"}) + "\n")
    files = reporting.recorded_results(res)
    assert [f["file"] for f in files] == ["a.jsonl", "b-partial.jsonl"]
    a, b = files
    assert a["note"] == "recorded runs" and "stopped attempt" in b["note"]
    assert [(r["method"], r["mean"], r["n"], r["file"]) for r in a["rows"]] == [("atac", 0.9, 1, "a.jsonl")]
    hard = [r for r in b["rows"] if r["setting"] == "hard"]
    assert len(hard) == 1 and hard[0]["known_type"] == "crack" and hard[0]["paper"] is None
    gen = [r for r in b["rows"] if r["setting"] == "general"]
    assert {r["known_type"] for r in gen} == {None} and {r["paper"] for r in gen} == {0.988, 0.947}
    # a hard-setting row of an MVTec AD class never gets a Table 1 value
    (res / "c.jsonl").write_text(json.dumps(dict(rec("atac", 0.6, setting="hard"), known_type="glue")) + "\n")
    (c,) = [f for f in reporting.recorded_results(res) if f["file"] == "c.jsonl"]
    assert [r["paper"] for r in c["rows"]] == [None]
    # a duplicate seed within one file is refused, naming the file
    (res / "d.jsonl").write_text("\n".join(json.dumps(rec("atac", v)) for v in (0.5, 0.6)) + "\n")
    with pytest.raises(ValueError, match="d.jsonl.*seed"):
        reporting.recorded_results(res)
    assert reporting.recorded_results(tmp_path / "missing") == []


def test_recorded_results_names_a_sweeps_progress(tmp_path):
    import json

    from atac.sweep import load_sweep

    (tmp_path / "s.yaml").write_text("name: s\nresults: results/s.jsonl\nbase:\n  preset: smoke\n"
                                     "  dataset: synthetic\n  category: weave\ngrid:\n"
                                     "  - method: atac\n    seed: [0, 1]\n")
    sweep = load_sweep(tmp_path / "s.yaml")
    run = sweep.runs[0]
    cfg = run.config
    r = {**rec("atac", 0.9, dataset="synthetic", category="weave", config=cfg.to_dict()),
         "sweep": {"run_id": run.run_id}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s.jsonl").write_text(json.dumps(r) + "\n")
    (f,) = reporting.recorded_results(tmp_path / "results", sweeps_dir=tmp_path)
    assert f["note"] == "sweep s: 1 of 2 runs recorded, in progress or stopped"
    (f,) = reporting.recorded_results(tmp_path / "results")
    assert f["note"] == "recorded runs"


def test_real_results_folder_file_by_file():
    files = reporting.recorded_results(REPO / "paper_runs" / "results", sweeps_dir=REPO / "paper_runs")
    names = [f["file"] for f in files]
    assert "first-runs-cpu.jsonl" in names and not any(n.endswith(".sessions.jsonl") for n in names)
    partial = [f for f in files if f["file"] == "table1-cpu-10epochs-partial.jsonl"]
    assert partial and "stopped attempt" in partial[0]["note"]
    for f in files:
        assert all(r["file"] == f["file"] for r in f["rows"])


def test_real_first_runs_smoke():
    rows = reporting.table1_rows(load_records(REPO / "paper_runs/results/first-runs-cpu.jsonl"))
    md = reporting.render_table1(rows)
    assert "| grid " in md and "0.988" in md
    mt = [r for r in rows if r["dataset"] == "magnetic_tile"]
    assert mt and all(r["paper"] is None for r in mt)


# ---------------------------------------------------------------------------------------------- Table 2

MT_TYPES = ("blowhole", "break", "crack", "fray", "uneven")


def hrec(method, value, known_type, seed=0, category="magnetic_tile", dataset="magnetic_tile", shots=10,
         backbone="mobilenet_v2", config=CPU_BUDGET):
    r = rec(method, value, seed=seed, category=category, dataset=dataset, shots=shots, backbone=backbone,
            setting="hard", config=config)
    r["known_type"] = known_type
    return r


def hard_records(means: dict[str, dict[str, float]], seeds=(0, 1, 2), **kw):
    """{method: {type: mean}} -> records with seeds around each mean (-0.01, 0, +0.01)."""
    offs = (-0.01, 0.0, 0.01)
    return [hrec(m, v + offs[i % 3], t, seed=s, **kw)
            for m, per in means.items() for t, v in per.items() for i, s in enumerate(seeds)]


def test_published_table2_and_its_erratum():
    pub = reporting.published_table2()
    assert len(pub) == (6 + 6 + 5 + 5) * 3
    assert {r["method"] for r in pub} == {"deviation", "dra", "atac"}
    assert {r["setting"] for r in pub} == {"hard"} and {r["backbone"] for r in pub} == {"resnet50"}
    errata = [r for r in pub if r["erratum"]]
    assert len(errata) == 1
    (e,) = errata
    assert (e["category"], e["known_type"], e["shots"], e["method"]) == ("tile", "mean", 10, "dra")
    assert e["image_auroc"] == 0.935 and e["types_mean"] == pytest.approx(0.9534)
    assert "0.935" in e["erratum"] and "0.953" in e["erratum"]
    nut = {r["method"]: r["image_auroc"] for r in pub
           if (r["category"], r["known_type"], r["shots"]) == ("metal_nut", "flip", 1)}
    assert nut == {"deviation": 0.764, "dra": 0.921, "atac": 0.945}
    md = reporting.render_published_table2()
    assert "2406.14398" in md and "0.935 † (types: 0.953)" in md and "† Erratum" in md
    assert md.count("†") == 2
    assert len(list(csv.DictReader(io.StringIO(reporting.render_published_table2("csv"))))) == len(pub)
    with pytest.raises(ValueError, match="format"):
        reporting.render_published_table2("html")


def test_table2_rows_per_type_and_mean():
    means = {"deviation": dict(zip(MT_TYPES, (0.70, 0.72, 0.74, 0.76, 0.78))),
             "atac": dict(zip(MT_TYPES, (0.80, 0.82, 0.84, 0.86, 0.88)))}
    recs = hard_records(means) + [rec("atac", 0.5, seed=9)]        # a general record: left out
    rows = reporting.table2_rows(recs)
    per = [r for r in rows if r["known_type"] != "mean"]
    mean = [r for r in rows if r["known_type"] == "mean"]
    assert len(per) == 10 and len(mean) == 2
    assert [r["method"] for r in rows[:2]] == ["deviation", "atac"]   # Table 2's column order
    assert rows[-1]["known_type"] == "mean" and rows[-1]["method"] == "atac"
    blow = rows[1]
    assert blow["known_type"] == "blowhole" and blow["n"] == 3 and blow["n_types"] == 1
    assert blow["mean"] == pytest.approx(0.80) and blow["std"] == pytest.approx(0.01)
    assert blow["paper"] is None and blow["diff"] is None
    m = mean[1]
    assert m["n_types"] == 5 and m["n"] == 3 and m["seeds"] == [0, 1, 2]
    assert m["mean"] == pytest.approx(0.84)
    assert m["values"] == pytest.approx([0.83, 0.84, 0.85]) and m["std"] == pytest.approx(0.01)


def test_table2_mean_only_when_every_type_is_there():
    four = {"atac": dict(zip(MT_TYPES[:4], (0.8, 0.8, 0.8, 0.8)))}
    rows = reporting.table2_rows(hard_records(four))
    assert not [r for r in rows if r["known_type"] == "mean"]
    # types given for a class atac does not know
    recs = hard_records({"atac": {"a": 0.9, "b": 0.7}}, dataset="synthetic", category="weave")
    assert not [r for r in reporting.table2_rows(recs) if r["known_type"] == "mean"]
    rows = reporting.table2_rows(recs, types={("synthetic", "weave"): ["a", "b"]})
    (m,) = [r for r in rows if r["known_type"] == "mean"]
    assert m["mean"] == pytest.approx(0.8)
    # seeds that differ between types: mean, std and n all over the seeds every type has
    recs = [hrec("atac", 0.8, t, seed=0) for t in MT_TYPES] + [hrec("atac", 0.9, "fray", seed=1)]
    (m,) = [r for r in reporting.table2_rows(recs) if r["known_type"] == "mean"]
    assert m["seeds"] == [0] and m["n"] == 1 and m["std"] is None and m["mean"] == pytest.approx(0.8)
    assert "1 run(s) of seeds not shared by every type left out" in m["seeds_note"]
    recs = [hrec("atac", 0.8 + 0.01 * s, t, seed=s) for t in MT_TYPES for s in (0, 1)] + \
        [hrec("atac", 0.2, "fray", seed=2)]
    (m,) = [r for r in reporting.table2_rows(recs) if r["known_type"] == "mean"]
    assert m["n"] == 2 and m["mean"] == pytest.approx(statistics.fmean(m["values"])) == pytest.approx(0.805)
    assert m["std"] == pytest.approx(statistics.stdev([0.80, 0.81]))
    md = reporting.render_table2(reporting.table2_rows(recs))
    assert "0.805 ± 0.007 (2) ‡" in md and "‡ A mean over types: 1 run(s) of seeds" in md
    # no seed common to every type: the mean of the per-type means, marked as such
    recs = [hrec("atac", 0.8, t, seed=0) for t in MT_TYPES[:4]] + [hrec("atac", 0.9, "uneven", seed=1)]
    rows = reporting.table2_rows(recs)
    (m,) = [r for r in rows if r["known_type"] == "mean"]
    assert m["n"] == 0 and m["values"] == [] and m["std"] is None
    assert m["mean"] == pytest.approx((0.8 * 4 + 0.9) / 5) and "no seed common" in m["seeds_note"]
    assert "0.820 (no common seed) ‡" in reporting.render_table2(rows)
    # a per-type row has no note and names its setting
    assert {r["seeds_note"] for r in rows if r["known_type"] != "mean"} == {None}
    assert {r["setting"] for r in rows} == {"hard"}


def test_table2_paper_values_erratum_and_render():
    tile = ("crack", "glue_strip", "gray_stroke", "oil", "rough")
    recs = hard_records({"dra": dict.fromkeys(tile, 0.95), "atac": dict.fromkeys(tile, 0.96)},
                        dataset="mvtec_ad", category="tile")
    rows = reporting.table2_rows(recs)
    by = {(r["known_type"], r["method"]): r for r in rows}
    assert by[("crack", "dra")]["paper"] == 0.986
    assert by[("crack", "dra")]["diff"] == pytest.approx(0.95 - 0.986)
    md_ = by[("mean", "dra")]
    assert md_["paper"] == 0.935 and md_["paper_types_mean"] == pytest.approx(0.9534)
    assert md_["erratum"] and md_["diff"] == pytest.approx(0.95 - 0.935)
    assert by[("mean", "atac")]["erratum"] is None and by[("mean", "atac")]["paper"] == 0.959
    md = reporting.render_table2(rows)
    assert "2406.14398" in md and "hard setting" in md
    assert "0.935 †" in md and "† Erratum: the paper prints 0.935" in md and "average 0.953" in md
    assert "0.950 ± 0.010 (3)" in md
    # the paper's layout: known types as rows, one and ten anomalies side by side, ours beside the paper's
    wide = reporting.table2_wide(rows)
    assert list(wide.index) == [("tile", t) for t in (*tile, "mean (5 types)")]
    assert wide.loc[("tile", "mean (5 types)"), ("M = 10", "DRA", "ours")] == "0.950 ± 0.010 (3)"
    assert wide.loc[("tile", "mean (5 types)"), ("M = 10", "DRA", "paper")] == "0.935 †"
    assert wide.loc[("tile", "crack"), ("M = 10", "DRA", "paper")] == "0.986"
    assert wide.loc[("tile", "crack"), ("M = 1", "DRA", "ours")] == "—"           # no run of ours
    assert wide.loc[("tile", "crack"), ("M = 1", "DRA", "paper")] == "0.975"
    assert wide.loc[("tile", "crack"), ("M = 10", "DevNet", "ours")] == "—"
    mean = wide.loc[("tile", "mean (5 types)")]
    assert [c for c in wide.columns if "†" in mean[c]] == [("M = 10", "DRA", "paper")]
    assert wide.attrs["notes"][0].startswith("† Erratum: the paper prints 0.935")
    back = list(csv.DictReader(io.StringIO(reporting.render_table2(rows, "csv"))))
    assert len(back) == len(rows)
    dra_mean = [b for b in back if b["known_type"] == "mean" and b["method"] == "dra"][0]
    assert float(dra_mean["paper"]) == 0.935 and float(dra_mean["paper_types_mean"]) == pytest.approx(0.9534)
    assert "0.953" in dra_mean["erratum"] and dra_mean["seeds"] == "0;1;2"
    # a class that is not the paper's: no paper value, no erratum
    other = reporting.table2_rows(hard_records({"dra": dict.fromkeys(MT_TYPES, 0.9)}))
    assert "†" not in reporting.render_table2(other)
    assert set(reporting.table2_wide(other).xs("paper", axis=1, level=2).to_numpy().ravel()) == {"—"}


def test_table2_errors_are_clear():
    with pytest.raises(ValueError, match="empty"):
        reporting.table2_rows([])
    with pytest.raises(ValueError, match="hard-setting"):
        reporting.table2_rows([rec("atac", 0.9)])
    with pytest.raises(ValueError, match="known_type"):
        reporting.table2_rows([hrec("atac", 0.9, None)])
    with pytest.raises(ValueError, match="mean"):
        reporting.table2_rows([hrec("atac", 0.9, "mean")])
    bad = hrec("atac", 0.9, "crack")
    del bad["shots"]
    with pytest.raises(ValueError, match="shots"):
        reporting.table2_rows([bad])
    with pytest.raises(ValueError, match="more than once"):
        reporting.table2_rows([hrec("atac", 0.9, "crack"), hrec("atac", 0.8, "crack")])
    with pytest.raises(ValueError, match="no rows"):
        reporting.render_table2([])
    with pytest.raises(ValueError, match="format"):
        reporting.render_table2(reporting.table2_rows([hrec("atac", 0.9, "crack")]), fmt="html")
    with pytest.raises(ValueError, match="no rows"):
        charts.table2_figure([])
    with pytest.raises(ValueError, match="no rows"):
        reporting.table2_claims([])


def test_table2_figure_panels(tmp_path):
    means = {m: dict(zip(MT_TYPES, (0.8,) * 5)) for m in ("deviation", "dra", "atac")}
    recs = (hard_records(means) + hard_records(means, seeds=(0,), shots=1)
            + hard_records({"atac": {"bent": 0.9}}, dataset="mvtec_ad", category="metal_nut"))
    out = tmp_path / "t2.png"
    fig = charts.table2_figure(reporting.table2_rows(recs), path=out)
    assert len(fig.axes) == 3 and out.stat().st_size > 0
    mt = [ax for ax in fig.axes if "magnetic_tile" in ax.get_title() and "10" in ax.get_title()][0]
    assert [t.get_text() for t in mt.get_xticklabels()] == [*MT_TYPES, "mean"]
    assert mt.get_ylabel() == "image AUROC on unseen types"
    # a paper class shows the paper's types (and mean) even where we have one type only
    nut = [ax for ax in fig.axes if "metal_nut" in ax.get_title()][0]
    assert [t.get_text() for t in nut.get_xticklabels()] == ["bent", "color", "flip", "scratch", "mean"]
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"ours, DevNet", "ours, DRA", "ours, ATAC-Net", "paper, ATAC-Net (ResNet-50)",
            "paper, DevNet (ResNet-50)"} <= labels


def test_table2_claims():
    good = {"deviation": dict(zip(MT_TYPES, (0.70, 0.75, 0.80, 0.85, 0.90))),
            "dra": dict(zip(MT_TYPES, (0.80, 0.81, 0.82, 0.83, 0.95))),
            "atac": dict(zip(MT_TYPES, (0.85, 0.86, 0.87, 0.88, 0.89)))}
    (c,) = reporting.table2_claims(reporting.table2_rows(hard_records(good)))
    assert c["n_types"] == 5 and c["all_types"] is True and c["missing"] == []
    assert c["means"]["atac"] == pytest.approx(0.87)
    assert c["wins"] == {"deviation": 4, "dra": 4}
    assert c["beats"] == {"deviation": True, "dra": True} and c["holds"] is True
    assert c["paper_holds"] is None
    s = c["sentence"]
    assert s.startswith("magnetic_tile, 10 known anomalies of one type")
    assert "over all 5 known types" in s and "higher on 4 of 5" in s
    assert "The paper's claim (ATAC-Net above both) holds here." in s
    # each type's seeds move alike in every method: the paired differences have no spread within a type
    assert "paired by type and seed over 15 runs: +0.070 [+0.070, +0.070], above" in s
    assert "fragile" not in s and c["t_confirmed"] is True      # no spread: the t check agrees
    assert c["paired"]["dra"]["verdict"] == "above" and c["paired"]["dra"]["n_positive"] == 12
    # one seed per type: the five type splits are resampled; against DRA the interval includes 0
    (one,) = reporting.table2_claims(reporting.table2_rows(hard_records(good, seeds=(0,), shots=1)))
    assert one["paired"]["deviation"]["verdict"] == "above"
    assert one["paired"]["dra"]["verdict"] == "not distinguishable" and one["holds"] is None
    assert "is not resolved" in one["sentence"] and "one seed only" in one["sentence"]
    # ATAC-Net below DRA in every pair, if only by 0.005: the paired interval says so
    bad = {**good, "dra": dict(zip(MT_TYPES, (0.855, 0.865, 0.875, 0.885, 0.895)))}
    (c,) = reporting.table2_claims(reporting.table2_rows(hard_records(bad)))
    assert c["beats"]["dra"] is False and c["holds"] is False and c["wins"]["dra"] == 0
    assert "does not beat DRA: 0.870 vs 0.875 (-0.005), higher on 0 of 5" in c["sentence"]
    assert "-0.005 [-0.005, -0.005], below" in c["sentence"]
    assert "does not hold here" in c["sentence"]
    # a missing method: cannot tell
    (c,) = reporting.table2_claims(reporting.table2_rows(hard_records({"atac": good["atac"]})))
    assert c["holds"] is None and "cannot tell, no run of deviation, dra" in c["sentence"]
    # a paper class with some types: partial scope and the paper's own verdict
    nut = {m: {"bent": v} for m, v in (("deviation", 0.7), ("dra", 0.8), ("atac", 0.9))}
    (c,) = reporting.table2_claims(reporting.table2_rows(
        hard_records(nut, dataset="mvtec_ad", category="metal_nut", shots=1)))
    assert c["all_types"] is False and "over 1 known type of 4" in c["sentence"]
    assert c["paper_holds"] is True and "On the paper's own values for this class it holds" in c["sentence"]
    # above both rivals by the bootstrap, three spread seeds of one type: the t check does not confirm
    t = MT_TYPES[0]
    recs = [hrec(m, 0.80, t, seed=s) for m in ("deviation", "dra") for s in range(3)]
    recs += [hrec("atac", 0.80 + d, t, seed=s) for s, d in enumerate((0.02, 0.01, 0.06))]
    (c,) = reporting.table2_claims(reporting.table2_rows(recs))
    assert c["holds"] is True and c["paired"]["dra"]["t_verdict"] == "not distinguishable"
    assert "+0.030 [" in c["sentence"] and "], above (fragile: a t interval over the same pairs, [" in c["sentence"]
    assert "holds here, though the t check does not confirm it." in c["sentence"]
    assert c["t_confirmed"] is False


def test_table2_claims_per_setup():
    """Methods at their own setups (the paper's way: DRA on ResNet-18) are compared; two setups of
    one method give one claim each."""
    per = dict(zip(MT_TYPES, (0.8,) * 5))
    recs = (hard_records({"deviation": per, "atac": per}, backbone="resnet50")
            + hard_records({"dra": per}, backbone="resnet18")
            + hard_records({"atac": per}, backbone="mobilenet_v2"))
    claims = reporting.table2_claims(reporting.table2_rows(recs))
    assert len(claims) == 2
    assert {c["setups"]["atac"].split()[0] for c in claims} == {"resnet50", "mobilenet_v2"}
    assert all(c["setups"]["dra"].startswith("resnet18") for c in claims)
    assert all("Setups:" in c["sentence"] and "does not beat" in c["sentence"] for c in claims)


def test_table2_first_runs_are_not_hard():
    with pytest.raises(ValueError, match="no hard-setting records"):
        reporting.table2_rows(load_records(REPO / "paper_runs/results/first-runs-cpu.jsonl"))


def test_table2_figure_marks_the_erratum():
    tile = ("crack", "glue_strip", "gray_stroke", "oil", "rough")
    fig = charts.table2_figure(reporting.table2_rows(
        hard_records({"dra": dict.fromkeys(tile, 0.95)}, dataset="mvtec_ad", category="tile")))
    (ax,) = fig.axes
    assert any(t.get_text() == "†" for t in ax.texts)
    assert any("erratum" in t.get_text() for t in fig.legends[0].get_texts())


def test_table2_sweep_files():
    """The Table 2 sweeps expand to the runs their comments promise; DRA at the `dra` preset."""
    from atac.config import preset
    from atac.sweep import load_sweep

    cpu = load_sweep(REPO / "paper_runs" / "table2-cpu.yaml").runs
    assert len(cpu) == 168 == (5 + 5 + 4) * 3 * 4
    assert {r.config.setting for r in cpu} == {"hard"}
    assert {r.config.backbone for r in cpu} == {"mobilenet_v2"} and {r.config.image_size for r in cpu} == {224}
    for ds, cat in (("mvtec_ad", "grid"), ("magnetic_tile", "magnetic_tile"), ("mvtec_ad", "metal_nut")):
        types = reporting.defect_types(ds, cat)
        for m in reporting.TABLE2_ORDER:
            mine = [r.config for r in cpu if (r.config.dataset, r.config.category, r.config.method) == (ds, cat, m)]
            assert sorted({c.known_type for c in mine}) == sorted(types)
            assert sorted((c.shots, c.seed) for c in mine if c.known_type == types[0]) == [
                (1, 0), (10, 0), (10, 1), (10, 2)]
    # one budget label for all three methods, so the tables and claims set them side by side
    assert len({reporting.budget({"config": r.config.to_dict()}) for r in cpu}) == 1
    dra = [r.config for r in cpu if r.config.method == "dra"]
    assert {(c.dra_scales, c.normalization, c.clahe) for c in dra} == {(2, "imagenet", False)}
    gpu = load_sweep(REPO / "paper_runs" / "table2.yaml").runs
    assert len(gpu) == (5 + 4 + 5) * 3 * 2 * 3
    want = preset("dra").to_dict()
    data_fields = {"dataset", "category", "setting", "known_type", "shots", "seed"}
    for r in gpu:
        d = r.config.to_dict()
        if r.config.method == "dra":
            assert {k: v for k, v in d.items() if k not in data_fields} == \
                {k: v for k, v in want.items() if k not in data_fields}
        else:
            assert (d["backbone"], d["preset"], d["epochs"], d["batch_size"]) == ("resnet50", "paper", 30, 48)
    assert {r.config.category for r in gpu} == {"tile", "metal_nut", "carpet"}
    for cat in ("tile", "metal_nut"):
        assert sorted({r.config.known_type for r in gpu if r.config.category == cat}) == \
            sorted(reporting.defect_types("mvtec_ad", cat))


def test_table1_sweep_file():
    """The ladder's CPU sweep: the same 21 runs on grid, Magnetic Tile and metal_nut, one budget."""
    from atac.sweep import load_sweep

    runs = [r.config for r in load_sweep(REPO / "paper_runs" / "table1-cpu.yaml").runs]
    assert len(runs) == 63 and {c.setting for c in runs} == {"general"}
    assert {(c.backbone, c.weights, c.image_size) for c in runs} == {("mobilenet_v2", "imagenet", 224)}
    assert len({reporting.budget({"config": c.to_dict()}) for c in runs}) == 1
    ladder = ["cutmix_bce", "weighted_ce", "deviation", "gradcam_zoom", "atac"]
    want = sorted([(m, 10, s) for m in ladder for s in (0, 1, 2)] +
                  [(m, 1, s) for m in ("deviation", "atac") for s in (0, 1, 2)])
    for ds, cat in (("mvtec_ad", "grid"), ("magnetic_tile", "magnetic_tile"), ("mvtec_ad", "metal_nut")):
        assert sorted((c.method, c.shots, c.seed) for c in runs
                      if (c.dataset, c.category) == (ds, cat)) == want


def test_cli_table2(tmp_path, capsys):
    import json

    from atac.cli import main

    means = {"deviation": dict(zip(MT_TYPES, (0.70,) * 5)), "dra": dict(zip(MT_TYPES, (0.80,) * 5)),
             "atac": dict(zip(MT_TYPES, (0.85,) * 5))}
    results = tmp_path / "t2.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in hard_records(means)))
    assert main(["table", "table2", "--results", str(results), "--figure", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "hard setting" in out and "mean (5 types)" in out and "0.850 ± 0.010 (3)" in out
    assert "The paper's claim (ATAC-Net above both) holds here." in out
    assert "two views" not in out                       # no record carries view_auroc
    with_views = [dict(r, view_auroc={"full": 0.8, "zoom": 0.9}) if r["method"] == "atac" else r
                  for r in hard_records(means)]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in with_views))
    assert main(["table", "table2", "--results", str(tmp_path / "v.jsonl")]) == 0
    assert "| 15 | 0.800 | 0.900 | 0.850 | 15 of 15 | 15 of 15 |" in capsys.readouterr().out
    assert (tmp_path / "f.png").stat().st_size > 0
    assert main(["table", "table2", "--results", str(results), "--format", "csv",
                 "--out", str(tmp_path / "t.csv")]) == 0
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 15 + 3
    # a general-setting file is a clear error, not an empty table
    general = tmp_path / "g.jsonl"
    general.write_text(json.dumps(rec("atac", 0.9)) + "\n")
    assert main(["table", "table2", "--results", str(general)]) != 0
    assert "no hard-setting records" in capsys.readouterr().err


def test_cli_table1_reads_several_results_files(tmp_path, capsys):
    import json

    from atac.cli import main

    ladder, dra = tmp_path / "ladder.jsonl", tmp_path / "dra.jsonl"
    ladder.write_text("".join(json.dumps(rec(m, v, seed=s)) + "\n" for m, v in
                              (("deviation", 0.90), ("atac", 0.95)) for s in (0, 1)))
    dra.write_text("".join(json.dumps(rec("dra", 0.80 + s / 100, seed=s)) + "\n" for s in (0, 1)))
    assert main(["table", "table1", "--results", str(ladder), "--results", str(dra), "--format", "csv"]) == 0
    import csv
    methods = [row["method"] for row in csv.DictReader(capsys.readouterr().out.splitlines())]
    assert methods == ["deviation", "atac", "dra"]  # ladder order, DRA after it
    assert main(["table", "table1", "--results", str(ladder), "--results", str(tmp_path / "missing.jsonl")]) != 0
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    # the same run in two files: the error names both
    assert main(["table", "table1", "--results", str(ladder), "--results", str(ladder)]) != 0
    err = capsys.readouterr().err
    assert "files read together" in err and err.count("ladder.jsonl") >= 2


def test_view_summary_counts_which_view_ranks_better():
    def atac(seed, full, zoom, final, known="bent", shots=10):
        r = dict(rec("atac", final, seed=seed, shots=shots), setting="hard", known_type=known)
        if full is not None:
            r["view_auroc"] = {"full": full, "zoom": zoom}
        return r
    recs = [atac(0, 0.60, 0.70, 0.68), atac(1, 0.80, 0.75, 0.79), atac(2, None, None, 0.9),
            atac(0, 0.5, 0.6, 0.55, known="glue", shots=1), rec("deviation", 0.7)]
    rows = reporting.view_summary(recs)
    assert [(r["shots"], r["n"], r["n_without"]) for r in rows] == [(1, 1, 0), (10, 2, 1)]
    ten = rows[1]
    assert ten["full"] == pytest.approx(0.70) and ten["zoom"] == pytest.approx(0.725)
    assert ten["final"] == pytest.approx(0.735)          # the record without views is left out
    assert (ten["zoom_better"], ten["final_better"]) == (1, 1)
    text = reporting.render_view_summary(rows)
    assert "| 2 (+1 without views) | 0.700 | 0.725 | 0.735 | 1 of 2 | 1 of 2 |" in text
    # a record with views of another method counts only when asked for
    assert reporting.view_summary([dict(recs[0], method="gradcam_zoom")]) == []
    assert reporting.view_summary([dict(recs[0], method="gradcam_zoom")], methods=("gradcam_zoom",))[0]["n"] == 1
    # runs of another budget are a row of their own, never pooled
    longer = dict(recs[1], config=dict(recs[1].get("config") or {}, epochs=99))
    split_rows = reporting.view_summary([recs[0], longer])
    assert len(split_rows) == 2 and [r["n"] for r in split_rows] == [1, 1]
    assert {r["budget"] for r in split_rows} == {reporting.budget(recs[0]), reporting.budget(longer)}
    with pytest.raises(ValueError, match="view_auroc"):
        reporting.view_summary([dict(recs[0], view_auroc={"full": 0.5})])
    with pytest.raises(ValueError, match="not finite"):
        reporting.view_summary([dict(recs[0], view_auroc={"full": float("nan"), "zoom": 0.5})])


def test_condense_hard_keeps_the_mean_over_known_types():
    full = {"deviation": dict(zip(MT_TYPES, (0.70,) * 5)), "atac": dict(zip(MT_TYPES, (0.80,) * 5))}
    part = {"dra": {"blowhole": 0.9, "break": 0.8}}            # two of five types: no mean row
    rows = reporting.table2_rows(hard_records(full) + hard_records(part)) + \
        reporting.table1_rows([rec("atac", 0.9)])
    short = reporting.condense_hard(rows)
    hard = [r for r in short if r["setting"] == "hard"]
    assert sorted((r["method"], r["known_type"]) for r in hard) == [
        ("atac", "mean over 5 known types"), ("deviation", "mean over 5 known types"),
        ("dra", "blowhole"), ("dra", "break")]
    assert [r["mean"] for r in hard if r["method"] == "atac"] == pytest.approx([0.80])
    assert sum(r["setting"] == "general" for r in short) == 1
    assert all(r["known_type"] == "mean" for r in rows if r["setting"] == "hard" and r["n_types"] > 1)


# ------------------------------------------------------------------ metal_nut, the paper's own class
NUT_TYPES = ("bent", "color", "flip", "scratch")


def nut_records(means: dict[str, dict[str, float]], **kw):
    return hard_records(means, dataset="mvtec_ad", category="metal_nut", **kw)


def test_metal_nut_table1_rows_have_the_papers_values():
    recs = ladder_records({"cutmix_bce": 0.70, "weighted_ce": 0.80, "deviation": 0.85, "gradcam_zoom": 0.86,
                           "atac": 0.90}, category="metal_nut")
    recs += [rec(m, 0.6, seed=s, category="metal_nut", shots=1) for m in ("deviation", "atac") for s in (0, 1, 2)]
    rows = reporting.table1_rows(recs)
    ten = {r["method"]: r for r in rows if r["shots"] == 10}
    assert {m: r["paper"] for m, r in ten.items()} == {"cutmix_bce": 0.763, "weighted_ce": 0.952,
                                                        "deviation": 0.989, "gradcam_zoom": None, "atac": 1.0}
    assert ten["atac"]["diff"] == pytest.approx(0.90 - 1.0)
    assert all(r["paper"] is None for r in rows if r["shots"] == 1)     # Table 1 is ten anomalies only
    wide = reporting.table1_wide(rows)
    assert wide.loc[("metal_nut", 10), ("V atac", "ours")] == "0.900 ± 0.010 (3)"
    assert wide.loc[("metal_nut", 10), ("V atac", "paper")] == "1.000"
    assert wide.loc[("metal_nut", 1), ("V atac", "paper")] == "—"
    assert wide.loc[("metal_nut", 10), ("IV gradcam_zoom", "ours")] == "0.860 ± 0.010 (3)"
    assert ("IV gradcam_zoom", "paper") not in wide.columns              # step IV: no Table 1 column
    (order,) = reporting.ladder_order(rows)
    assert order["holds"] is True and order["paper_holds"] is True   # 1.000 > 0.989 > 0.952 > 0.763
    assert reporting.paper_table1_sentence("metal_nut") == (
        "The paper's Table 1 row for metal_nut (ResNet-50, its budget, ten anomalies): I cutmix_bce "
        "0.763, II weighted_ce 0.952, III deviation 0.989, V atac 1.000.")
    assert reporting.paper_table1_sentence("magnetic_tile") is None and reporting.paper_table1_sentence("mean") is None


def test_metal_nut_table2_rows_types_mean_and_claim():
    means = {"deviation": dict(zip(NUT_TYPES, (0.70, 0.72, 0.74, 0.76))),
             "dra": dict(zip(NUT_TYPES, (0.80, 0.80, 0.80, 0.80))),
             "atac": dict(zip(NUT_TYPES, (0.90, 0.86, 0.84, 0.82)))}
    recs = nut_records(means) + nut_records(means, seeds=(0,), shots=1)
    rows = reporting.table2_rows(recs)
    by = {(r["shots"], r["known_type"], r["method"]): r for r in rows}
    assert len(rows) == 2 * (4 + 1) * 3
    assert by[(10, "flip", "dra")]["paper"] == 0.913 and by[(1, "bent", "deviation")]["paper"] == 0.797
    mean = by[(10, "mean", "atac")]
    assert mean["n_types"] == 4 and mean["n"] == 3 and mean["mean"] == pytest.approx(0.855)
    assert mean["paper"] == 0.987 and mean["paper_types_mean"] == pytest.approx(0.987)
    assert mean["erratum"] is None and mean["diff"] == pytest.approx(0.855 - 0.987)
    assert by[(1, "mean", "dra")]["paper"] == 0.932 and by[(1, "mean", "dra")]["n"] == 1
    md = reporting.render_table2(rows)
    wide = reporting.table2_wide(rows)
    assert wide.loc[("metal_nut", "mean (4 types)"), ("M = 10", "ATAC-Net", "ours")] == "0.855 ± 0.010 (3)"
    assert wide.loc[("metal_nut", "mean (4 types)"), ("M = 10", "ATAC-Net", "paper")] == "0.987"
    assert "†" not in md                            # metal_nut's printed means are all consistent
    claims = {c["shots"]: c for c in reporting.table2_claims(rows)}
    assert claims[10]["all_types"] is True and "over all 4 known types" in claims[10]["sentence"]
    assert claims[10]["holds"] is True and claims[10]["paper_holds"] is True
    assert claims[1]["paper_holds"] is True and "one seed only" in claims[1]["sentence"]


def test_render_class_table2_ours_beside_the_papers():
    means = {"deviation": dict.fromkeys(NUT_TYPES, 0.70), "atac": dict.fromkeys(NUT_TYPES, 0.90)}
    rows = reporting.table2_rows(nut_records(means) + hard_records({"atac": dict.fromkeys(MT_TYPES, 0.5)}))
    md = reporting.render_class_table2(rows, "mvtec_ad", "metal_nut")
    assert md.startswith("**mvtec_ad / metal_nut**: Image AUROC, hard setting")
    assert "Ours: mobilenet_v2 (cpu: 15 epochs" in md
    assert "| class     | known type     |   M = 1 DevNet ours |   M = 1 DevNet paper |" in md
    assert "blowhole" not in md                     # other classes' rows are left out
    # ten anomalies, ours beside the paper's; one anomaly (no runs of ours) the paper's values only
    wide = reporting.table2_wide(rows, classes=[("mvtec_ad", "metal_nut")])
    flip, mean = wide.loc[("metal_nut", "flip")], wide.loc[("metal_nut", "mean (4 types)")]
    assert [flip[("M = 10", m, part)] for m in ("DevNet", "DRA", "ATAC-Net") for part in ("ours", "paper")] == [
        "0.700 ± 0.010 (3)", "0.987", "—", "0.913", "0.900 ± 0.010 (3)", "0.991"]
    assert [mean[("M = 10", m, part)] for m in ("DevNet", "DRA", "ATAC-Net") for part in ("ours", "paper")] == [
        "0.700 ± 0.010 (3)", "0.965", "—", "0.945", "0.900 ± 0.010 (3)", "0.987"]
    bent = wide.loc[("metal_nut", "bent")]
    assert [bent[("M = 1", m, part)] for m in ("DevNet", "DRA", "ATAC-Net") for part in ("ours", "paper")] == [
        "—", "0.797", "—", "0.952", "—", "0.954"]
    # no runs of ours: the paper's rows, said so
    only = reporting.render_class_table2([], "mvtec_ad", "metal_nut")
    assert "no runs of ours in these results, so only the paper's values are shown" in only
    assert only.count("\n| ") == 1 + 5        # the header and four types and their mean
    paper_only = reporting.table2_wide([], classes=[("mvtec_ad", "metal_nut")])
    assert set(paper_only.xs("ours", axis=1, level=2).to_numpy().ravel()) == {"—"}
    assert paper_only.loc[("metal_nut", "mean (4 types)"), ("M = 10", "ATAC-Net", "paper")] == "0.987"
    # tile's erratum is marked as in render_table2
    tile = reporting.render_class_table2([], "mvtec_ad", "tile")
    assert "0.935 †" in tile and "average 0.953" in tile
    # two setups of ours: a line each, never pooled
    longer = nut_records({"atac": dict.fromkeys(NUT_TYPES, 0.95)}, config={**CPU_BUDGET, "epochs": 30})
    two = reporting.table2_wide(reporting.table2_rows(nut_records(means) + longer))
    assert two.index.names == ["class", "setup", "known type"]
    setups = sorted(set(two.index.get_level_values("setup")))
    assert len(setups) == 2 and "cpu: 30 epochs" in setups[1]
    assert two.loc[("metal_nut", setups[1], "flip"), ("M = 10", "ATAC-Net", "ours")] == "0.950 ± 0.010 (3)"
    assert two.loc[("metal_nut", setups[0], "flip"), ("M = 10", "ATAC-Net", "ours")] == "0.900 ± 0.010 (3)"
    with pytest.raises(ValueError, match="no rows of magnetic_tile"):
        reporting.render_class_table2(rows, "magnetic_tile", "magnetic_tile_x")


def test_sweep_progress_says_what_is_not_recorded_yet(md_row):
    from atac.config import preset

    def cfg(category, method, seed, dataset="mvtec_ad", setting="general", known_type=None):
        c = preset("cpu")
        c.dataset, c.category, c.method, c.seed, c.setting, c.known_type = (dataset, category, method,
                                                                             seed, setting, known_type)
        return c.to_dict()

    configs = [cfg(c, m, s) for c in ("grid", "metal_nut") for m in ("deviation", "atac") for s in (0, 1)]
    configs += [cfg("metal_nut", "atac", 0, setting="hard", known_type="bent")]
    records = [dict(rec(c["method"], 0.9, seed=c["seed"], category=c["category"]), config=c)
               for c in configs[:4]]                                    # grid's four runs recorded
    records.append(dict(rec("atac", 0.9, seed=0, category="metal_nut"),
                        config=dict(configs[4], device="cuda", data_root="/elsewhere")))  # execution only
    prog = reporting.sweep_progress(records, configs, setting="general")
    assert prog == [{"dataset": "mvtec_ad", "category": "grid", "n_runs": 4, "n_recorded": 4},
                    {"dataset": "mvtec_ad", "category": "metal_nut", "n_runs": 4, "n_recorded": 1}]
    assert reporting.sweep_progress(records, configs)[1]["n_runs"] == 5
    text = reporting.render_progress(prog, "table1", sweep_name="sweep s")
    assert text == ("- **mvtec_ad / metal_nut**: 1 of sweep s's 4 runs are in these results; its rows "
                    "above are over those only.\n")
    none = reporting.sweep_progress(records[:4], configs, setting="general")
    text = reporting.render_progress(none, "table1")
    assert "none of the sweep's 4 runs of it is in these results yet" in text
    assert "The paper's Table 1 row for metal_nut" in text and "grid" not in text
    hard = reporting.render_progress(reporting.sweep_progress(records, configs, setting="hard"), "table2")
    assert "The paper's values for it:" in hard
    head, line = md_row(hard, "class"), md_row(hard, "metal_nut", "mean (4 types)")
    assert line[head.index("M = 10 DevNet ours")] == "—" and line[head.index("M = 10 DevNet paper")] == "0.965"
    other = reporting.render_progress(none, "table1", present={("mvtec_ad", "metal_nut")})
    assert "none of the sweep's 4 runs of it is in these results; its rows above come from other runs" in other
    assert "Table 1 row" not in other
    mt = [{"dataset": "magnetic_tile", "category": "magnetic_tile", "n_runs": 2, "n_recorded": 0}]
    assert "The paper's Table 2 has no row for it." in reporting.render_progress(mt, "table2")
    assert reporting.render_progress(prog[:1], "table1") == ""
    with pytest.raises(ValueError, match="table1 or table2"):
        reporting.render_progress(prog, "table3")


def test_setup_differences_from_the_configs():
    from atac.config import preset

    def cfg(method, **kw):
        c = preset("cpu").to_dict() if method != "dra" else preset("dra").to_dict()
        c.update(method=method, backbone="mobilenet_v2", **kw)
        return c

    notes = reporting.setup_differences([cfg("deviation"), cfg("atac"), cfg("atac", epochs=3),
                                      cfg("dra", image_size=224, epochs=3, batch_size=16)])
    assert len(notes) == 3
    dev, atac, dra = notes
    assert dev.startswith("DevNet (`deviation`), against the paper (the `paper` preset): backbone mobilenet_v2 "
                          "(the paper: resnet50); epochs 15 (the paper: 30); batch 16 (the paper: 48)")
    assert "The same as the paper: weights imagenet, input size 224 px" in dev and "CLAHE on" in dev
    assert atac.startswith("ATAC-Net (`atac`)") and "epochs 15 or 3 (the paper: 30)" in atac
    assert dra.startswith("DRA (`dra`), against DRA's own paper (the `dra` preset; the supplement does not say")
    assert "backbone mobilenet_v2 (DRA's paper: resnet18); input size 224 px (DRA's paper: 448 px)" in dra
    assert "CLAHE off, normalisation constants ImageNet's, pyramid scales 2, reference normals 5" in dra
    # one text for methods that differ alike; a config as the paper's says so
    same = reporting.setup_differences([cfg("deviation"), cfg("atac")])
    assert len(same) == 1 and same[0].startswith("DevNet (`deviation`) and ATAC-Net (`atac`), against")
    paper = preset("paper").to_dict()
    assert reporting.setup_differences([paper]) == ["ATAC-Net (`atac`), against the paper (the `paper` "
                                                 "preset): nothing differs."]
    assert reporting.setup_differences([]) == []


def test_cli_tables_show_metal_nut_beside_the_paper(tmp_path, capsys, md_row):
    """`atac table` on records with metal_nut: its rows carry the paper's values, Table 2 also in the
    paper's layout; with --sweep, a class with no records yet says so and shows the paper's values."""
    import json

    import yaml

    from atac.cli import main
    from atac.sweep import load_sweep

    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "results": "r.jsonl", "base": {"preset": "smoke"}, "grid": [
        {"dataset": "mvtec_ad", "category": ["grid", "metal_nut"], "method": ["deviation", "atac"],
         "shots": 10, "seed": [0, 1]},
        {"dataset": "mvtec_ad", "category": "metal_nut", "setting": "hard", "known_type": list(NUT_TYPES),
         "method": ["deviation", "dra", "atac"], "shots": 10, "seed": 0}]}))
    runs = [r.config.to_dict() for r in load_sweep(sweep).runs]
    general = [dict(rec(c["method"], 0.9 + 0.01 * c["seed"], seed=c["seed"], category=c["category"]), config=c)
               for c in runs if c["setting"] == "general"]
    t1 = tmp_path / "t1.jsonl"
    t1.write_text("".join(json.dumps(r) + "\n" for r in general if r["category"] == "grid"))
    assert main(["table", "table1", "--results", str(t1), "--sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "metal_nut |" not in out                          # no row of ours for it ...
    assert "Sweep s (" in out and "4 of its 8 general-setting runs are in these results:" in out
    assert "**mvtec_ad / metal_nut**: none of sweep s's 4 runs of it is in these results yet" in out
    assert "I cutmix_bce 0.763, II weighted_ce 0.952, III deviation 0.989, V atac 1.000" in out
    assert "What differs from the paper's runs (from the records' configs):" in out
    t1.write_text("".join(json.dumps(r) + "\n" for r in general))
    assert main(["table", "table1", "--results", str(t1), "--sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    head, line = md_row(out, "class"), md_row(out, "metal_nut", "10")
    assert line[head.index("V atac ours")] == "0.905 ± 0.007 (2)" and line[head.index("V atac paper")] == "1.000"
    assert "8 of its 8 general-setting runs are in these results, all of them." in out
    hard = [dict(hrec(c["method"], {"deviation": 0.7, "dra": 0.8, "atac": 0.9}[c["method"]], c["known_type"],
                      category="metal_nut", dataset="mvtec_ad"), config=c)
            for c in runs if c["setting"] == "hard"]
    t2 = tmp_path / "t2.jsonl"
    t2.write_text("".join(json.dumps(r) + "\n" for r in hard))
    assert main(["table", "table2", "--results", str(t2), "--sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    head, line = md_row(out, "class"), md_row(out, "metal_nut", "mean (4 types)")
    assert [line[head.index(f"M = 10 {m} {part}")] for m in ("DevNet", "DRA", "ATAC-Net")
            for part in ("ours", "paper")] == ["0.700 (1)", "0.965", "0.800 (1)", "0.945", "0.900 (1)", "0.987"]
    assert "12 of its 12 hard-setting runs are in these results, all of them." in out
    assert "DRA (`dra`), against DRA's own paper" in out and "On the paper's own values for this class it holds" in out
    # CSV stays the rows only
    assert main(["table", "table2", "--results", str(t2), "--sweep", str(sweep), "--format", "csv"]) == 0
    assert "Sweep" not in capsys.readouterr().out
