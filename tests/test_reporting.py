"""atac.reporting: grouping by run identity, the paper's layout as a frame, Markdown and HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from atac import reporting

REPO = Path(__file__).resolve().parents[1]
CPU = {"preset": "cpu", "epochs": 15, "steps_per_epoch": 20, "batch_size": 16, "image_size": 224}


def rec(method, value, seed=0, category="magnetic_tile", dataset="magnetic_tile", setting="general",
        known_type=None, **config):
    return {"method": method, "backbone": "mobilenet_v2", "dataset": dataset, "category": category,
            "setting": setting, "known_type": known_type, "shots": 10, "seed": seed, "image_auroc": value,
            "config": {**CPU, **config}}


def test_runs_that_differ_in_a_split_field_beyond_the_seed_are_never_pooled():
    """Magnetic Tile runs of another held-out split (mt_split_seed) are other runs: a row each, named
    by the field (arm labels leave split fields out, so the setup label adds it)."""
    recs = [rec("atac", 0.9, seed=s) for s in range(3)] + [rec("atac", 0.5, seed=s, mt_split_seed=1)
                                                           for s in range(3)]
    rows = reporting.table1_rows(recs)
    assert [(r["n"], r["mean"]) for r in rows] == [(3, pytest.approx(0.9)), (3, pytest.approx(0.5))]
    assert [r["budget"].rpartition("; ")[2] for r in rows] == ["mt_split_seed=0", "mt_split_seed=1"]
    wide = reporting.table1_wide(rows)
    assert wide.index.names == ["class", "setup", "M"] and len(wide) == 2
    # one split field alike: one row, no field named
    (row,) = reporting.table1_rows([rec("atac", 0.9, seed=s, mt_split_seed=1) for s in range(3)])
    assert row["n"] == 3 and "mt_split_seed" not in row["budget"]
    # the hard setting too, per known type and in the mean over types
    types = reporting.defect_types("magnetic_tile", "magnetic_tile")
    hard = [rec("atac", 0.8, seed=s, setting="hard", known_type=t, mt_split_seed=k)
            for t in types for s in range(2) for k in (0, 1)]
    rows2 = reporting.table2_rows(hard)
    assert len(rows2) == 2 * (len(types) + 1) and {r["n"] for r in rows2} == {2}


def test_a_config_field_beyond_the_seed_splits_a_group_and_a_repeated_seed_is_refused():
    rows = reporting.table1_rows([rec("atac", 0.9, seed=s) for s in range(2)]
                                 + [rec("atac", 0.7, seed=s, lr=1e-3) for s in range(2)])
    assert sorted(r["budget"].rpartition(" ")[2] for r in rows) == ["lr=0.001", "px"]
    with pytest.raises(ValueError, match=r"seed\(s\) \[0\] appear more than once"):
        reporting.table1_rows([rec("atac", 0.9), rec("atac", 0.8)])


def test_defect_types_read_the_data_modules():
    from atac.data.synth import CATEGORIES

    assert reporting.defect_types("magnetic_tile", "magnetic_tile") == ("blowhole", "break", "crack", "fray",
                                                                         "uneven")
    assert reporting.defect_types("synthetic", "weave") == tuple(sorted(CATEGORIES["weave"]))
    assert reporting.defect_types("mvtec_ad", "metal_nut") == ("bent", "color", "flip", "scratch")
    assert reporting.defect_types("mvtec_ad", "toothbrush") is None
    # the paper's Table 2 classes have the paper's types
    for cat in ("tile", "metal_nut"):
        paper = {p["known_type"] for p in reporting.published_table2() if p["category"] == cat} - {"mean"}
        assert set(reporting.defect_types("mvtec_ad", cat)) == paper


def test_a_split_field_that_varies_for_one_type_keeps_the_mean_of_the_common_split():
    """Five types at mt_split_seed 0 (seeds 0, 1) and one type also at mt_split_seed 1: the common
    split's rows share one label over every type, so Table 2 keeps its mean over types."""
    types = reporting.defect_types("magnetic_tile", "magnetic_tile")
    recs = [rec("atac", 0.8, seed=s, setting="hard", known_type=t, mt_split_seed=0) for t in types for s in (0, 1)]
    recs += [rec("atac", 0.6, seed=s, setting="hard", known_type=types[0], mt_split_seed=1) for s in (0, 1)]
    rows = reporting.table2_rows(recs)
    means = [r for r in rows if r["known_type"] == "mean"]
    assert len(means) == 1 and means[0]["budget"].endswith("; mt_split_seed=0")
    assert means[0]["n"] == 2 and means[0]["mean"] == 0.8 and means[0]["n_types"] == len(types)
    other = [r for r in rows if r["budget"].endswith("; mt_split_seed=1")]
    assert [(r["known_type"], r["mean"]) for r in other] == [(types[0], 0.6)]
    assert {r["budget"] for r in rows if r["known_type"] != types[0]} == {means[0]["budget"]}


