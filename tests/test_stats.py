"""Arms, the tidy frame and paired statistics, on records built here whose answers are known."""

import numpy as np
import pytest
from scipy import stats

from atac import reporting
from atac.cli import main
from atac.config import RunConfig, preset
from atac.frame import arm_labels, records_frame
from atac.results import write_records
from atac.stats import (bootstrap_interval, format_comparison, paired_comparison, paired_differences,
                        t_check_note, t_interval, verdict)


def _record(method="deviation", category="grid", seed=0, auroc=0.9, split="s", **fields):
    cfg = RunConfig.from_dict({**preset("cpu").to_dict(), "method": method, "dataset": "mvtec_ad",
                               "category": category, "seed": seed, "backbone": "mobilenet_v2", **fields})
    return {"method": method, "backbone": "mobilenet_v2", "dataset": "mvtec_ad", "category": category,
            "setting": "general", "known_type": None, "shots": 10, "seed": seed, "image_auroc": auroc,
            "image_auprc": auroc, "pixel_auroc": None, "config": cfg.to_dict(),
            "split": {"setting": "general", "shots": 10, "seed": seed,
                      "train_normal": [f"{category}/{split}{seed}"], "train_anomalous": [], "test": []}}


def test_arm_labels_name_what_differs_within_a_method():
    configs = [_record()["config"], _record(batchnorm="frozen")["config"], _record("atac")["config"],
               _record("atac", zoom_loss="per_view", batchnorm="frozen")["config"],
               _record("atac", seed=3, category="metal_nut")["config"]]
    assert arm_labels(configs) == ["deviation", "deviation batchnorm=frozen", "atac",
                                   "atac batchnorm=frozen zoom_loss=per_view", "atac"]


def _study(diffs_by_class, base=0.8):
    recs = []
    for cat, diffs in diffs_by_class.items():
        for seed, d in enumerate(diffs):
            recs.append(_record("deviation", cat, seed, base))
            recs.append(_record("atac", cat, seed, base + d))
    return records_frame(recs)


def test_a_constant_gain_is_above_with_a_degenerate_interval():
    table = paired_comparison(_study({"grid": [0.05] * 4}), "deviation")
    row = table.iloc[0]
    assert (row["arm"], row["class"], row["n"], row["n_positive"]) == ("atac", "grid 10-shot", 4, 4)
    assert row["mean_diff"] == pytest.approx(0.05)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.05, 0.05)) and row["verdict"] == "above"


def test_intervals_on_known_answers():
    up = paired_comparison(_study({"grid": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}), "deviation").iloc[0]
    assert up["mean_diff"] == pytest.approx(0.035) and 0.01 <= up["ci_low"] < 0.035 < up["ci_high"] <= 0.06
    assert up["verdict"] == "above"
    flat = paired_comparison(_study({"grid": [-0.02, -0.01, 0.0, 0.01, 0.02]}), "deviation").iloc[0]
    assert flat["mean_diff"] == pytest.approx(0.0) and flat["verdict"] == "not distinguishable"
    down = paired_comparison(_study({"grid": [-0.06, -0.05, -0.04, -0.03]}), "deviation").iloc[0]
    assert down["verdict"] == "below"
    # a large normal sample: BCa's interval is close to mean +- 1.96 sd / sqrt(n)
    x = np.random.default_rng(0).normal(0.1, 0.05, 400)
    lo, hi = bootstrap_interval([x])
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.15 * half) and hi == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert verdict(float("nan"), float("nan")) == "too few pairs"


def test_pooled_resamples_within_each_class():
    table = paired_comparison(_study({"grid": [0.10, 0.10, 0.10], "metal_nut": [-0.02, 0.0, 0.02]}), "deviation")
    pooled = table[table["class"] == "pooled"].iloc[0]
    assert pooled["n"] == 6 and pooled["mean_diff"] == pytest.approx(0.05) and pooled["n_positive"] == 4
    # grid has no spread: the pooled mean moves only with metal_nut's resamples, (0.30 + sum) / 6
    assert pooled["ci_low"] >= (0.30 - 0.06) / 6 - 1e-9 and pooled["ci_high"] <= (0.30 + 0.06) / 6 + 1e-9
    assert pooled["verdict"] == "above"


