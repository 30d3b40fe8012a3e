"""The benchmarks run and print what they promise (their figures are not judged here:
timings on a shared machine belong in benchmarks/, not in unit tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.usefixtures("mnist")  # the benchmark reads the real MNIST from the cache
def test_throughput_prints_both_paths_their_ratio_and_where_the_time_goes():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "throughput.py"), "--steps", "1",
                          "--rounds", "1", "--batch", "16"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    report = json.loads(out.stdout)
    fast, base = report["optimised"], report["baseline"]
    assert base["precision"] == "fp32" and base["channels_last"] is False
    assert fast["channels_last"] is True and report["batch"] == 16
    for path in (fast, base):
        assert path["images_per_second"] > 0 and path["gflops"] > 0
    assert report["ratio"] == pytest.approx(
        fast["images_per_second"] / base["images_per_second"], rel=1e-2)
    parts = report["parts"]
    assert set(parts) == {"convolutions", "rest"}
    assert sum(p["optimised_share"] for p in parts.values()) == pytest.approx(1, abs=2e-3)
    heaviest = report["heaviest_convolution"]  # the default encoder's 4w → 4w layer at 7×7
    assert heaviest["layer"].startswith("128→128, 3×3, stride 1") and heaviest["images"] == 32
    assert heaviest["ratio"] > 0 and min(heaviest["gflops"].values()) > 0
    assert report["environment"]["cpu_bf16"].keys() == {"amx", "avx512_bf16"}


@pytest.mark.usefixtures("mnist")
def test_images_benchmark_times_the_folder_decode_and_predict(tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / "images.py"), "--train", "700",
                          "--test", "300", "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    report = json.loads(out.stdout)
    assert report == json.loads((tmp_path / "r.json").read_text())
    folder, predict = report["folder"], report["predict"]
    assert folder["images"] == 700 and folder["skipped"] == 0
    assert folder["images_per_second"] > 0 and folder["peak_rss_mib"] > 0
    assert predict["images"] == 300 and predict["images_per_second"] > 0


def contention(*words: str) -> dict:
    """The contention benchmark's report: the supervised arm, one epoch on 2,000 images, the
    settings and competitors whose names hold one of ``words``."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "contention.py"), "--epochs", "1",
                          "--pool", "2000", "--only", *words],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


@pytest.mark.usefixtures("mnist")
def test_contention_benchmark_times_each_setting_alone_and_shared():
    # settings alone ("spin" and "1 thread" name two settings and no competitor: each
    # setting is the same run under another environment, so two stand for the grid) ...
    report = contention("spin", "1 thread")
    spin, one = sorted(report["seconds"], key=len, reverse=True)
    assert spin.endswith("threads, libgomp's default spin (GOMP_SPINCOUNT=300000)")
    assert one == "1 thread"
    assert all(set(seconds) == {"alone"} and seconds["alone"] > 0
               for seconds in report["seconds"].values())
    # ... and fewlabels' default beside a competitor of each way one starts (before the run;
    # after it; after it in another session) and of each kind (busy, torch): the grid's
    # other cells are the same runs under another setting's environment or competitor
    report = contention("fewlabels' default", "two busy", "torch process, started")
    (name, seconds), = report["seconds"].items()
    assert "fewlabels' default" in name
    assert set(seconds) == {"alone", "two busy processes",
                            "one 2-thread torch process, started 3 s after",
                            "one 2-thread torch process, started 3 s after in another session"}
    assert report["ratio_to_alone"][name]["alone"] == 1.0
    assert all(s > 0 for s in seconds.values())


@pytest.mark.usefixtures("mnist")
def test_contention_benchmark_times_a_semisupervised_run_on_a_subset():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "contention.py"), "--arm",
                          "semisupervised", "--passes", "0.5", "--pool", "2000", "--only",
                          "no sharing",
                          "busy process, started 3 s after in another"], capture_output=True,
                         text=True, timeout=600, check=True)
    report = json.loads(out.stdout)
    assert report["arm"] == "semisupervised" and report["passes"] == 0.5
    (name, seconds), = report["seconds"].items()
    assert "no sharing" in name
    assert set(seconds) == {"alone", "one busy process, started 3 s after in another session"}
    assert all(s > 0 for s in seconds.values())
    assert min(r["alone"] for r in report["ratio_to_fastest_alone"].values()) == 1.0


