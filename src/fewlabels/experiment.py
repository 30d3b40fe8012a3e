"""The comparison protocol: datasets × label budgets × seeds × arms.

Pretraining runs once per dataset and serves every label draw; every arm of a seed sees the
same draw; the test set is read only for each run's final predictions. Arms that train on
every label (the ceiling) run once per dataset. What each arm does lives in ``arms``; the
curves go through ``metrics``; results.json is assembled by ``results``. The runs are
planned first (``plan``), then made in order, each kept the moment it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, memo
from .arms import ARMS, SAMPLED
from .classifiers import check_split, features
from .config import SELECTED, CompareConfig, to_dict
from .data import (
    Dataset,
    as_float,
    check_draws_differ,
    draw_labels,
    load_dataset,
    parse_label_budget,
    to_uint8,
)
from .errors import UsageError, parse_json
from .metrics import Metrics
from .outputs import LOCK, run_folder_lock
from .parallel import claim
from .plan import PlannedRun, as_records, longest_first, plan_runs
from .pretrain import load_encoder, pretrain, save_encoder
from .results import (
    Run,
    RunLog,
    assemble,
    git_commit,
    mixed_threads,
    tsne_map,
)
from .runtime import Runtime, environment, resolve
from .selection import select
from .sharing import times_lowered
from .stats import confusion_matrix, unit_name
from .tuning import tune


def _pretrained_encoder(ds: Dataset, cfg: CompareConfig, seed: int, rt: Runtime, budget: int,
                        out_dir: Path, pretrained, metrics: Metrics, log, save_every: int):
    """(encoder, seconds): the encoder of pretraining run ``seed``, written to the run
    folder as ``<dataset>.encoder`` (``<dataset>-p<seed>.encoder`` when there are several
    runs), with its curve in metrics and, for the first run of a method that reconstructs
    images, ``<dataset>.reconstructions.npy`` (test images above their reconstructions)."""
    if pretrained is not None:
        encoder, _ = load_encoder(pretrained)
        log(f"using the pretrained encoder {pretrained}")
        return encoder.to(rt.device), 0.0
    recipe = dataclasses.replace(cfg.pretrain, seed=seed)
    several = len(cfg.pretraining_seeds()) > 1
    path = out_dir / (f"{ds.name}-p{seed}.encoder" if several else f"{ds.name}.encoder")
    if path.exists():  # resuming, or a worker: this pretraining finished before
        encoder, meta = load_encoder(path)
        log(f"{ds.name}: reusing {path.name}, already pretrained in this run folder")
        return encoder.to(rt.device), float(meta.get("seconds", 0.0))
    pool = min(recipe.pool or len(ds.train_images), len(ds.train_images))
    log(f"{ds.name}: pretraining {recipe.name()} on {pool} unlabeled images"
        + (f" (pretraining seed {seed})" if several else ""))
    first = cfg.samplings()[0]
    monitor = draw_labels(ds.train_labels, budget, cfg.seeds[0],
                          "random" if first in SELECTED else first)
    t = time.perf_counter()
    encoder, method, history = pretrain(ds, recipe, rt, monitor,
                                        state_path=path.with_name(f"{path.name}.state"),
                                        save_every=save_every)
    seconds = time.perf_counter() - t
    save_encoder(path, encoder, recipe, ds, history)
    metrics.write(history.records, dataset=ds.name, stage="pretrain",
                  **({"pretrain_seed": seed} if several else {}))
    decoder = getattr(method, "decoder", None)
    if decoder is not None and seed == cfg.pretraining_seeds()[0]:
        x = as_float(ds.test_images[:12]).to(rt.device)
        with torch.no_grad(), rt.autocast():
            recon = decoder(encoder(x)).float().view_as(x).clamp(0, 1)
        checkpoint.atomic_save_npy(out_dir / f"{ds.name}.reconstructions.npy",
                                   np.stack([to_uint8(x), to_uint8(recon)]))
        metrics.images(torch.cat([x, recon]).cpu(), f"{ds.name}/reconstructions (top: truth)")
    return encoder, seconds


def _draws(ds: Dataset, budgets: list[int], cfg: CompareConfig, encoders: dict, rt) -> dict:
    """{(count, seed, sampling): the indices labeled}, for each of ``cfg.samplings()`` (the
    first keyed ""): drawn, or — typical / coverage — chosen in the embedding of the first
    pretraining run's encoder, never reading a label (the seed is the selection's)."""
    out = {}
    feats = None
    for i, sampling in enumerate(cfg.samplings()):
        for count in budgets:
            for seed in cfg.seeds:
                if sampling in SELECTED:
                    if feats is None:
                        feats = features(encoders[cfg.pretraining_seeds()[0]],
                                         ds.train_images, rt).cpu()
                    chosen = select(feats, count, sampling, seed,
                                    classes=ds.num_classes).sort().values
                else:
                    chosen = draw_labels(ds.train_labels, count, seed, sampling)
                out[count, seed, sampling if i else ""] = chosen
    return out


def _encoders(ds: Dataset, cfg: CompareConfig, rt: Runtime, budget: int, out_dir: Path,
              pretrained, metrics: Metrics, log, save_every: int) -> tuple[dict, float]:
    """({pretraining seed: encoder} (None: None, for the arms without one), seconds of
    pretraining), each run pretrained or reused, when some arm needs an encoder."""
    encoders: dict[int | None, torch.nn.Module | None] = {None: None}
    seconds = 0.0
    if cfg.needs_encoder():
        for p in cfg.pretraining_seeds():
            encoders[p], took = _pretrained_encoder(ds, cfg, p, rt, budget, out_dir,
                                                    pretrained, metrics, log, save_every)
            seconds += took
    return encoders, seconds


def _run_arm(arm: str, ds: Dataset, labeled: torch.Tensor, seed: int, count: int,
             cfg: CompareConfig, encoder, metrics: Metrics, rt: Runtime, *,
             settings=None, tuning: dict | None = None, extra_seconds: float = 0.0,
             pretrain_seed: int | None = None, name: str | None = None,
             shared: Path | None = None) -> Run:
    """Train and test one arm on one label draw (and pretraining run); log its curve.
    ``settings``: the arm's config section (its section of ``cfg`` unless tuned);
    ``tuning`` records how it was tuned; ``name``: the run's (its planned name; default
    the arm's); ``shared``: the folder the comparison's runs share (``memo``)."""
    name = name or arm
    t = time.perf_counter()
    o = ARMS[arm].run(cfg.context(ds.without_test(), labeled, seed, encoder, rt, shared),
                      settings or cfg.settings(arm))
    if o.predict_and_plain is None:
        classes, plain = o.predict(ds.test_images), None
    else:  # an averaging predictor: its plain prediction too, for what the averaging adds
        classes, plain_classes = o.predict_and_plain(ds.test_images)
        plain = (plain_classes == ds.test_labels).sum().item() / len(ds.test_labels)
    conf = confusion_matrix(classes, ds.test_labels, ds.num_classes)
    per_class = (conf.diagonal() / conf.sum(1).clip(min=1)).round(4).tolist()
    chosen = {**({"tuning": tuning} if tuning else {}), **o.chosen}
    seconds = time.perf_counter() - t + extra_seconds
    run = Run(ds.name, name, o.method, count, seed, float(conf.trace() / conf.sum()),
              per_class, conf.tolist(), seconds, chosen, pretrain_seed,
              torch.get_num_threads(), plain, o.history)
    metrics.write(o.history, dataset=ds.name, stage="arm", arm=name, labels=count, seed=seed,
                  **({"pretrain_seed": pretrain_seed} if pretrain_seed is not None else {}))
    return run


def _line(run: Run, cfg: CompareConfig) -> str:
    """A finished run's line (printed once the run is kept)."""
    shown = unit_name(run.seed, run.pretrain_seed if len(cfg.pretraining_seeds()) > 1 else None)
    return (f"{run.dataset:>13} {run.arm:>21}  labels={run.labels:<6} seed={shown}  "
            f"test accuracy {run.test_accuracy:.4f}  ({run.train_seconds:.1f} s)")


