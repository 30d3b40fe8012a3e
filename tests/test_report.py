"""The report's sentences are computed from results.json's numbers."""

import json
from pathlib import Path

import pytest

from fewlabels.cli import main
from fewlabels.report import which_arm
from fewlabels.stats import paired_differences, summarize

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _results(accuracies: dict[str, list[float]], seconds: dict[str, float]) -> dict:
    runs = [{"dataset": "mnist", "arm": arm, "labels": 600, "seed": seed,
             "test_accuracy": acc, "train_seconds": seconds[arm]}
            for arm, accs in accuracies.items() for seed, acc in enumerate(accs)]
    return {"runs": runs, "summary": summarize(runs), "paired": paired_differences(runs),
            "pretrain_seconds": {"mnist": 500.0}}


def test_which_arm_names_the_best_and_a_cheaper_one_the_interval_cannot_separate():
    results = _results({"semisupervised": [0.992, 0.990, 0.991],
                        "probe": [0.991, 0.991, 0.989],  # paired: −0.1, +0.1, −0.2 points
                        "supervised": [0.960, 0.962, 0.961]},
                       {"semisupervised": 220.0, "probe": 1.0, "supervised": 60.0})
    line = which_arm(results)
    assert line.startswith("**Which arm should I use?** mnist at 600 labels: `semisupervised` "
                           "(0.9910; 220 s a draw after 500 s of pretraining, once)")
    assert "not told apart from it by the paired interval: `probe` (0.9903; 1 s a draw" in line


def test_which_arm_says_when_every_cheaper_arm_is_clearly_below():
    results = _results({"semisupervised": [0.992, 0.990, 0.991],
                        "supervised": [0.960, 0.962, 0.961]},
                       {"semisupervised": 220.0, "supervised": 60.0})
    assert which_arm(results).endswith("no cheaper arm comes within its paired 95% interval.")
    assert which_arm(_results({}, {})) is None


@pytest.mark.parametrize("value", ["0.99", None, 1.5, True, float("nan")])
def test_a_results_file_with_a_bad_accuracy_is_refused_with_one_line(tmp_path, capsys, value):
    results = json.loads((RESULTS / "compare-mnist-100.json").read_text())
    results["runs"][0]["test_accuracy"] = value
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be a number in [0, 1]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("value", [-3.0, "12", None, float("inf")])
def test_a_results_file_with_bad_seconds_is_refused_with_one_line(tmp_path, capsys, value):
    results = json.loads((RESULTS / "compare-mnist-100.json").read_text())
    results["runs"][1]["train_seconds"] = value
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "run 1" in err and "train_seconds" in err and "0 or more" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "report.md").exists()