def test_the_t_check_on_known_answers():
    x = np.array([0.006, -0.025, -0.099])
    # one stratum: the one-sample t interval
    assert t_interval([x]) == pytest.approx(tuple(stats.ttest_1samp(x, 0).confidence_interval()), abs=1e-12)
    # two strata of equal size and spread, shifted: the stratified mean's standard error is
    # s / sqrt(2n) and Welch-Satterthwaite gives 2(n - 1) degrees of freedom
    a = np.array([0.01, 0.02, 0.03, 0.04])
    lo, hi = t_interval([a, a + 0.1])
    half = stats.t.ppf(0.975, 6) * a.std(ddof=1) / np.sqrt(8)
    assert (lo, hi) == pytest.approx((a.mean() + 0.05 - half, a.mean() + 0.05 + half), abs=1e-12)
    # the pooled t check is narrower than a t interval that ignores the strata (their means differ)
    naive = stats.ttest_1samp(np.concatenate([a, a + 0.1]), 0).confidence_interval()
    assert naive.low < lo and hi < naive.high
    # strata of unequal size and spread: the stratified mean is Welch's difference of the strata
    # scaled by their shares, so its interval is Welch's (Welch-Satterthwaite degrees of freedom)
    b = np.array([0.02, 0.10, -0.05, 0.07, 0.01])
    welch = stats.ttest_ind(a[:3] * 3 / 8, -b * 5 / 8, equal_var=False)
    assert t_interval([a[:3], b]) == pytest.approx(tuple(welch.confidence_interval()), abs=1e-12)
    assert 2 < welch.df < 6                                    # neither pooled (6) nor the smaller (2)
    # a stratum of one value moves the mean and adds no variance
    lo, hi = t_interval([np.array([0.5]), a])
    half = stats.t.ppf(0.975, 3) * np.sqrt(4 * a.var(ddof=1)) / 5
    assert (lo, hi) == pytest.approx(((0.5 + a.sum()) / 5 - half, (0.5 + a.sum()) / 5 + half), abs=1e-12)
    # one value per stratum: the values are one sample
    assert t_interval([a[:1], a[1:2], a[2:3]]) == pytest.approx(
        tuple(stats.ttest_1samp(a[:3], 0).confidence_interval()), abs=1e-12)
    assert np.isnan(t_interval([np.array([0.1])])).all()
    assert t_interval([np.array([0.1] * 3)]) == (pytest.approx(0.1, abs=1e-15),) * 2   # no spread
    assert t_interval([np.array([0.1] * 3), np.array([0.2] * 2)]) == (pytest.approx(0.14, abs=1e-15),) * 2
    assert np.isnan(t_interval([np.array([0.1, np.nan, 0.2])])).all() and np.isnan(t_interval([])).all()


def test_tables_carry_the_t_check_beside_the_registered_verdict():
    # three seeds, mean below: the bootstrap says below, the t interval (2 degrees of freedom) does not
    table = paired_comparison(_study({"grid": [0.006, -0.025, -0.099]}), "deviation")
    row = table.iloc[0]
    assert row["verdict"] == "below" and row["t_verdict"] == "not distinguishable"
    assert (row["t_low"], row["t_high"]) == pytest.approx((-0.1733, 0.0947), abs=1e-4)
    shown = format_comparison(table, check=True)
    assert shown["t check"].iloc[0] == "[-0.173, +0.095] not distinguishable"
    assert "t check" not in format_comparison(table).columns
    assert t_check_note(row) == "fragile: a t interval over the same pairs, [-0.173, +0.095], includes 0"
    # the bootstrap includes 0 but the t interval does not: said, and not called fragile
    assert t_check_note({"verdict": "not distinguishable", "t_verdict": "above", "t_low": 0.001,
                         "t_high": 0.02}) == "a t interval over the same pairs, [+0.001, +0.020], lies above 0"
    agree = paired_comparison(_study({"grid": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}), "deviation").iloc[0]
    assert agree["verdict"] == agree["t_verdict"] == "above" and t_check_note(agree) == ""


def test_pairs_need_one_split_one_run_and_a_known_arm():
    recs = [_record("deviation", seed=0), _record("atac", seed=0, split="other")]
    with pytest.raises(ValueError, match="split"):
        paired_differences(records_frame(recs), "atac", "deviation")
    with pytest.raises(ValueError, match="arms: atac, deviation"):
        paired_differences(records_frame(recs), "dra", "deviation")
    twice = records_frame([_record(seed=0), _record(seed=0), _record("atac", seed=0)])
    with pytest.raises(ValueError, match="several runs"):
        paired_differences(twice, "atac", "deviation")