def _tuned_run(item: PlannedRun, ds: Dataset, labeled: torch.Tensor, cfg: CompareConfig,
               encoder, metrics: Metrics, rt: Runtime, log, out_dir: Path) -> Run:
    """Tune the planned run's arm on a validation split of its labels (cfg.tune trials),
    then train it on all of them with the chosen values and test it once."""
    arm, seed, count, pretrain_seed = item.arm, item.seed, item.labels, item.pretrain_seed
    t = time.perf_counter()
    drawn = arm + (SAMPLED + item.sampling if item.sampling else "")
    study = f"{ds.name}-{drawn}-{count}-seed{unit_name(seed, pretrain_seed)}"
    chosen, info = tune(arm, ds, labeled, seed, cfg, encoder, cfg.tune,
                        out_dir / "tuning.db", study, rt)
    log(f"{ds.name:>13} {arm:>21}  tuned: {info['params']} "
        f"(validation accuracy {info['val_accuracy']:.4f}, {info['trials']} trials)")
    return _run_arm(arm, ds, labeled, seed, count, cfg, encoder, metrics, rt,
                    settings=chosen, tuning=info, extra_seconds=time.perf_counter() - t,
                    pretrain_seed=pretrain_seed, name=item.name, shared=out_dir / memo.FOLDER)


