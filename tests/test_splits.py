import pytest

from atac.data.datasets import DatasetIndex, Sample, load_index
from atac.data.splits import SplitError, make_split


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