def test_workers_benchmark_times_both_ways_and_checks_the_numbers(tiny_encoder):
    # one process with one thread against the default (a worker more than the CPUs, one
    # thread each); the other two settings are the same runs under other flags
    out = subprocess.run([sys.executable, str(BENCHMARKS / "workers.py"), "--encoder",
                          str(tiny_encoder), "--arms", "probe", "--only", "one process, 1"],
                         capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(out.stdout)
    assert report["runs"] == 3 and report["same_accuracies_as_one_process_1_thread"]
    one, auto = report["wall_seconds"]
    assert one == "one process, 1 thread" and auto.endswith("workers, 1 thread each")
    assert all(s > 0 for s in report["wall_seconds"].values())
    assert list(report["speedup_of_auto"]) == [one]


@pytest.mark.usefixtures("mnist")
def test_stage_profile_times_every_stage_against_the_matmul_peak():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "stages.py"), "--steps", "1",
                          "--quick", "--set", "semisupervised.reduced_side=0.5",
                          "--set", "pretrain.encoder_options.depth=1"],
                         capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(out.stdout)
    # a preset setting reaches the networks timed: at depth 1 an image's forward pass is
    # three convolutions (14x14x32x9 + 14x14x64x32x9 + 7x7x128x64x9 multiply-adds) and
    # the head (128x10), two FLOPs each
    assert report["set"] == ["semisupervised.reduced_side=0.5",
                             "pretrain.encoder_options.depth=1"]
    per_image = 2 * (14 * 14 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 7 * 7 * 128 * 64 * 9 + 1280)
    evaluation = next(r for r in report["stages"] if r["stage"].startswith("evaluation"))
    assert evaluation["gflop"] == pytest.approx(500 * per_image / 1e9, rel=0.01)
    names = [r["stage"] for r in report["stages"]]
    assert any("simclr" in n for n in names) and any("teacher forward" in n for n in names)
    rows = {r["stage"]: r for r in report["stages"]}
    for part in ("teacher forward (eval, no grad)", "student forward + backward"):
        full, half = (rows[f"semisupervised: {part}{at}"] for at in ("", " at 0.5 of the side"))
        assert 0 < half["gflop"] < 0.35 * full["gflop"]  # a quarter of the pixels
    assert report["matmul_peak_gflop_per_s"]["fp32"] > 0
    for row in report["stages"]:
        assert row["seconds"] > 0
        if "gflop" in row and row["gflop"] > 1:  # a network's step: its rate is its FLOPs
            assert row["gflop_per_s"] == pytest.approx(row["gflop"] / row["seconds"], rel=0.01)
    # the pretraining steps and the student's are split by kind of operator, summing to 1,
    # the convolutions among them with a rate of their own
    split = [r for r in report["stages"] if "time_by_operator" in r]
    assert {r["stage"] for r in split} >= {"pretrain simclr step",
                                           "semisupervised: student forward + backward"}
    for row in split:
        assert sum(row["time_by_operator"].values()) == pytest.approx(1, abs=0.01)
        assert row["time_by_operator"]["convolution"] > 0 and row["convolution_gflop_per_s"] > 0