def test_wide_table2_marks_a_mean_of_uneven_seeds():
    types = reporting.defect_types("magnetic_tile", "magnetic_tile")
    recs = [rec("atac", 0.8, seed=0, setting="hard", known_type=t) for t in types]
    recs.append(rec("atac", 0.9, seed=1, setting="hard", known_type=types[0]))
    wide = reporting.table2_wide(reporting.table2_rows(recs))
    assert wide.loc[("magnetic_tile", "mean (5 types)"), ("M = 10", "ATAC-Net", "ours")] == "0.800 (1) ‡"
    assert wide.attrs["notes"] == ["‡ A mean over types: 1 run(s) of seeds not shared by every type left out."]
    md = reporting.to_markdown(wide)
    assert md.startswith(wide.attrs["caption"]) and md.rstrip().endswith(wide.attrs["notes"][0])


def test_html_for_the_book():
    rows = reporting.table1_rows([rec("atac", 0.9, seed=s, dataset="mvtec_ad", category="grid")
                                  for s in range(3)])
    html = reporting.to_html(reporting.table1_wide(rows))
    assert html.startswith('<p class="atac-results-caption">') and 'class="atac-results"' in html
    # compact: narrow no-break spaces (U+202F, no break opportunity even without the CSS), the std
    # without its leading zero, n said once in the caption
    assert ">0.900\u202f±\u202f.000</td>" in html and 'class="data row0 col7 paper"' in html
    assert "\u2009" not in html and reporting.render.THIN == "\u202f"
    assert "mean ± std over n = 3 seeds." in html and "<sup" not in html
    assert html == reporting.to_html(reporting.table1_wide(rows))          # the same table, the same text
    assert "<td" in html and "0.988" in html
    css = (REPO / "book" / "_static" / "book.css").read_text()
    assert "table.atac-results" in css and "white-space: nowrap" in css


def test_html_marks_a_cell_of_another_n_and_table2_by_rows():
    recs = [rec("atac", 0.9, seed=s, dataset="mvtec_ad", category="grid") for s in range(3)]
    recs += [rec("deviation", 0.8, seed=0, dataset="mvtec_ad", category="grid")]
    html = reporting.to_html(reporting.table1_wide(reporting.table1_rows(recs)))
    assert '>0.800<sup class="n">n=1</sup></td>' in html and ">0.900\u202f±\u202f.000</td>" in html
    assert "over n = 3 seeds, unless marked with another n." in html
    types = reporting.defect_types("magnetic_tile", "magnetic_tile")
    hard = [dict(rec("atac", 0.7 + 0.01 * i, seed=s, setting="hard", known_type=t), shots=m)
            for i, t in enumerate(types) for m in (1, 10) for s in range(2)]
    wide = reporting.table2_wide(reporting.table2_rows(hard), shots_as="rows")
    assert wide.index.names == ["class", "known type", "M"] and wide.columns.names == ["method", ""]
    assert list(wide.index[:2]) == [("magnetic_tile", types[0], 1), ("magnetic_tile", types[0], 10)]
    assert wide.loc[("magnetic_tile", "mean (5 types)", 10), ("ATAC-Net", "ours")] == "0.720 ± 0.000 (2)"
    side = reporting.table2_wide(reporting.table2_rows(hard))
    assert side.loc[("magnetic_tile", types[0]), ("M = 10", "ATAC-Net", "ours")] == wide.loc[
        ("magnetic_tile", types[0], 10), ("ATAC-Net", "ours")]
    with pytest.raises(ValueError, match="shots_as"):
        reporting.table2_wide(reporting.table2_rows(hard), shots_as="both")
    nut = reporting.render_class_table2([], "mvtec_ad", "metal_nut", fmt="html", shots_as="rows")
    assert nut.startswith('<p class="atac-results-caption"><strong>mvtec_ad / metal_nut</strong>')
    assert ">0.987</td>" in nut


def test_no_module_over_600_lines_and_no_tables_module():
    import re

    assert not (REPO / "atac" / "tables.py").exists()
    # nothing imports it (an editable install elsewhere could still resolve the name)
    pattern = re.compile(r"^\s*(from atac import .*\btables\b|from atac\.tables |import atac\.tables|"
                         r"from \.tables |from \. import .*\btables\b)", re.M)
    sources = [*REPO.glob("atac/**/*.py"), *REPO.glob("book/**/*.md"), *REPO.glob("tests/*.py"),
               *REPO.glob("benchmarks/*.py")]
    assert [p.name for p in sources if pattern.search(p.read_text())] == []
    for path in REPO.glob("atac/**/*.py"):
        assert len(path.read_text().splitlines()) <= 600, path.relative_to(REPO)