def _execute(item: PlannedRun, ds: Dataset, draws: dict, cfg: CompareConfig, encoder,
             metrics: Metrics, rt: Runtime, log, out_dir: Path) -> Run:
    """Make the planned run ``item`` now, on its draw in ``draws`` ((labels, seed,
    sampling) → the labeled indices) or, for an every-label arm, on every training image."""
    labeled = (torch.arange(item.labels) if item.every_label
               else draws[item.labels, item.seed, item.sampling])
    if item.tuned:
        return _tuned_run(item, ds, labeled, cfg, encoder, metrics, rt, log, out_dir)
    return _run_arm(item.arm, ds, labeled, item.seed, item.labels, cfg, encoder, metrics, rt,
                    pretrain_seed=item.pretrain_seed, name=item.name,
                    shared=out_dir / memo.FOLDER)


def _check_resumable(out_dir: Path, cfg: CompareConfig) -> None:
    """A folder with a finished run is refused; one from an interrupted run is resumed only
    with the same config (the differences are named otherwise)."""
    if (out_dir / "results.json").exists():
        raise UsageError(f"{out_dir} already holds a finished run: choose another --out folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {str(out_dir)!r} is a file, not a folder: choose a folder")
    previous = out_dir / "config.json"
    if not previous.exists():
        if out_dir.is_dir() and any(p.name != LOCK for p in out_dir.iterdir()):
            raise UsageError(f"--out {str(out_dir)!r} holds files but no fewlabels run "
                             "(no config.json): choose a new or empty folder, so that "
                             "nothing there is overwritten")
        return
    try:
        old = parse_json(previous.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{previous} is unreadable, so the interrupted run there cannot be "
                         "resumed: choose another --out folder") from None
    differences = _differences(old, json.loads(json.dumps(to_dict(cfg))))  # tuples → lists
    unknown = [key for key, before, after in differences if _ABSENT in (before, after)]
    if unknown:  # no option matches a setting that one of the two versions does not have
        raise UsageError(f"{out_dir} holds an interrupted run of another fewlabels version "
                         f"(settings only one of the two has: {', '.join(unknown[:6])}): "
                         "finish it with the version that started it, or choose another "
                         "--out folder")
    if differences:
        raise UsageError(f"{out_dir} holds an interrupted run with another config ("
                         + "; ".join(f"{key}: {before!r} → {after!r}"
                                     for key, before, after in differences[:6])
                         + "): pass the same options to resume it, or choose another --out "
                         "folder")


_ABSENT = object()  # a key one config has and the other does not


