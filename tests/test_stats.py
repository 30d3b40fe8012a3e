import math

import pytest
import torch

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


def _crossed_design():
    """supervised once per draw; probe on three pretraining runs of every draw."""
    supervised = {0: 0.95, 1: 0.96, 2: 0.94}
    probe = {0: (0.97, 0.98, 0.96), 1: (0.99, 0.98, 0.97), 2: (0.97, 0.99, 0.98)}
    runs = [_run("supervised", s, acc) for s, acc in supervised.items()]
    runs += [{**_run("probe", s, acc), "pretrain_seed": p}
             for s, accs in probe.items() for p, acc in enumerate(accs)]
    return runs


def test_the_label_draw_is_the_unit_of_a_paired_difference():
    runs = _crossed_design()
    (x,) = paired_differences(runs, first=("probe",))
    # by hand: probe's draw means 0.97, 0.98, 0.98 against 0.95, 0.96, 0.94 →
    # differences 0.02, 0.02, 0.04; mean 0.08 / 3, std sqrt(((−0.02/3)² · 2 + (0.04/3)²) / 2)
    mean = 0.08 / 3
    std = math.sqrt(((0.02 / 3) ** 2 * 2 + (0.04 / 3) ** 2) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, 2): three draws, 2 df
    assert x["seeds"] == [0, 1, 2] and x["n"] == 3
    assert x["differences"] == pytest.approx([0.02, 0.02, 0.04])
    assert x["mean"] == pytest.approx(mean) and x["std"] == pytest.approx(std)
    assert x["ci95"] == pytest.approx([mean - half, mean + half])
    # counting each (draw, pretraining run) as a unit — 9 units, 8 df, supervised reused
    # three times — gives a narrower interval than these three draws support
    every_pair = [d["difference"] for d in x["per_pretraining_run"]]
    assert len(every_pair) == 9
    assert every_pair[:3] == pytest.approx([0.02, 0.03, 0.01])
    naive = describe(every_pair)
    assert naive["ci95"][1] - naive["ci95"][0] < 0.5 * (x["ci95"][1] - x["ci95"][0])
    assert x["pretrain_seeds"] == [0, 1, 2]


def test_an_arm_on_pretraining_runs_is_summarised_over_draws():
    probe = [e for e in summarize(_crossed_design()) if e["arm"] == "probe"][0]
    assert probe["n"] == 3  # three draws, not nine runs
    assert probe["mean"] == pytest.approx((0.97 + 0.98 + 0.98) / 3)
    assert probe["std"] == pytest.approx(describe([0.97, 0.98, 0.98])["std"])
    assert probe["pretrain_seeds"] == [0, 1, 2]
    # the per-pretraining-run description: run 0 on draws 0 1 2 is 0.97, 0.99, 0.97
    assert [b["mean"] for b in probe["by_pretrain_seed"]] == pytest.approx(
        [(0.97 + 0.99 + 0.97) / 3, (0.98 + 0.98 + 0.99) / 3, (0.96 + 0.97 + 0.98) / 3])
    assert all(b["n"] == 3 for b in probe["by_pretrain_seed"])


def test_both_arms_on_pretraining_runs_pair_by_draw_means():
    runs = []
    for p, (a0, a1, b0, b1) in enumerate(((0.97, 0.96, 0.95, 0.95), (0.93, 0.94, 0.91, 0.90))):
        runs += [{**_run("probe", 0, a0), "pretrain_seed": p},
                 {**_run("probe", 1, a1), "pretrain_seed": p},
                 {**_run("finetune", 0, b0), "pretrain_seed": p},
                 {**_run("finetune", 1, b1), "pretrain_seed": p}]
    (x,) = paired_differences(runs, first=("probe",))
    # draw 0: (0.97 + 0.93) / 2 − (0.95 + 0.91) / 2 = 0.02; draw 1: 0.95 − 0.925 = 0.025
    assert x["differences"] == pytest.approx([0.02, 0.025]) and x["n"] == 2
    assert [d["difference"] for d in x["per_pretraining_run"]] == pytest.approx(
        [0.02, 0.02, 0.01, 0.04])


def test_mcnemar_exact_by_hand():
    from fewlabels.stats import mcnemar_p

    a = torch.tensor([True] * 10 + [False] * 2 + [True] * 8)
    b = torch.tensor([False] * 10 + [True] * 2 + [True] * 8)
    # 12 discordant images, 10 for a and 2 for b: p = 2 · (C(12,0)+C(12,1)+C(12,2)) / 2^12
    assert mcnemar_p(a, b) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_p(a, b) == mcnemar_p(b, a)
    assert mcnemar_p(a, a) == 1.0  # no image where they disagree
    # 5 against 5: the largest possible p is capped at 1
    assert mcnemar_p(torch.arange(10) < 5, torch.arange(10) >= 5) == 1.0
