import warnings
from pathlib import Path

import numpy as np
import pytest

from atac.data.datasets import DatasetIndex, DataWarning, Sample, load_index
from atac.data.splits import SplitError, make_split
from atac.results import load_records
from conftest import real_root

REPO = Path(__file__).resolve().parent.parent


def _index(per_type=(("a", 6), ("b", 6), ("c", 3)), n_good=5, n_train=7):
    test = [Sample(f"/d/test/good/{i:03d}.png", f"test/good/{i:03d}.png", 0, "good") for i in range(n_good)]
    for t, n in per_type:
        test += [Sample(f"/d/test/{t}/{i:03d}.png", f"test/{t}/{i:03d}.png", 1, t) for i in range(n)]
    train = [Sample(f"/d/train/good/{i:03d}.png", f"train/good/{i:03d}.png", 0, "good") for i in range(n_train)]
    return DatasetIndex("x", "cat", "/d", train, test)


def test_general_split_invariants():
    idx = _index()
    s = make_split(idx, 10, seed=0)
    train = {x.path for x in s.train_normal + s.train_anomalous}
    test = {x.path for x in s.test}
    assert not train & test
    assert len(s.train_anomalous) == 10 and all(x.label == 1 for x in s.train_anomalous)
    assert len(s.test) == 5 + 15 - 10
    assert sum(x.label for x in s.test) == 5


def test_one_shot_is_first_of_ten_shot_draw_and_shares_test_set():
    idx = _index()
    ten, one = make_split(idx, 10, 3), make_split(idx, 1, 3)
    assert one.train_anomalous == ten.train_anomalous[:1]
    assert [x.path for x in one.test] == [x.path for x in ten.test]


def test_split_is_seeded_and_order_independent():
    idx = _index()
    shuffled = DatasetIndex("x", "cat", "/d", idx.train, list(reversed(idx.test)))
    assert make_split(idx, 10, 1).train_anomalous == make_split(shuffled, 10, 1).train_anomalous
    assert make_split(idx, 10, 1).train_anomalous != make_split(idx, 10, 2).train_anomalous


def test_hard_setting_removes_the_known_type():
    s = make_split(_index(), 2, 0, "hard", "a")
    assert {x.defect_type for x in s.train_anomalous} == {"a"}
    assert "a" not in {x.defect_type for x in s.test}
    assert {x.defect_type for x in s.test} == {"good", "b", "c"}


def test_too_few_anomalies_and_unknown_type_are_clear_errors():
    with pytest.raises(SplitError, match="shots=5.*only 3.*'c'"):
        make_split(_index(), 5, 0, "hard", "c")
    with pytest.raises(SplitError, match="shots=20 but x/cat has only 15"):
        make_split(_index(), 20, 0)
    with pytest.raises(SplitError, match="types are: a, b, c"):
        make_split(_index(), 1, 0, "hard", "zz")


def test_one_class_test_set_is_an_error():
    with pytest.raises(SplitError, match="only normal"):
        make_split(_index(per_type=(("a", 10),)), 10, 0)
    with pytest.raises(SplitError, match="only anomalous"):
        make_split(_index(n_good=0), 1, 0)


def test_synthetic_index_reads_mvtec_layout(synth_root):
    idx = load_index("synthetic", "weave", synth_root)
    assert len(idx.train) == 16 and all(s.label == 0 for s in idx.train)
    assert idx.defect_types and all(s.mask_path for s in idx.test if s.label == 1)
    assert sum(1 for s in idx.test if s.label == 0) == 8


