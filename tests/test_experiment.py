"""The protocol loop: pretraining runs × label draws × arms, and what it writes."""

import dataclasses

from fewlabels.config import load_preset
from fewlabels.experiment import compare
from fewlabels.pretrain import load_encoder


def test_every_label_draw_is_evaluated_on_every_pretraining_run(mnist, tmp_path):
    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    cfg = load_preset("default", {
        "device": "cpu", "precision": "fp32", "labels": ["50"], "seeds": [0, 1],
        "pretrain_seeds": [3, 4], "arms": ["probe", "pixels-logreg"], "feature_map": 0,
        "pretrain": {"epochs": 1, "batch": 400, "encoder_options": {"width": 4},
                     "refine_rounds": 1, "refine_epochs": 1, "self_label_epochs": 0},
        "probe": {"epochs": 5}})
    results = compare(cfg, tmp_path / "run", datasets={"mnist": small}, log=lambda _: None)
    probe = [(r["seed"], r["pretrain_seed"]) for r in results["runs"] if r["arm"] == "probe"]
    assert sorted(probe) == [(0, 3), (0, 4), (1, 3), (1, 4)]
    assert all(r["pretrain_seed"] is None for r in results["runs"] if r["arm"] != "probe")
    for seed in (3, 4):  # one encoder per pretraining run, each from its own seed
        _, meta = load_encoder(tmp_path / "run" / f"mnist-p{seed}.encoder")
        assert meta["pretrain"]["seed"] == seed
    summary = {s["arm"]: s for s in results["summary"]}
    assert summary["probe"]["n"] == 4 and summary["probe"]["pretrain_seeds"] == [3, 4]
    assert len(summary["probe"]["by_pretrain_seed"]) == 2
    (paired,) = results["paired"]
    assert paired["pretrain_seeds"] == [3, 4, 3, 4] and paired["seeds"] == [0, 0, 1, 1]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ran on 2 pretraining runs (seeds 3, 4)" in report and "1/p4: " in report
