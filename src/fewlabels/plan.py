"""The run list: every run a comparison makes, as plain data, built and written to the run
folder (``plan.json``) before anything runs. Execution walks it in order; resume is a
lookup of each run's key in ``runs.jsonl``; parallel workers claim its runs one at a time,
the longest first (``longest_first``, ``parallel.claim``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .arms import ARMS, SAMPLED, TUNED
from .results import run_key


@dataclass(frozen=True)
class PlannedRun:
    """One run: an arm on one labeled draw of a dataset (and one pretraining run)."""

    dataset: str
    arm: str  # a registered arm
    labels: int  # labeled images (every training image for an every-label arm)
    seed: int  # the label draw's seed
    pretrain_seed: int | None = None  # the pretraining run, for an arm that needs one
    tuned: bool = False  # tuned on its labels first (the run is then ``<arm>-tuned``)
    sampling: str = ""  # the draw's label sampling when not the comparison's first

    @property
    def name(self) -> str:
        return (self.arm + (TUNED if self.tuned else "")
                + (SAMPLED + self.sampling if self.sampling else ""))

    @property
    def every_label(self) -> bool:
        return ARMS[self.arm].every_label

    def key(self) -> tuple:
        return run_key(self.dataset, self.name, self.labels, self.seed, self.pretrain_seed)


def plan_runs(datasets: list[str], budgets: dict[str, list[int]],
              train_sizes: dict[str, int], seeds: list[int], arms: list[str],
              pretrain_seeds: list[int], tune: bool,
              samplings: tuple[str, ...] = ("",)) -> list[PlannedRun]:
    """Every run, in the order they run: per dataset, per budget and draw, each arm (one
    run per pretraining run for an arm that needs the encoder), then each tunable arm
    tuned, then the same on each further label sampling (``samplings[1:]``: its runs are
    named ``<arm>@<sampling>``); last, each every-label arm once per dataset (on the first
    draw's seed)."""
    runs: list[PlannedRun] = []

    def add(dataset: str, arm: str, count: int, seed: int, tuned: bool = False,
            sampling: str = "") -> None:
        for p in pretrain_seeds if ARMS[arm].pretrained else [None]:
            runs.append(PlannedRun(dataset, arm, count, seed, p, tuned, sampling))

    drawn = [a for a in arms if not ARMS[a].every_label]
    tunable = [a for a in drawn if ARMS[a].space is not None] if tune else []
    for name in datasets:
        for count in budgets[name]:
            for seed in seeds:
                for i, sampling in enumerate(samplings):
                    extra = sampling if i > 0 else ""
                    for arm in drawn:
                        add(name, arm, count, seed, sampling=extra)
                    for arm in tunable:
                        add(name, arm, count, seed, tuned=True, sampling=extra)
        for arm in arms:
            if ARMS[arm].every_label:
                add(name, arm, train_sizes[name], seeds[0])
    return runs


# the arms that take longest, longest first (the others after them, in plan order): the
# order in which workers claim runs, so that no worker is left with a long run at the end
# while the others idle. Only the order: each run's result is the same whoever runs it.
LONGEST_FIRST = ("ceiling", "semisupervised", "supervised", "finetune",
                 "pixels-labelspreading")


def longest_first(runs: list[PlannedRun]) -> list[PlannedRun]:
    """``runs`` in the order workers claim them: tuned runs (each N trainings) first, then
    by ``LONGEST_FIRST``; ties keep the plan's order. One exception: a dataset's first
    label-spreading run comes right after the semi-supervised runs. It builds the graph
    over the pool that the dataset's other label-spreading runs read (``memo``); claimed
    together, two of three workers waited on it with their cores idle (about 12 s a
    dataset), while this way the graph is built as the others train."""
    rank = {arm: i for i, arm in enumerate(LONGEST_FIRST)}
    builders: dict[str, PlannedRun] = {}  # each dataset's first label-spreading run
    for r in runs:
        if r.arm == "pixels-labelspreading" and not r.tuned:
            builders.setdefault(r.dataset, r)

    def key(r: PlannedRun) -> tuple[bool, float]:
        early = builders.get(r.dataset) == r
        return not r.tuned, rank["semisupervised"] + 0.5 if early else rank.get(r.arm, len(rank))

    return sorted(runs, key=key)


def as_records(runs: list[PlannedRun]) -> list[dict]:
    """The run list as written to ``plan.json``."""
    return [asdict(r) for r in runs]