def test_a_small_category_shrinks_the_draw_to_the_shots():
    idx = _index(per_type=(("a", 4), ("b", 3)))               # 7 anomalies: fewer than 10 + 1
    with pytest.warns(DataWarning, match=r"x/cat has 7 anomalous test images, fewer than the shared draw "
                                         r"of max\(shots, 10\) \+ 1 = 11 needs: the draw shrinks to the 2 "
                                         r"training anomalies and the other 5 stay in the test set") as rec:
        s = make_split(idx, 2, 0)
    assert len(rec) == 1
    assert len(s.train_anomalous) == 2 and sum(x.label for x in s.test) == 5
    assert s.draw == 2 and s.record()["draw"] == 2
    assert not {x.path for x in s.train_anomalous} & {x.path for x in s.test}
    assert {x.path for x in s.train_anomalous} | {x.path for x in s.test if x.label} == \
        {x.path for x in idx.test if x.label}                 # every other anomaly is tested
    # the same training anomalies as the shared draw's first two (what a larger category would give)
    order = np.random.default_rng(0).permutation(7)
    pool = sorted((x for x in idx.test if x.label), key=lambda x: x.path)
    assert s.train_anomalous == [pool[i] for i in order[:2]]
    with pytest.raises(SplitError, match=r"only normal images \(its 7 anomalies are all training anomalies\)"):
        make_split(idx, 7, 0)


def test_a_category_with_enough_anomalies_keeps_the_shared_draw(synth_root):
    for idx in (_index(), _index(per_type=(("a", 11),)), load_index("synthetic", "weave", synth_root),
                load_index("synthetic", "grid", synth_root)):
        pool = sorted((x for x in idx.test if x.label), key=lambda x: x.path)
        assert len(pool) >= 11
        for shots, seed in ((1, 0), (2, 3), (10, 1)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                s = make_split(idx, shots, seed)
            drawn = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:max(shots, 10)]]
            assert s.train_anomalous == drawn[:shots] and s.draw is None and "draw" not in s.record()
            assert {x.path for x in s.test} == {x.path for x in idx.test} - {x.path for x in drawn}


@pytest.mark.realdata
def test_the_recorded_benchmark_splits_are_unchanged():
    """Every split recorded in paper_runs/results (MVTec AD grid and Magnetic Tile, general and hard
    settings, 1 and 10 shots, seeds 0-2) is drawn again from the real images, file for file."""
    root = real_root()
    splits = {}
    for path in sorted((REPO / "paper_runs" / "results").glob("*.jsonl")):
        if not path.name.endswith(".sessions.jsonl"):
            for r in load_records(path):
                s = r["split"]
                key = (r["dataset"], r["category"], s["setting"], s["known_type"], s["shots"], s["seed"])
                splits.setdefault(key, s)
    assert len(splits) >= 20 and {k[0] for k in splits} == {"mvtec_ad", "magnetic_tile"}
    indexes = {}
    checked = 0
    for (dataset, category, setting, known_type, shots, seed), recorded in splits.items():
        if dataset == "mvtec_ad" and not (root / "mvtec_ad" / category).is_dir():
            continue   # a class this data root lacks (metal_nut outside get_metal_nut.sh's root)
        if (dataset, category) not in indexes:
            indexes[dataset, category] = load_index(dataset, category, root)
        checked += 1
        s = make_split(indexes[dataset, category], shots, seed, setting, known_type).record()
        assert "draw" not in recorded and s == recorded, (dataset, category, setting, known_type, shots, seed)
    assert checked >= 20


@pytest.mark.slow
def test_a_7_anomaly_category_trains_at_2_shots_and_records_the_draw(tmp_path):
    import json

    from atac.config import preset
    from atac.data.synth import make_synthetic
    from atac.run import run

    folder = make_synthetic(tmp_path, ["weave"], image_size=64, n_train=8, n_test_good=4,
                            n_test_per_type=2) / "weave"
    extra = sorted((folder / "test" / "thread").iterdir())[-1]  # 4 types x 2 = 8 anomalies; keep 7
    extra.unlink()
    (folder / "ground_truth" / "thread" / f"{extra.stem}_mask.png").unlink()
    cfg = preset("smoke")
    cfg.data_root, cfg.category, cfg.shots = str(tmp_path), "weave", 2
    with pytest.warns(DataWarning, match="the draw shrinks to the 2 training anomalies"):
        run(cfg, tmp_path / "run", progress=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (m["n_train_anomalous"], m["n_test_anomalous"], m["n_test_normal"]) == (2, 5, 4)
    assert m["split"]["draw"] == 2 and 0.0 <= m["image_auroc"] <= 1.0