def test_budget_columns_cut_a_setup_label():
    assert reporting.budget_columns("cpu: 15 epochs × 20 steps, batch 16, 224 px; zoom_loss=per_view") == {
        "budget": "cpu, 15 epochs", "steps": "20", "batch": "16", "px": "224", "variant": "zoom_loss=per_view"}
    assert reporting.budget_columns("unknown")["budget"] == "unknown"


def test_drop_constant_says_the_constant_columns_once():
    import pandas as pd

    frame = pd.DataFrame({"data": ["grid", "tile"], "backbone": ["mobilenet_v2"] * 2, "variant": ["", ""],
                          "AUROC": ["0.900", "0.900"]})
    out = reporting.drop_constant(frame, keep=("AUROC",))
    assert list(out.columns) == ["data", "AUROC"]
    assert out.attrs["constant"] == "In every row: backbone mobilenet_v2."   # the empty variant unsaid
    text = reporting.frame_markdown(out, right=("AUROC",))
    assert text.splitlines()[1] == "|:-------|--------:|" and text.endswith("In every row: backbone mobilenet_v2.")
    assert list(reporting.drop_constant(frame.head(1)).columns) == list(frame.columns)


def test_measured_frame_short_columns(tmp_path):
    import json

    res = tmp_path / "results"
    res.mkdir()
    (res / "a.jsonl").write_text("\n".join(json.dumps(rec("atac", v, seed=s, category="grid", dataset="mvtec_ad"))
                                           for s, v in ((0, 0.9), (1, 0.8))) + "\n")
    (res / "b.jsonl").write_text(json.dumps(rec("deviation", 0.7, epochs=3)) + "\n")
    frame = reporting.measured_frame(reporting.recorded_results(res))
    assert list(frame.columns) == ["file", "data", "budget", "method", "seeds", "AUROC", "paper"]
    assert frame.to_dict("records")[0] == {"file": "a", "data": "grid", "budget": "cpu, 15 epochs",
                                           "method": "atac", "seeds": "0, 1", "AUROC": "0.850 ± 0.071",
                                           "paper": "0.988"}
    assert frame["paper"].tolist()[1] == "—" and frame["budget"].tolist()[1] == "cpu, 3 epochs"
    assert "batch 16" in frame.attrs["constant"] and "backbone mobilenet_v2" in frame.attrs["constant"]
    assert reporting.measured_frame([]).empty


def test_view_frame_short_columns():
    rows = [{"dataset": "mvtec_ad", "category": c, "setting": "hard", "shots": 10, "method": "atac",
             "backbone": "mobilenet_v2", "budget": "cpu: 3 epochs × 20 steps, batch 16, 224 px", "n": n,
             "n_without": w, "full": 0.6, "zoom": 0.7, "final": 0.65, "zoom_better": n, "final_better": 1}
            for c, n, w in (("grid", 2, 1), ("tile", 3, 0))]
    frame = reporting.view_frame(rows)
    assert list(frame.columns) == ["data", "runs", "full", "zoom", "final", "zoom > full", "final > full"]
    assert frame.iloc[0].tolist() == ["grid, hard", "2 (+1 without views)", "0.600", "0.700", "0.650",
                                      "2 of 2", "1 of 2"]
    assert "method atac" in frame.attrs["constant"] and "budget cpu, 3 epochs" in frame.attrs["constant"]


def test_display_path_relative_to_the_repository(tmp_path):
    from atac.paths import display_path

    assert display_path(tmp_path / "paper_runs" / "x.jsonl", repo=tmp_path) == "paper_runs/x.jsonl"
    assert display_path("/elsewhere/x.jsonl", repo=tmp_path) == "/elsewhere/x.jsonl"


def test_crop_threshold_frame_groups_by_w():
    recs = [dict(rec("atac", v, seed=s, category="grid", dataset="mvtec_ad"), config={**CPU, "crop_threshold": w})
            for s, v, w in ((0, 0.8, 0.7), (1, 0.6, 0.7), (0, 0.9, 0.5))]
    frame = reporting.crop_threshold_frame(recs, ["a.jsonl"] * 3)
    assert list(frame.columns) == ["data", "w", "seeds", "AUROC"]      # file, budget, M... said once
    assert frame[["w", "seeds", "AUROC"]].values.tolist() == [["0.5", "0", "0.900"], ["0.7", "0, 1", "0.700"]]
    assert "file a" in frame.attrs["constant"] and "budget cpu, 15 epochs" in frame.attrs["constant"]
    assert reporting.crop_threshold_frame([]).empty
