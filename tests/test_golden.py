"""Golden outputs of ``atac table``: the long-form CSV of every committed results file, and the
verdicts, claims and notes drawn from them, as recorded in ``tests/golden/`` (see its README).

Every cell is compared as text, numbers included: means and sample stds are computed with
``statistics.fmean`` / ``statistics.stdev`` (correctly rounded, independent of the order of the
values), so they come out the same to the last digit.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from atac.cli import main

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
RESULTS = REPO / "paper_runs" / "results"
TEXTS = json.loads((GOLDEN / "texts.json").read_text())


def _n_records() -> dict[str, int]:
    """How many records each results file held when the golden outputs were recorded."""
    return {f[:-len(".jsonl")]: n for f, _, n, _ in TEXTS["_recorded_results"]}


def _results(name: str, folder: Path) -> Path:
    """A copy of ``paper_runs/results/NAME.jsonl`` in ``folder`` with the records the golden
    outputs were made of (a sweep appends records; those after them are left out), beside its
    ``.splits.json``."""
    lines = [ln for ln in (RESULTS / f"{name}.jsonl").read_text().splitlines() if ln.strip()]
    n = _n_records()[name]
    assert len(lines) >= n, f"{name}.jsonl holds fewer records than when its golden outputs were made"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(ln + "\n" for ln in lines[:n]))
    splits = RESULTS / f"{name}.splits.json"          # the records' split file lists
    if splits.is_file():
        (folder / splits.name).write_bytes(splits.read_bytes())
    return folder / f"{name}.jsonl"


def _golden_csvs() -> list[Path]:
    return sorted(GOLDEN.glob("*.csv"))


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("golden", _golden_csvs(), ids=lambda p: p.name)
def test_table_csv_equals_golden(golden, tmp_path, capsys):
    """``atac table WHICH --results FILE[+FILE] --metric METRIC --format csv`` gives the recorded
    rows: the same keys and counts, every cell the same text (numbers to the last digit)."""
    stem, which, metric = golden.name[:-len(".csv")].rsplit(".", 2)
    args = ["table", which, "--metric", metric, "--format", "csv", "--out", str(tmp_path / "t.csv")]
    for name in stem.split("+"):
        args += ["--results", str(_results(name, tmp_path / "results"))]
    assert main(args) == 0, capsys.readouterr().err
    want = list(csv.DictReader(io.StringIO(golden.read_text())))
    got = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert want and got and list(got[0]) == list(want[0])
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for col in w:
            assert g[col] == w[col], (i, col, g[col], w[col])


def test_every_results_file_has_a_golden_table():
    have = {p.name.split(".")[0] for p in _golden_csvs()}
    files = {p.stem for p in RESULTS.glob("*.jsonl") if not p.name.endswith(".sessions.jsonl")}
    assert files <= have


def _texts(name: str, folder: Path) -> dict:
    """What the golden ``texts.json`` holds for one results file (or files joined by '+'),
    computed by the library now."""
    from atac import reporting
    from atac.results import load_records
    from atac.sweep import load_sweep

    sweeps = {"table1-cpu": "table1-cpu.yaml", "table1-cpu+dra-general-cpu": "table1-cpu.yaml",
              "table2-cpu": "table2-cpu.yaml", "dra-general-cpu": "dra-general-cpu.yaml",
              "zoom-study-cpu": "zoom-study-cpu.yaml"}
    recs = [r for n in name.split("+") for r in load_records(_results(n, folder))]
    o: dict = {}
    if any(r.get("setting") == "general" for r in recs):
        rows = reporting.table1_rows(recs)
        o["describe_setups_1"] = reporting.describe_setups(rows)
        o["ladder_order"] = [v["verdict"] for v in reporting.ladder_order(rows)]
        o["ladder_pairs"] = [p["sentence"] for p in reporting.ladder_pairs(rows)]
        o["setup_differences_general"] = reporting.setup_differences(
            [r["config"] for r in recs if r.get("setting") == "general"])
    if any(r.get("setting") == "hard" for r in recs):
        rows2 = reporting.table2_rows(recs)
        o["describe_setups_2"] = reporting.describe_setups(rows2)
        o["table2_claims"] = [c["sentence"] for c in reporting.table2_claims(rows2)]
        o["condense_hard"] = [[r["category"], r["shots"], r["known_type"], r["method"], r["mean"]]
                              for r in reporting.condense_hard(rows2)]
        o["setup_differences_hard"] = reporting.setup_differences(
            [r["config"] for r in recs if r.get("setting") == "hard"])
    o["view_summary"] = reporting.view_summary(recs)
    if name in sweeps:
        sw = load_sweep(REPO / "paper_runs" / sweeps[name])
        for setting, which in (("general", "table1"), ("hard", "table2")):
            prog = reporting.sweep_progress(recs, [r.config.to_dict() for r in sw.runs], setting)
            o[f"progress_{setting}"] = prog
            o[f"render_progress_{which}"] = reporting.render_progress(prog, which, sweep_name=f"sweep {sw.name}")
    return _plain(o)


def _plain(x):
    """JSON's view of ``x`` (tuples as lists, keys as text, a non-finite float as None)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


@pytest.mark.parametrize("name", sorted(k for k in TEXTS if not k.startswith("_")))
def test_verdicts_claims_and_notes_equal_golden(name, tmp_path):
    got, want = _texts(name, tmp_path), TEXTS[name]
    assert sorted(got) == sorted(want)
    for key in want:
        if key.startswith("render_progress"):   # the sentences; a class table in it is laid out anew
            got[key], want[key] = (_sentences(got[key]), _sentences(want[key]))
        assert _close(got[key], want[key]), key


def _sentences(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("- ")]


def test_recorded_results_equal_golden(tmp_path):
    """The book's file-by-file summary: the same files, records and rows (the sweeps' progress
    notes are left out: they count the records a sweep has appended since)."""
    from atac import reporting

    for name in _n_records():
        _results(name, tmp_path)
    got = [[f["file"], f["n_records"], len(f["rows"])] for f in reporting.recorded_results(tmp_path)]
    assert got == [[f, n, rows] for f, _, n, rows in TEXTS["_recorded_results"]]
