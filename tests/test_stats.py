import math

import pytest

from fewlabels.stats import describe, paired_differences, summarize


def test_describe_by_hand():
    # values 0.90, 0.92, 0.94: mean 0.92, sample std 0.02, t(0.975, 2) = 4.302653
    d = describe([0.90, 0.92, 0.94])
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(0.92)
    assert d["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert d["ci95"] == pytest.approx([0.92 - half, 0.92 + half])


def test_describe_single_value_has_no_interval():
    assert describe([0.5]) == {"n": 1, "mean": 0.5, "std": 0.0, "ci95": None}
    with pytest.raises(ValueError):
        describe([])


def _run(arm, seed, acc, labels=600, dataset="mnist"):
    return {"dataset": dataset, "arm": arm, "labels": labels, "seed": seed, "test_accuracy": acc}


def test_summarize_groups_by_dataset_arm_and_budget():
    runs = [_run("probe", 0, 0.9), _run("probe", 1, 0.8), _run("probe", 0, 0.7, 100),
            _run("probe", 0, 0.6, dataset="fashion-mnist")]
    s = summarize(runs)
    assert [(x["dataset"], x["labels"], x["n"]) for x in s] == [
        ("mnist", 600, 2), ("mnist", 100, 1), ("fashion-mnist", 600, 1)]
    assert s[0]["mean"] == pytest.approx(0.85)
    assert s[0]["std"] == pytest.approx(math.sqrt(0.005))  # ((0.05² + 0.05²) / 1) ** 0.5


def test_paired_differences_by_hand():
    # probe − supervised per seed: +0.02, +0.04, +0.00 → mean 0.02, std 0.02
    runs = [_run("supervised", 0, 0.95), _run("probe", 0, 0.97),
            _run("supervised", 1, 0.94), _run("probe", 1, 0.98),
            _run("supervised", 2, 0.96), _run("probe", 2, 0.96),
            _run("pixels-knn", 3, 0.86)]  # another seed: shares nothing with the others
    d = {(x["a"], x["b"]): x for x in paired_differences(runs)}
    assert set(d) == {("supervised", "probe")}
    x = d[("supervised", "probe")]
    assert x["seeds"] == [0, 1, 2]
    assert x["differences"] == pytest.approx([-0.02, -0.04, 0.0])
    assert x["mean"] == pytest.approx(-0.02) and x["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert x["ci95"] == pytest.approx([-0.02 - half, -0.02 + half])


def test_accuracy_intervals_stay_within_0_and_1():
    s = summarize([_run("probe", 0, 0.99), _run("probe", 1, 0.90)])[0]
    assert s["ci95"][1] == 1.0 and s["ci95"][0] > -1
    assert describe([0.99, 0.90])["ci95"][1] > 1  # unbounded when asked for no bounds


def test_paired_differences_can_put_an_arm_first():
    runs = [_run("supervised", 0, 0.95), _run("probe", 0, 0.97)]
    (x,) = paired_differences(runs, first=("probe",))
    assert (x["a"], x["b"]) == ("probe", "supervised")
    assert x["differences"] == pytest.approx([0.02])


def test_pretraining_runs_are_units_of_their_own():
    # probe on two pretraining runs × two draws; supervised once per draw
    runs = [_run("supervised", 0, 0.95), _run("supervised", 1, 0.94)]
    for p, accs in ((0, (0.97, 0.96)), (1, (0.93, 0.92))):
        for seed, acc in enumerate(accs):
            runs.append({**_run("probe", seed, acc), "pretrain_seed": p})
    (x,) = paired_differences(runs, first=("probe",))
    assert (x["seeds"], x["pretrain_seeds"]) == ([0, 0, 1, 1], [0, 1, 0, 1])
    assert x["differences"] == pytest.approx([0.02, -0.02, 0.02, -0.02])
    probe = [e for e in summarize(runs) if e["arm"] == "probe"][0]
    assert probe["n"] == 4 and probe["pretrain_seeds"] == [0, 1]
    assert [b["mean"] for b in probe["by_pretrain_seed"]] == pytest.approx([0.965, 0.925])
    supervised = [e for e in summarize(runs) if e["arm"] == "supervised"][0]
    assert "pretrain_seeds" not in supervised and supervised["n"] == 2