def test_stage_profile_counts_each_stage_of_the_default_comparison():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from stages import SEMI_PARTS, per_comparison
    finally:
        sys.path.remove(str(BENCHMARKS))
    from fewlabels.config import load_preset

    counts = per_comparison(load_preset("default"), pool=60_000, labels=600, draws=3)
    per_epoch = 235  # ceil(60,000 / 256)
    assert counts["pretrain simclr step"] == 4 * per_epoch
    assert counts["pretrain refine step"] == 3 * 2 * per_epoch  # three rounds of two epochs
    assert counts["pretrain self-label step"] == 0  # off in the default recipe
    assert counts["pretrain neighbour mining: kNN of the pool"] == 3
    assert all(counts[p] == 3 * 12 * (60_000 // 224) for p in SEMI_PARTS)  # 12 passes
    # each of supervised and finetune, a draw: one rate on all 600 labels (10 batches of 64
    # an epoch, 100 epochs)
    assert counts["supervised / finetune step"] == 2 * 3 * 100 * 10
    # given two rates, each is first trained on 480 labels (8 batches an epoch)
    cfg = load_preset("default")
    cfg.supervised.lrs = [1e-3, 3e-3]
    twice = per_comparison(cfg, pool=60_000, labels=600, draws=3)["supervised / finetune step"]
    assert twice == 3 * (2 * 100 * 8 + 100 * 10) + 3 * 100 * 10


@pytest.mark.usefixtures("mnist")
def test_stage_encoders_are_kept_one_a_stage(tmp_path):
    sets = ["pretrain.epochs=0.005", "pretrain.refine_epochs=0", "pretrain.self_label_epochs=0",
            "pretrain.encoder_options.width=4"]
    subprocess.run([sys.executable, str(BENCHMARKS / "pretrain_stages.py"), "--out",
                    str(tmp_path), *[a for s in sets for a in ("--set", s)]],
                   check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    rows = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["simclr"] and rows[0]["seconds"] > 0
    from fewlabels.pretrain import load_encoder

    _, meta = load_encoder(tmp_path / rows[0]["encoder"])
    assert meta["pretrain"]["encoder_options"] == {"width": 4}


@pytest.mark.usefixtures("mnist")
def test_selection_benchmark_scores_each_strategy_and_pairs_it_with_random(tmp_path,
                                                                           tiny_encoder):
    out = tmp_path / "selection.json"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "selection.py"), "--encoder",
                          str(tiny_encoder), "--pool", "2000", "--budgets", "20", "--seeds", "0",
                          "1", "--strategies", "random", "typical", "balanced", "--out", str(out)],
                         check=True, capture_output=True, text=True, timeout=600,
                         env={**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
                              "FEWLABELS_THREADS": "1"})
    result = json.loads(out.read_text())
    # the benchmarks take their threads as the CLI does, not torch's default of every core
    assert result["threads"] == 1
    assert {(r["arm"], r["seed"]) for r in result["runs"]} == {
        (a, s) for a in ("random", "typical", "balanced") for s in (0, 1)}
    assert all(r["classes_hit"] == 10 for r in result["runs"] if r["arm"] == "balanced")
    pairs = {d["a"]: d for d in result["paired_against_random"]}
    assert set(pairs) == {"typical", "balanced"} and all(d["n"] == 2 for d in pairs.values())
    # each row says on stderr when it starts (a slow arm's row runs for minutes)
    assert "row 1 of 6: random, 20 labels, draw 0, probe" in run.stderr
    assert "row 6 of 6: balanced, 20 labels, draw 1, probe" in run.stderr

    # rows printed by processes side by side (here: one log a strategy, in another order)
    # merge into the same result
    rows = [line for line in run.stdout.splitlines() if line.startswith("{")]
    logs = []
    for strategy in ("balanced", "typical", "random"):
        logs.append(tmp_path / f"{strategy}.log")
        logs[-1].write_text("progress line\n" + "\n".join(
            r for r in rows if json.loads(r)["arm"] == strategy))
    merged_out = tmp_path / "merged.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "selection.py"), "--merge", *map(str, logs),
                    "--out", str(merged_out), "--note", "three logs"], check=True,
                   capture_output=True, text=True, timeout=120)
    merged = json.loads(merged_out.read_text())
    assert merged["note"] == "three logs" and merged["threads"] == 1
    assert merged["paired_against_random"] == result["paired_against_random"]
    assert merged["summary"] == result["summary"]
    # --seeds picks the draws kept
    subprocess.run([sys.executable, str(BENCHMARKS / "selection.py"), "--merge", *map(str, logs),
                    "--seeds", "1", "--out", str(merged_out)], check=True, capture_output=True,
                   text=True, timeout=120)
    assert {r["seed"] for r in json.loads(merged_out.read_text())["runs"]} == {1}
    refused = subprocess.run([sys.executable, str(BENCHMARKS / "selection.py"), "--merge",
                              str(tmp_path / "merged.json")], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "no rows" in refused.stderr


@pytest.mark.usefixtures("mnist")
def test_suggest_benchmark_times_each_strategy_on_a_folder(tiny_encoder):
    r = subprocess.run([sys.executable, str(BENCHMARKS / "suggest_folder.py"), "--encoder",
                        str(tiny_encoder), "--train", "2000", "--budget", "10", "--strategies",
                        "typical", "random"], check=True, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(r.stdout)
    assert [x["strategy"] for x in result["runs"]] == ["typical", "random"]
    assert all(x["images"] == 2000 and x["seconds"] > 0 and 1 <= x["classes_in_suggestion"] <= 10
               for x in result["runs"])
