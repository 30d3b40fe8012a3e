"""What a comparison measured, in the form every consumer reads (results.json): one ``Run`` per
dataset × arm × label budget × seed, then ``results.json`` assembled from them with the
summary statistics, the environment and the resolved config."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from . import stats
from .arms import ARMS, order
from .errors import UsageError, is_finite_number, parse_json

RUNS_FILE = "runs.jsonl"


@dataclass
class Run:
    """One dataset × arm × label budget × seed and what it measured."""

    dataset: str
    arm: str
    method: str | None
    labels: int
    seed: int
    test_accuracy: float
    per_class: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    train_seconds: float
    chosen: dict
    pretrain_seed: int | None = None  # the pretraining run its encoder came from, if any
    # the CPU threads it trained on (a run is reproducible at its own count; None: a run
    # kept by a version that did not record them)
    threads: int | None = None
    # with ``shifts``: the same network's plain prediction's test accuracy, beside the
    # averaged one (None: a pixel arm, ``shifts=0``, or a version that did not record it)
    plain_accuracy: float | None = None
    history: list | None = None  # goes to metrics.jsonl, not results.json

    def record(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "history"}

    def key(self) -> tuple:
        return run_key(self.dataset, self.arm, self.labels, self.seed, self.pretrain_seed)


AGAIN = "the file was changed by hand; run the comparison again"


def check_runs(results: dict, where: str) -> None:
    """The runs of a results.json as a report reads them (``check_run``); UsageError naming
    the first run and field that is not."""
    runs = results.get("runs") if isinstance(results, dict) else None
    if not isinstance(runs, list) or not runs:
        raise UsageError(f"{where} holds no runs: pass a run folder written by `fewlabels "
                         "compare`")
    for i, run in enumerate(runs):
        check_run(run, f"{where}: run {i}", AGAIN)


def check_run(run, where: str, fix: str) -> None:
    """A run as a report reads it: a dict whose accuracy is a number in [0, 1], whose labels
    and seeds are whole numbers and whose seconds are 0 or more; else a UsageError that
    names ``where``, the field and ``fix``."""
    if not isinstance(run, dict):
        raise UsageError(f"{where} is {type(run).__name__}, not an object: {fix}")
    for key in ("test_accuracy", "plain_accuracy"):
        value = run.get(key)
        if (key == "test_accuracy" or value is not None) and not (
                is_finite_number(value) and 0 <= value <= 1):
            raise UsageError(f"{where} ({run.get('arm')!r}, seed {run.get('seed')!r}) has "
                             f"{key} {value!r}; it must be a number in [0, 1]: {fix}")
    for key in ("labels", "seed"):
        if not _whole(run.get(key)):
            raise UsageError(f"{where} has {key} {run.get(key)!r}; it must be a whole number: "
                             f"{fix}")
    threads = run.get("threads")
    if threads is not None and not (_whole(threads) and threads >= 1):
        raise UsageError(f"{where} has threads {threads!r}; it must be a whole number, 1 or "
                         f"more: {fix}")
    value = run.get("train_seconds")  # a missing key: the report's own message
    if "train_seconds" in run and (not is_finite_number(value) or value < 0):
        raise UsageError(f"{where} ({run.get('arm')!r}, seed {run.get('seed')!r}) has "
                         f"train_seconds {value!r}; it must be a number of seconds, 0 or more: "
                         f"{fix}")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mixed_threads(runs: list[Run]) -> str | None:
    """One line when ``runs`` trained at different thread counts (a comparison resumed
    under another ``--threads`` or ``--workers``), else None: each run is reproducible at
    its own count, the comparison as a whole at none."""
    counts = Counter(r.threads for r in runs if r.threads is not None)
    if len(counts) < 2:
        return None
    said = ", ".join(f"{n} at {t} thread{'s' if t > 1 else ''}" for t, n in sorted(counts.items()))
    return (f"note: these runs trained at different thread counts ({said}; a comparison "
            "resumed under another --threads or --workers): each run is reproducible at its "
            "own count, recorded as its `threads` in results.json; run the comparison in "
            "one go for numbers reproducible as a whole")


def run_key(dataset: str, arm: str, labels: int, seed: int, pretrain_seed: int | None) -> tuple:
    """What identifies a run in a comparison (``arm`` is the run's name: ``probe-tuned``)."""
    return (dataset, arm, int(labels), int(seed), pretrain_seed)


class RunLog:
    """``runs.jsonl`` in a run folder: every finished run, appended and fsynced the moment
    it ends, so an interruption loses only the run in progress. Opening it keeps the runs
    already there, from every worker's file too (``runs-<i>-of-<n>.jsonl``, see
    ``parallel``); a last line torn by a kill is dropped, and one's own file rewritten
    without it. Any other line that is not a run as this version writes it (changed by hand)
    is a UsageError naming the file and line, before anything is written.
    """

    def __init__(self, folder: Path, shard: tuple[int, int] | None = None):
        from .checkpoint import atomic_write_text

        folder = Path(folder)
        self.path = folder / (RUNS_FILE if shard is None
                              else f"runs-{shard[0]}-of-{shard[1]}.jsonl")
        self.done: dict[tuple, Run] = {}
        names = {f.name for f in fields(Run)}
        fix = ("the file was changed by hand: remove that line (its run is trained again) or "
               "choose another --out")
        for path in sorted(folder.glob("runs*.jsonl")):
            good = []
            text = path.read_text()
            lines = text.splitlines()
            for number, line in enumerate(lines, 1):
                try:
                    record = parse_json(line)
                except ValueError:
                    if number == len(lines) and not text.endswith("\n"):
                        continue  # the last line, torn by a kill mid-write
                    record = None
                check_run(record, f"{path} line {number}", fix)
                try:
                    run = Run(**{k: v for k, v in record.items() if k in names})
                except TypeError as e:
                    raise UsageError(f"{path} line {number} is not a run ({e}): {fix}") from None
                self.done[run.key()] = run
                good.append(line)
            if path == self.path:
                atomic_write_text(path, "".join(f"{line}\n" for line in good))

    def get(self, key: tuple) -> Run | None:
        return self.done.get(key)

    def add(self, run: Run) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(run.record()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[run.key()] = run


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def tsne_map(f: np.ndarray, labels: torch.Tensor) -> dict:
    """A 2-D t-SNE map (van der Maaten & Hinton, 2008) of features ``f`` (N, D) of test
    images, for the report's picture only (nothing is chosen on it)."""
    from sklearn.manifold import TSNE

    xy = TSNE(2, init="pca", perplexity=min(30.0, (len(f) - 1) / 3), random_state=0
              ).fit_transform(f)
    return {"x": np.round(xy[:, 0], 3).tolist(), "y": np.round(xy[:, 1], 3).tolist(),
            "labels": labels.tolist()}


def assemble(cfg, runs: list[Run], **parts) -> dict:
    """results.json's content: the config's grid, every run, their summary and paired
    differences (every-label arms left out: they saw no label draw), and ``parts``
    (timings, environment, data, feature maps)."""
    from .config import to_dict

    records = [r.record() for r in runs]
    once = {name for name, arm in ARMS.items() if arm.every_label}
    return {
        "preset": cfg.preset, "quick": cfg.quick, "datasets": list(cfg.datasets),
        "labels": list(cfg.labels), "seeds": list(cfg.seeds), "arms": list(cfg.arms),
        "pretrain_seeds": cfg.pretraining_seeds(),
        "runs": records,
        "summary": stats.summarize(records),
        "paired": stats.paired_differences([r for r in records if r["arm"] not in once],
                                           first=order()),
        "pretrain_method": cfg.pretrain.name(), "tune": cfg.tune,
        **parts,
        "config": to_dict(cfg),
    }
