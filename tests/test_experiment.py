"""The protocol loop: pretraining runs × label draws × arms, and what it writes."""

import dataclasses

import pytest
import torch

from fewlabels.config import load_preset
from fewlabels.experiment import compare
from fewlabels.pretrain import load_encoder


def test_every_label_draw_is_evaluated_on_every_pretraining_run(mnist, tmp_path):
    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    cfg = load_preset("default", {
        "device": "cpu", "precision": "fp32", "labels": ["50"], "seeds": [0, 1],
        "pretrain_seeds": [3, 4], "arms": ["probe", "pixels-logreg"], "feature_map": 0,
        "shifts": 1, "pretrain": {"epochs": 1, "batch": 400, "encoder_options": {"width": 4},
                     "refine_rounds": 1, "refine_epochs": 1, "self_label_epochs": 0},
        "probe": {"epochs": 5}})
    results = compare(cfg, tmp_path / "run", datasets={"mnist": small}, log=lambda _: None)
    probe = [(r["seed"], r["pretrain_seed"]) for r in results["runs"] if r["arm"] == "probe"]
    assert sorted(probe) == [(0, 3), (0, 4), (1, 3), (1, 4)]
    assert all(r["pretrain_seed"] is None for r in results["runs"] if r["arm"] != "probe")
    # a network's prediction averaged over shifted copies (``shifts``) is recorded with the
    # same network's plain accuracy beside it; a pixel arm has none
    for r in results["runs"]:
        plain = r["plain_accuracy"]
        assert (plain is None) == (r["arm"] == "pixels-logreg")
        assert plain is None or 0 <= plain <= 1
    assert any(r["plain_accuracy"] != r["test_accuracy"] for r in results["runs"]
               if r["arm"] == "probe")  # a different prediction, not a copy
    for seed in (3, 4):  # one encoder per pretraining run, each from its own seed
        _, meta = load_encoder(tmp_path / "run" / f"mnist-p{seed}.encoder")
        assert meta["pretrain"]["seed"] == seed
    summary = {s["arm"]: s for s in results["summary"]}
    # the unit is the label draw: two draws, each probe's mean over its pretraining runs
    assert summary["probe"]["n"] == 2 and summary["probe"]["pretrain_seeds"] == [3, 4]
    assert len(summary["probe"]["by_pretrain_seed"]) == 2
    (paired,) = results["paired"]
    acc = {(r["arm"], r["seed"], r["pretrain_seed"]): r["test_accuracy"]
           for r in results["runs"]}
    by_hand = [(acc["probe", s, 3] + acc["probe", s, 4]) / 2 - acc["pixels-logreg", s, None]
               for s in (0, 1)]
    mean, half = sum(by_hand) / 2, 12.706204736174707 * abs(by_hand[0] - by_hand[1]) / 2
    # (std of two values: |a − b| / √2; t(0.975, 1) · std / √2)
    assert paired["seeds"] == [0, 1] and paired["n"] == 2
    assert paired["differences"] == pytest.approx(by_hand)
    assert paired["ci95"] == pytest.approx([mean - half, mean + half])
    assert paired["pretrain_seeds"] == [3, 4] and len(paired["per_pretraining_run"]) == 4
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ran on 2 pretraining runs (seeds 3, 4)" in report and "1/p4: " in report


def _small_config(**changes):
    return load_preset("default", {
        "device": "cpu", "precision": "fp32", "labels": ["50"], "seeds": [0, 1],
        "arms": ["probe", "supervised", "pixels-logreg"], "feature_map": 0,
        "pretrain": {"epochs": 1, "batch": 400, "encoder_options": {"width": 4},
                     "refine_rounds": 1, "refine_epochs": 1, "self_label_epochs": 0},
        "probe": {"epochs": 5}, "supervised": {"epochs": 3, "lrs": [3e-3]}, **changes})


def _without_timings(results: dict) -> dict:
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "seconds" not in k}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip({k: results[k] for k in ("runs", "summary", "paired")})


def test_an_interrupted_comparison_resumes_where_it_stopped(mnist, tmp_path, monkeypatch):
    import pytest

    from fewlabels import experiment
    from fewlabels.errors import UsageError
    from fewlabels.results import RunLog

    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    full = compare(_small_config(), tmp_path / "full", datasets={"mnist": small},
                   log=lambda _: None)

    finished_lines = []

    def interrupt_on_the_fourth_run(line):
        if "test accuracy" in line:
            finished_lines.append(line)
            if len(finished_lines) == 4:
                raise KeyboardInterrupt  # as SIGINT would, mid-comparison

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        compare(_small_config(), cut, datasets={"mnist": small}, log=interrupt_on_the_fourth_run)
    assert not (cut / "results.json").exists() and (cut / "mnist.encoder").exists()
    assert len(RunLog(cut).done) == 4  # a run's line is printed once the run is kept
    with (cut / "runs.jsonl").open("a") as fh:
        fh.write('{"dataset": "mnist", "arm": "pro')  # a line torn by a kill

    with pytest.raises(UsageError, match=r"another config \(seeds: \[0, 1\] → \[0\]\)"):
        compare(_small_config(seeds=[0]), cut, datasets={"mnist": small}, log=lambda _: None)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the interrupted run's encoder should have been reused")

    monkeypatch.setattr(experiment, "pretrain", no_pretraining)
    lines = []
    resumed = compare(_small_config(), cut, datasets={"mnist": small}, log=lines.append)
    assert "resuming" in lines[0] and "4 finished runs kept" in lines[0]
    assert sum("test accuracy" in line for line in lines) == len(full["runs"]) - 4
    assert _without_timings(resumed) == _without_timings(full)
    # every run says the threads it trained on; one count throughout: no note
    assert {r["threads"] for r in resumed["runs"]} == {torch.get_num_threads()}
    assert not any(line.startswith("note: these runs") for line in lines)
    with pytest.raises(UsageError, match="already holds a finished run"):
        compare(_small_config(), cut, datasets={"mnist": small}, log=lambda _: None)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        compare(_small_config(), tmp_path / "afile", datasets={"mnist": small},
                log=lambda _: None)


