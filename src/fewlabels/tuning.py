"""An equal tuning budget: every arm gets the same number of Optuna trials (TPE sampler,
Akiba et al., KDD 2019) of its own hyperparameters, each trial scored on a validation split
carved from that arm's labeled subset.

A trial runs the arm exactly as the comparison does, on the rest of the labeled subset,
with the dataset's test split withheld (any use of it raises): the real test set is never
handed to tuning. Studies live in
``tuning.db`` (SQLite) in the run folder, so an interrupted tuning resumes where it stopped.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .arms import ARMS
from .config import CompareConfig
from .data import Dataset, split_indices

VAL_FRACTION = 0.2  # share of the labeled subset each trial is scored on


def with_trial(arm: str, trial, settings):
    """A copy of ``arm``'s config section ``settings`` with an Optuna trial's values."""
    chosen = copy.deepcopy(settings)
    ARMS[arm].space(trial, chosen)
    return chosen


def tune(arm: str, ds: Dataset, labeled: torch.Tensor, seed: int, cfg: CompareConfig,
         encoder, trials: int, storage: Path, study_name: str, runtime=None) -> tuple:
    """Run (or resume) ``trials`` trials for ``arm``; return (its config section with the
    best trial's values, {"params", "val_accuracy", "trials"}). Each trial runs the arm as
    the comparison does, on a part of the labeled subset, and is scored on the rest; the
    dataset it is handed has its test split withheld."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train, val = split_indices(labeled, 1 - VAL_FRACTION, seed)
    ctx = cfg.context(ds.without_test(), train, seed, encoder, runtime)
    settings = cfg.settings(arm)

    def objective(trial) -> float:
        predict = ARMS[arm].run(ctx, with_trial(arm, trial, settings)).predict
        return (predict(ds.train_images[val]) == ds.train_labels[val]).float().mean().item()

    study = optuna.create_study(
        study_name=study_name, storage=f"sqlite:///{storage}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < trials:
        study.optimize(objective, n_trials=trials - len(done))
    best = study.best_trial
    chosen = with_trial(arm, optuna.trial.FixedTrial(best.params), settings)
    return chosen, {"params": best.params, "val_accuracy": best.value,
                    "trials": len([t for t in study.trials
                                   if t.state == optuna.trial.TrialState.COMPLETE])}
