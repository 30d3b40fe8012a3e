"""An equal tuning budget: every arm gets the same number of Optuna trials (TPE sampler,
Akiba et al., KDD 2019) of its own hyperparameters, each trial scored on a validation split
carved from that arm's labeled subset.

A trial runs the arm exactly as the comparison does, on a dataset whose "test" split *is*
that validation split: the real test set is never handed to tuning. Studies live in
``tuning.db`` (SQLite) in the run folder, so an interrupted tuning resumes where it stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from .config import CompareConfig
from .data import Dataset, split_indices

VAL_FRACTION = 0.2  # share of the labeled subset each trial is scored on


def _epochs(trial, base: int, longer: bool = False) -> int:
    """Half or all of the preset's epochs (or twice them, with ``longer``)."""
    return trial.suggest_categorical("epochs", [max(1, base // 2), base]
                                     + ([2 * base] if longer else []))


def _supervised(trial, cfg: CompareConfig) -> None:
    if cfg.protocol == "ssl":
        s = cfg.from_scratch
        s.lrs = [trial.suggest_float("lr", 3e-4, 1e-2, log=True)]
        s.weight_decay = trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True)
        s.epochs = _epochs(trial, s.epochs)
    else:
        s = cfg.supervised
        s.lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
        s.epochs = _epochs(trial, s.epochs)


def _probe(trial, cfg: CompareConfig) -> None:
    if cfg.protocol == "ssl":
        p = cfg.linear_probe
        p.lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        p.weight_decays = [trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)]
        p.epochs = _epochs(trial, p.epochs, longer=True)
    else:
        p = cfg.probe
        p.lr = trial.suggest_float("lr", 3e-3, 3e-1, log=True)
        p.epochs = _epochs(trial, p.epochs)


def _logreg(trial, cfg: CompareConfig) -> None:
    cfg.pixels.logreg_c = trial.suggest_float("C", 1e-3, 1e2, log=True)


def _knn(trial, cfg: CompareConfig) -> None:
    cfg.pixels.knn_k = trial.suggest_int("n_neighbors", 1, 15)


# arm → fn(trial, config copy): sets that arm's hyperparameters from the trial
SPACES: dict[str, Callable] = {"supervised": _supervised, "probe": _probe,
                               "pixels-logreg": _logreg, "pixels-knn": _knn}


def validation_view(ds: Dataset, labeled: torch.Tensor, seed: int
                    ) -> tuple[Dataset, torch.Tensor]:
    """(a dataset whose test split is a held-out part of ``labeled``, the rest of it).

    Built from the training split alone: nothing in it refers to the test set."""
    train, val = split_indices(labeled, 1 - VAL_FRACTION, seed)
    view = Dataset(ds.name, ds.train_images, ds.train_labels, ds.train_images[val],
                   ds.train_labels[val], ds.classes, ds.source, ds.sha256)
    return view, train


def tune(arm: str, ds: Dataset, labeled: torch.Tensor, seed: int, cfg: CompareConfig,
         model, run_arm: Callable, trials: int, storage: Path, study_name: str
         ) -> tuple[CompareConfig, dict]:
    """Run (or resume) ``trials`` trials for ``arm``; return (the config with the best
    trial's values, {"params", "val_accuracy", "trials"}).

    ``run_arm(arm, dataset, labeled, seed, cfg, model)`` must return test-split
    predictions; here the test split is the validation view."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    view, train = validation_view(ds, labeled, seed)

    def objective(trial) -> float:
        trial_cfg = copy.deepcopy(cfg)
        SPACES[arm](trial, trial_cfg)
        predictions = run_arm(arm, view, train, seed, trial_cfg, model)
        return (predictions == view.test_labels).float().mean().item()

    study = optuna.create_study(
        study_name=study_name, storage=f"sqlite:///{storage}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < trials:
        study.optimize(objective, n_trials=trials - len(done))
    best = study.best_trial
    chosen = copy.deepcopy(cfg)
    SPACES[arm](optuna.trial.FixedTrial(best.params), chosen)
    return chosen, {"params": best.params, "val_accuracy": best.value,
                    "trials": len([t for t in study.trials
                                   if t.state == optuna.trial.TrialState.COMPLETE])}