def test_atac_compare_prints_each_arm_per_class_and_pooled(tmp_path, capsys):
    recs = [r for cat in ("grid", "metal_nut") for s in range(3)
            for r in (_record("deviation", cat, s, 0.8), _record("atac", cat, s, 0.7 + 0.01 * s),
                      _record("atac", cat, s, 0.85, zoom_loss="per_view"))]
    path = tmp_path / "r.jsonl"
    write_records(path, recs)
    assert main(["compare", "--results", str(path), "--baseline", "deviation", "--baseline", "atac"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("| atac zoom_loss=per_view")]
    assert len(lines) == 6                                  # 2 classes + pooled, against 2 baselines
    assert any("+0.050 [+0.050, +0.050]" in ln and "above" in ln for ln in lines)
    assert any("| atac " in ln and "below" in ln for ln in out.splitlines())
    assert main(["compare", "--results", str(path), "--baseline", "nothing"]) == 2
    assert "arms: atac, atac zoom_loss=per_view, deviation" in capsys.readouterr().err
    assert main(["compare", "--results", str(path), "--baseline", "deviation", "--t-check"]) == 0
    out = capsys.readouterr().out
    assert "t check" in out and "not the decision rule" in out
    assert any(ln.startswith("| atac zoom_loss=per_view") and ln.rstrip(" |").endswith("above")
               and ln.count("[+0.050, +0.050]") == 2 for ln in out.splitlines())


def test_tables_never_pool_runs_whose_configs_differ_beyond_the_seed():
    recs = [_record(seed=s, auroc=0.9) for s in range(3)] + [_record(seed=s, auroc=0.5, lr=1e-3) for s in range(3)]
    rows = reporting.table1_rows(recs)
    assert len(rows) == 2
    by = {r["budget"]: r for r in rows}
    assert by["cpu: 15 epochs × 20 steps, batch 16, 224 px"]["mean"] == pytest.approx(0.9)
    assert by["cpu: 15 epochs × 20 steps, batch 16, 224 px; lr=0.001"]["mean"] == pytest.approx(0.5)
    same = reporting.table1_rows([_record(seed=s) for s in range(3)])
    assert [r["budget"] for r in same] == ["cpu: 15 epochs × 20 steps, batch 16, 224 px"]   # no variant named


def test_arm_labels_never_hide_a_reading_or_hand_a_label_to_a_later_arm():
    # DevNet runs all frozen, ATAC-Net literal and frozen: the frozen DevNet is named so
    configs = [_record(batchnorm="frozen")["config"], _record("atac")["config"],
               _record("atac", batchnorm="frozen")["config"]]
    assert arm_labels(configs) == ["deviation batchnorm=frozen", "atac", "atac batchnorm=frozen"]
    # an arm added later at a field's dataclass default does not take the plain label
    configs = [_record("atac", seed=s)["config"] for s in range(3)] + [_record("atac", epochs=30)["config"]]
    assert arm_labels(configs) == ["atac", "atac", "atac", "atac epochs=30"]
    # a reading the same in every arm is not named
    configs = [_record(rng_streams="independent")["config"], _record("atac", rng_streams="independent")["config"]]
    assert arm_labels(configs) == ["deviation", "atac"]


def test_a_contrast_refuses_two_runs_of_one_arm_class_and_seed():
    from atac.stats import contrast

    frame = records_frame([_record(seed=0), _record(seed=0), _record("atac", seed=0)])
    with pytest.raises(ValueError, match="several runs"):
        contrast(frame, {"atac": 1, "deviation": -1})


def test_atac_compare_with_its_sweep_says_how_much_is_recorded(tmp_path, capsys):
    sweep = tmp_path / "study.yaml"
    sweep.write_text("name: study\nresults: r.jsonl\nbase:\n  preset: cpu\n  backbone: mobilenet_v2\n"
                     "grid:\n  - dataset: mvtec_ad\n    category: [grid, metal_nut]\n"
                     "    method: [deviation, atac]\n    seed: [0, 1]\n")
    recs = [_record("deviation", "grid", s, 0.8) for s in range(2)] + [_record("atac", "grid", s, 0.7) for s in range(2)]
    path = tmp_path / "r.jsonl"
    write_records(path, recs)
    assert main(["compare", "--results", str(path), "--baseline", "deviation", "--sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "Sweep study (" in out and "4 of its 8 runs are in these results, so this comparison is interim" in out
    assert "- mvtec_ad / grid: 4 of 4 runs" in out and "- mvtec_ad / metal_nut: 0 of 4 runs" in out
    write_records(path, recs + [_record(m, "metal_nut", s, 0.8) for m in ("deviation", "atac") for s in range(2)])
    assert main(["compare", "--results", str(path), "--baseline", "deviation", "--sweep", str(sweep)]) == 0
    assert "all 8 of its runs are in these results" in capsys.readouterr().out


def test_the_zoom_study_comparisons_carry_the_t_check():
    from atac import study

    frame = _study({"grid": [0.006, -0.025, -0.099], "metal_nut": [-0.01, -0.02, -0.03]})
    table = study.comparisons(frame)
    assert len(table) == len(study.COMPARISONS)
    ba = table[table["comparison"].str.startswith("B − A")].iloc[0]
    assert ba["n"] == 6 and ba["mean"] == pytest.approx(-0.178 / 6)
    assert (ba["t_low"], ba["t_high"]) == pytest.approx(t_interval([np.array([0.006, -0.025, -0.099]),
                                                                    np.array([-0.01, -0.02, -0.03])]))
    shown = study.format_comparisons(table)
    row = shown[shown["comparison"].str.startswith("B − A")].iloc[0]
    assert row["positive"] == "1/6" and row["difference"].startswith("-0.030 [")
    assert row["t check"] == f"[{ba['t_low']:+.3f}, {ba['t_high']:+.3f}] {ba['t_verdict']}"
    empty = shown[shown["comparison"].str.startswith("C − B")].iloc[0]       # no run of C yet
    assert (empty["difference"], empty["positive"], empty["t check"]) == ("—", "0/0", "too few pairs")
