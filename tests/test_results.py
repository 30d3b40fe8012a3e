"""runs.jsonl read back on resuming: a torn last line is dropped, a changed one refused."""

import json

import pytest

from fewlabels.errors import UsageError
from fewlabels.results import Run, RunLog, mixed_threads


def _log(tmp_path, runs):
    log = RunLog(tmp_path)
    for seed, accuracy in runs:
        log.add(Run("mnist", "probe", "simclr", 100, seed, accuracy, [accuracy], [[1]], 1.0,
                    {}))
    return tmp_path / "runs.jsonl"


def test_a_last_line_torn_by_a_kill_is_dropped_and_the_file_rewritten(tmp_path):
    path = _log(tmp_path, [(0, 0.9), (1, 0.8)])
    with path.open("a") as fh:
        fh.write('{"dataset": "mnist", "arm": "pro')
    assert sorted(key[3] for key in RunLog(tmp_path).done) == [0, 1]
    assert len(path.read_text().splitlines()) == 2 and path.read_text().endswith("\n")


@pytest.mark.parametrize("change, words", [
    (lambda r: {**r, "test_accuracy": float("nan")}, "test_accuracy nan; it must be a number"),
    (lambda r: {**r, "test_accuracy": "high"}, "test_accuracy 'high'"),
    (lambda r: {**r, "test_accuracy": 5.0}, "test_accuracy 5.0"),
    (lambda r: {**r, "seed": "0"}, "seed '0'; it must be a whole number"),
    (lambda r: {**r, "train_seconds": -1}, "train_seconds -1"),
    (lambda r: {**r, "threads": 0}, "threads 0; it must be a whole number, 1 or more"),
    (lambda r: [r], "is list, not an object"),
    (lambda r: {k: v for k, v in r.items() if k != "confusion"}, "is not a run"),
])
def test_a_run_changed_by_hand_is_refused_naming_its_line_and_nothing_is_written(
        tmp_path, change, words):
    """A resumed comparison used to take a changed accuracy into its statistics and fail
    in them (NaN, a string) or in the plot (5.0): now one line names the file and the line."""
    path = _log(tmp_path, [(0, 0.9), (1, 0.8)])
    lines = path.read_text().splitlines()
    lines[0] = json.dumps(change(json.loads(lines[0])))
    before = "\n".join(lines) + "\n"
    path.write_text(before)
    with pytest.raises(UsageError, match=f"runs.jsonl line 1 .*{words}.*remove that line"):
        RunLog(tmp_path)
    assert path.read_text() == before


def test_runs_at_different_thread_counts_are_named_in_one_note(tmp_path):
    """A comparison resumed under another --threads or --workers used to mix its runs
    without a word: each run now records its threads, and a mix is said."""
    def run(seed, threads):
        return Run("mnist", "probe", "simclr", 100, seed, 0.9, [0.9], [[1]], 1.0, {},
                   threads=threads)

    assert mixed_threads([run(0, 2), run(1, 2), run(2, None)]) is None  # None: not recorded
    note = mixed_threads([run(0, 2), run(1, 1), run(2, 1)])
    assert note.startswith("note: these runs trained at different thread counts (2 at 1 "
                           "thread, 1 at 2 threads;")
    log = RunLog(tmp_path)
    log.add(run(0, 2))
    assert RunLog(tmp_path).get(run(0, 2).key()).threads == 2  # kept across a resume
