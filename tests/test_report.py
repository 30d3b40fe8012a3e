"""The report's sentences are computed from results.json's numbers."""

import json
from pathlib import Path

import pytest

from fewlabels.cli import main
from fewlabels.report import _confusions, _summary_line, which_arm
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


BAD_ACCURACY = [(0, "test_accuracy", v, ["must be a number in [0, 1]"])
                for v in ["0.99", None, 1.5, True, float("nan")]]
BAD_PLAIN = [(2, "plain_accuracy", v, ["run 2", "plain_accuracy", "must be a number in [0, 1]"])
             for v in ["0.99", -0.1, float("nan")]]
BAD_SECONDS = [(1, "train_seconds", v, ["run 1", "train_seconds", "0 or more"])
               for v in [-3.0, "12", None, float("inf")]]


@pytest.mark.parametrize("run, key, value, says", BAD_ACCURACY + BAD_PLAIN + BAD_SECONDS)
def test_a_results_file_with_a_bad_field_is_refused_with_one_line(tmp_path, capsys, run, key,
                                                                  value, says):
    results = json.loads((RESULTS / "compare-mnist-100.json").read_text())
    results["runs"][run][key] = value
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert all(piece in err for piece in says) and len(err.splitlines()) == 1
    assert not (tmp_path / "report.md").exists()


def test_the_summary_says_when_predictions_are_averaged_over_shifted_copies():
    results = {**_results({"probe": [0.99]}, {"probe": 1.0}), "datasets": ["mnist"],
               "labels": [600], "seeds": [0], "wall_seconds": 9.0,
               "pretrain_method": "simclr"}
    assert "averaged" not in _summary_line(results)
    line = _summary_line({**results, "config": {"shifts": 1}})
    assert "softmax averaged over the image and four copies moved 1 pixel (`shifts`)." in line
    line = _summary_line({**results, "config": {"shifts": "auto"}})
    assert ("four copies moved one pixel, on images whose training views shift them a whole "
            "pixel or more (`shifts=auto`).") in line
    results["runs"] = [{**r, "seed": s, "test_accuracy": a, "plain_accuracy": p}
                       for r in results["runs"]
                       for s, (a, p) in enumerate([(0.99, 0.985), (0.98, 0.982), (0.97, 0.96)])]
    line = _summary_line({**results, "config": {"shifts": 1}})
    assert ("(`shifts`); over the same networks' plain prediction it added probe (mnist, 600 "
            "labels) +0.43 points (higher on 2 of 3 runs, lower on 1).") in line


def test_the_confusion_figure_of_every_arm_tuned_and_untuned_wraps():
    arms = ["probe", "supervised", "finetune", "semisupervised", "pixels-logreg",
            "pixels-knn", "pixels-labelspreading"]
    arms += [a + "-tuned" for a in arms]
    runs = [{"dataset": "d", "arm": a, "labels": 60, "seed": 0,
             "confusion": [[3, 1], [0, 4]]} for a in arms]
    fig = _confusions({"runs": runs}, "d", ["a", "b"])
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 14 and len(fig.axes) == 15  # 3 rows of 5, the last cell empty
    assert [ax.get_title() for ax in shown] == [f"{a} (60 labels)" for a in arms]
    width, height = fig.get_size_inches()
    assert width == pytest.approx(3.3 * 5) and height == pytest.approx(3.4 * 3)