def _differences(old, new, where: str = "") -> list[tuple[str, object, object]]:
    """(key, old, new) for every value that differs between two nested dicts; a key
    missing on one side reads as ``_ABSENT`` there."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k, _ABSENT), new.get(k, _ABSENT),
                                      f"{where}{k}.")]
    return [] if old == new else [(where[:-1], old, new)]


def _check_arms_on(cfg: CompareConfig, name: str, ds: Dataset, budgets: list[int]) -> None:
    """The arms' settings that only the data can check: label spreading's graph against the
    images and pixels, and at each label budget the kNN vote and the validation split an
    arm chooses its value on (else scikit-learn's traceback, a majority vote, or NaN, in
    the middle of the comparison). Under ``--tune`` the trials set these instead."""
    if cfg.tune:
        return
    spreading, pixels = cfg.pixels_labelspreading, math.prod(ds.image_shape)
    if "pixels-labelspreading" in cfg.arms:
        if spreading.components > pixels:
            raise UsageError(f"pixels_labelspreading.components={spreading.components} is out "
                             f"of range for {name}: use 1..{pixels} (its pixels)")
        if spreading.k >= len(ds.train_labels):
            raise UsageError(f"pixels_labelspreading.k={spreading.k} is out of range for "
                             f"{name}: use 1..{len(ds.train_labels) - 1} (the other "
                             "training images)")
    for count in budgets:
        for arm, section, candidates in (("probe", cfg.probe, cfg.probe.weight_decays),
                                         ("supervised", cfg.supervised, cfg.supervised.lrs),
                                         ("finetune", cfg.finetune, cfg.finetune.lrs)):
            if arm in cfg.arms and len(candidates) > 1:  # the arm chooses on a split
                check_split(f"{arm}.val_fraction", section.val_fraction, count)
        if "pixels-knn" in cfg.arms and cfg.pixels_knn.k > count:
            raise UsageError(f"pixels_knn.k={cfg.pixels_knn.k} is out of range at {count} "
                             f"labels: use 1..{count} (a vote among the labeled images; more "
                             "was read as all of them)")


def _load_and_check(cfg: CompareConfig, data_dir, pretrained,
                    datasets: dict[str, Dataset] | None) -> tuple[dict, dict]:
    """(datasets by name, label budgets by name), every draw and the ``--pretrained`` file
    checked: everything that can fail does so before anything is written."""
    if pretrained is not None and len(cfg.datasets) > 1:
        raise UsageError(f"--pretrained serves one dataset, but {len(cfg.datasets)} were given "
                         f"({' '.join(cfg.datasets)}): pass one --dataset")
    if pretrained is not None and len(cfg.pretraining_seeds()) > 1:
        raise UsageError("--pretrained is one pretraining run, but --pretrain-seeds asks for "
                         f"{len(cfg.pretraining_seeds())}: pass one of the two")
    loaded = {name: (datasets or {}).get(name) or load_dataset(name, data_dir)
              for name in cfg.datasets}
    budgets = {name: [parse_label_budget(b, len(ds.train_labels)) for b in cfg.labels]
               for name, ds in loaded.items()}
    for name, ds in loaded.items():  # every draw can be made, before anything is written
        cfg.check_data(ds.image_shape)
        _check_arms_on(cfg, name, ds, budgets[name])
        for count in budgets[name]:
            if count < ds.num_classes and any(not ARMS[a].every_label for a in cfg.arms):
                raise UsageError(f"label budget {count} is below {name}'s {ds.num_classes} "
                                 f"classes, so some class would have no label: use at least "
                                 f"{ds.num_classes} (one a class)")
            check_draws_differ(count, len(ds.train_labels), cfg.seeds, name)
            for sampling in set(cfg.samplings()) - set(SELECTED):
                draw_labels(ds.train_labels, count, cfg.seeds[0], sampling)
    if pretrained is not None:  # a missing, foreign or mismatched file fails before writing
        shape = load_encoder(pretrained)[1].get("image_shape")
        ds = next(iter(loaded.values()))
        if list(shape or []) != list(ds.image_shape):
            raise UsageError(f"--pretrained {str(pretrained)!r} was pretrained on images of "
                             f"shape {shape}, but {ds.name} has {list(ds.image_shape)}: "
                             "pretrain on this dataset or pass its own encoder")
    return loaded, budgets


def compare(cfg: CompareConfig, out_dir: Path, *, data_dir=None, pretrained=None,
            tensorboard: bool = False, log: Callable[[str], None] = print, save_every: int = 200,
            datasets: dict[str, Dataset] | None = None, shard: tuple[int, int] | None = None,
            pretrain_only: bool = False, started: float | None = None,
            lowered_before: int | None = None, workers: int = 1) -> dict | None:
    """Run the comparison described by ``cfg`` and write its run folder; return results.

    ``datasets``: loaded datasets by name, used instead of loading ``cfg.datasets``.
    Every value is checked, and every dataset loaded, before the folder is made.
    ``pretrain_only``: pretrain (or reuse) every encoder and stop. ``shard=(i, n)``: a
    worker's part of a parallel comparison (``parallel``): the runs it claims first, logged
    to its own file, and no results; the folder's encoders must exist. ``started``: when
    the whole command started (its wall clock, pretraining and workers included);
    ``lowered_before``: likewise, how often this process had given way to other processes
    by then (``sharing.times_lowered``; default: by this call), so that results.json counts
    the command's times, its pretraining pass's included, and not an earlier run's.
    ``workers``: how many processes ran the runs (recorded in the environment)."""
    start = started or time.perf_counter()  # the wall clock of the whole command
    lowered_before = times_lowered() if lowered_before is None else lowered_before
    cfg.validate()
    rt = resolve(cfg.device, cfg.precision)
    loaded, budgets = _load_and_check(cfg, data_dir, pretrained, datasets)
    _check_resumable(out_dir, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_folder_lock(out_dir) if shard is None else contextlib.nullcontext():
        return _make(cfg, out_dir, loaded, budgets, rt, start, workers, pretrained=pretrained,
                     tensorboard=tensorboard, log=log, save_every=save_every, shard=shard,
                     pretrain_only=pretrain_only, lowered_before=lowered_before)


def _make(cfg: CompareConfig, out_dir: Path, loaded: dict, budgets: dict, rt: Runtime,
          start: float, workers: int, *, pretrained, tensorboard: bool, log, save_every: int,
          shard: tuple[int, int] | None, pretrain_only: bool,
          lowered_before: int) -> dict | None:
    """The comparison itself, in its checked and locked run folder: config, run list,
    pretraining, the runs, then results.json and the report. ``lowered_before``: the
    process's count of giving way to other processes when the command began."""
    if shard is None:  # the command's own pass: an interrupted run's, or a folder's from
        memo.clear(out_dir)  # elsewhere, shared results are never loaded
    checkpoint.atomic_write_text(out_dir / "config.json", json.dumps(to_dict(cfg), indent=2))
    metrics = Metrics(out_dir / ("metrics.jsonl" if shard is None  # a worker's: merged later
                                 else f"metrics-{shard[0]}-of-{shard[1]}.jsonl"),
                      out_dir / "tensorboard" if tensorboard else None)
    (out_dir / "labels").mkdir(exist_ok=True)
    planned = plan_runs(list(loaded), budgets, {n: len(ds.train_labels)
                                                for n, ds in loaded.items()},
                        cfg.seeds, cfg.arms, cfg.pretraining_seeds(), cfg.tune > 0,
                        tuple(cfg.samplings()))
    checkpoint.atomic_write_text(out_dir / "plan.json",
                                 json.dumps(as_records(planned), indent=1))
    finished = RunLog(out_dir, shard)
    # what the folder holds is said once, by the command's first pass: not again by each
    # worker, nor when the command gathers its workers' runs
    say = log if shard is None and workers <= 1 else (lambda _line: None)
    if finished.done:
        say(f"resuming {out_dir}: {len(finished.done)} finished runs kept")
    runs: list[Run] = []
    pretrain_seconds, data, maps = {}, {}, {}
    for name, ds in loaded.items():
        data[name] = {"sha256": ds.sha256, "source": ds.source, "image_shape": ds.image_shape,
                      "classes": list(ds.classes)}
        encoders, pretrain_seconds[name] = _encoders(ds, cfg, rt, budgets[name][0], out_dir,
                                                     pretrained, metrics, say, save_every)
        if (cfg.feature_map > 0 and shard is None and not pretrain_only
                and cfg.needs_encoder()):
            f = features(encoders[cfg.pretraining_seeds()[0]],
                         ds.test_images[:cfg.feature_map], rt).cpu()
            labels = ds.test_labels[:cfg.feature_map]
            maps[name] = tsne_map(f.numpy(), labels)
            metrics.embedding(f, labels, f"{name}/features")
        if pretrain_only:
            continue
        draws = _draws(ds, budgets[name], cfg, encoders, rt)
        for (count, seed, sampling), labeled in draws.items():
            checkpoint.atomic_write_text(
                out_dir / "labels" / f"{name}-{count}-seed{seed}"
                f"{'-' + sampling if sampling else ''}.json", json.dumps(labeled.tolist()))
        for item in planned if shard is None else longest_first(planned):
            if item.dataset != name:
                continue
            run = finished.get(item.key())  # kept from an interrupted run
            if run is None and (shard is None or claim(out_dir, item.key())):
                run = _execute(item, ds, draws, cfg, encoders[item.pretrain_seed], metrics,
                               rt, log, out_dir)
                finished.add(run)
                log(_line(run, cfg))
            if run is not None:
                runs.append(run)

    if pretrain_only or shard is not None:
        metrics.close()
        return None
    mixed = mixed_threads(runs)
    if mixed:
        log(mixed)
    results = assemble(cfg, runs, pretrain_seconds=pretrain_seconds,
                       wall_seconds=time.perf_counter() - start,
                       environment={**environment(rt, lowered_before), "git": git_commit(),
                                    "workers": workers},
                       data=data, feature_maps=maps)
    metrics.close()
    checkpoint.atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    memo.clear(out_dir)  # every run that reads it is done
    from .report import write_report

    write_report(out_dir, results)
    return results