def test_a_run_folder_of_another_fewlabels_version_is_named_as_such_not_as_options(tmp_path):
    import json

    from fewlabels.config import to_dict
    from fewlabels.errors import UsageError
    from fewlabels.experiment import _check_resumable

    cfg = _small_config()
    old = to_dict(cfg)
    del old["semisupervised"]["settled_loss"]  # a setting its version did not have yet
    for changed in (old, {**to_dict(cfg), "retired_setting": 1}):  # older, then newer
        (tmp_path / "config.json").write_text(json.dumps(changed))
        with pytest.raises(UsageError, match=r"another fewlabels version .*only one of the two"
                                             r".*(settled_loss|retired_setting).*finish it "
                                             r"with the version that started it"):
            _check_resumable(tmp_path, cfg)
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    _check_resumable(tmp_path, cfg)  # the same config resumes


def test_typical_labels_are_chosen_in_the_runs_embedding_without_reading_a_label(mnist,
                                                                                tmp_path):
    import json

    import torch

    from fewlabels.classifiers import features
    from fewlabels.runtime import resolve
    from fewlabels.selection import select

    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    g = torch.Generator().manual_seed(0)
    shuffled = dataclasses.replace(  # the same images under other labels
        small, train_labels=small.train_labels[torch.randperm(1200, generator=g)])
    # no arm needs the encoder: the selection alone makes the comparison pretrain
    cfg = _small_config(label_sampling="typical", arms=["pixels-logreg"], labels=["20"])
    chosen = {}
    for name, ds in (("a", small), ("b", shuffled)):
        compare(cfg, tmp_path / name, datasets={"mnist": ds}, log=lambda _: None)
        chosen[name] = [json.loads((tmp_path / name / "labels" / f"mnist-20-seed{s}.json")
                                   .read_text()) for s in (0, 1)]
    assert chosen["a"] == chosen["b"]  # labels shuffled, the same images chosen
    encoder, _ = load_encoder(tmp_path / "a" / "mnist.encoder")
    feats = features(encoder, small.train_images, resolve("cpu", "fp32"))
    assert chosen["a"][1] == select(feats, 20, "typical", 1, classes=10).sort().values.tolist()
    assert chosen["a"][0] != chosen["a"][1]  # each draw's seed is its selection's


def test_several_samplings_are_columns_of_one_comparison_paired_with_the_first(mnist,
                                                                              tmp_path):
    from fewlabels.cli import build_parser, compare_config

    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    cfg = _small_config(label_sampling=["random", "typical", "balanced"],
                        arms=["probe", "pixels-logreg"], labels=["20"])
    results = compare(cfg, tmp_path / "run", datasets={"mnist": small}, log=lambda _: None)
    names = {r["arm"] for r in results["runs"]}
    assert names == {"probe", "pixels-logreg", "probe@typical", "pixels-logreg@typical",
                     "probe@balanced", "pixels-logreg@balanced"}
    pairs = {(d["a"], d["b"]): d for d in results["paired"]}
    acc = {(r["arm"], r["seed"]): r["test_accuracy"] for r in results["runs"]}
    d = pairs["probe@typical", "probe"] if ("probe@typical", "probe") in pairs else None
    d = d or pairs["probe", "probe@typical"]
    sign = 1 if d["a"] == "probe@typical" else -1
    assert d["differences"] == pytest.approx(
        [sign * (acc["probe@typical", s] - acc["probe", s]) for s in (0, 1)])
    files = sorted(p.name for p in (tmp_path / "run" / "labels").iterdir())
    assert files == ["mnist-20-seed0-balanced.json", "mnist-20-seed0-typical.json",
                     "mnist-20-seed0.json", "mnist-20-seed1-balanced.json",
                     "mnist-20-seed1-typical.json", "mnist-20-seed1.json"]
    assert "probe@typical" in (tmp_path / "run" / "report.md").read_text()
    one = compare_config(build_parser().parse_args(["compare", "--label-sampling", "random"]))
    assert one.label_sampling == "random"  # one sampling keeps the config's plain form


class _Planted:
    """A pickle that, when loaded, leaves a file: the proof that it was unpickled."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (open, (self.mark, "w"))


def test_a_resumed_comparison_never_loads_the_shared_results_it_finds(mnist, tmp_path):
    """The shared results of a comparison (``memo``) are pickles: a resumed run folder's —
    an interrupted run's, or a tampered one's — are removed, not loaded."""
    import pickle

    import pytest

    from fewlabels import memo

    small = dataclasses.replace(mnist.subset(train=1200, test=200), name="mnist")
    cfg = _small_config(arms=["pixels-labelspreading"], labels=["50", "100"])

    def interrupt_after_the_first_run(line):
        if "test accuracy" in line:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        compare(cfg, cut, datasets={"mnist": small}, log=interrupt_after_the_first_run)
    kept = list((cut / memo.FOLDER).glob("*.pickle"))
    assert kept, "the first run kept the pool's graph for the others"
    mark = tmp_path / "unpickled"
    for path in kept:
        path.write_bytes(pickle.dumps(_Planted(mark)))
    full = compare(cfg, tmp_path / "full", datasets={"mnist": small}, log=lambda _: None)
    resumed = compare(cfg, cut, datasets={"mnist": small}, log=lambda _: None)
    assert not mark.exists()
    assert _without_timings(resumed) == _without_timings(full)
