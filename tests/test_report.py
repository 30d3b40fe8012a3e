"""The report's sentences are computed from results.json's numbers."""

from fewlabels.report import which_arm
from fewlabels.stats import paired_differences, summarize


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
