"""The ``fewlabels`` command line. Bad input prints one line and exits with code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import (
    Terminated,
    UsageError,
    check_positive,
    check_unique,
    one_line,
    parse_json,
)
from .outputs import check_output_file


class Several(argparse.Action):
    """A list option given more than once adds up (``--labels 100 --labels 600`` is
    ``--labels 100 600``), where argparse would keep the last silently; the first use
    replaces the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        kept = [] if current is None or current is self.default else current
        setattr(namespace, self.dest, [*kept, *values])


def _cmd_data(args) -> int:
    from .data import dataset_info, fetch, load_dataset

    if args.action == "fetch" and args.data_dir:
        load_dataset(args.dataset, args.data_dir)  # verified there, or one clear error
        print(f"{args.dataset}: the 4 files in {args.data_dir} verify (SHA-256); "
              f"use them with --data-dir {args.data_dir}")
    elif args.action == "fetch":
        folder = fetch(args.dataset, force=args.force)
        source = json.loads((folder / "source.json").read_text())["source"]
        print(f"{args.dataset}: 4 files verified in {folder} (from {source})")
    else:
        # it reads what is there: a dataset not fetched yet is said, not fetched
        info = dataset_info(load_dataset(args.dataset, args.data_dir, download=False))
        print(json.dumps(info, indent=2))
    return 0


def compare_config(args):
    """The comparison's config from the parsed command line: the preset, then ``--set``,
    then the dedicated flags, then ``--quick``; validated. A flag the preset cannot honour
    is refused."""
    from .config import load_preset, parse_set, quick

    overrides = parse_set(args.set or [])
    for key in ("datasets", "labels", "seeds", "pretrain_seeds", "arms", "device", "precision",
                "label_sampling", "tune"):
        value = getattr(args, key)
        if key == "label_sampling" and value is not None and len(value) == 1:
            value = value[0]  # one sampling: the config's plain form
        if value is not None:
            overrides[key] = value
    cfg = load_preset(args.preset, overrides, validate=False)
    if args.epochs is not None:
        cfg.supervised.epochs = cfg.probe.epochs = args.epochs
    if args.pretrain_epochs is not None:
        cfg.pretrain.epochs = args.pretrain_epochs
    if args.latent_size is not None:
        if cfg.pretrain.encoder != "mlp":
            raise UsageError(f"--latent-size sets the MLP encoder's code width, but preset "
                             f"{cfg.preset!r} uses the {cfg.pretrain.encoder} encoder: use "
                             "--set pretrain.encoder_options.width=N, or --preset seed")
        cfg.pretrain.encoder_options = {**cfg.pretrain.encoder_options,
                                        "latent_size": args.latent_size}
    if args.quick:
        cfg = quick(cfg)
    return cfg.validate()


def _workers(value: str, cfg) -> int:
    """``--workers``: a count, at most one more than the CPUs this process may use (each
    worker is a process holding torch and the data), or ``auto``: on a CPU, one-thread
    workers, one more than the run has threads (two one-thread processes do more on two
    cores than one two-thread process, and the extra one keeps every core busy while the
    longest runs finish: README, "Parallel runs"), but no more than there are runs; one
    on a GPU, or when the run has one thread."""
    import torch

    from .plan import plan_runs
    from .runtime import available_cpus, resolve

    if value != "auto":
        try:
            count = int(value)
        except ValueError:
            raise UsageError(f"--workers={value!r} is not allowed: it must be a positive "
                             "integer or auto") from None
        check_positive("--workers", count, integer=True)
        most = available_cpus() + 1
        if count > most:
            raise UsageError(f"--workers={count} is out of range: 1..{most} (one more than "
                             "the CPUs this process may use: one-thread workers beyond it only "
                             "wait and hold memory); give fewer, or auto")
        return count
    threads = torch.get_num_threads()
    if resolve(cfg.device, cfg.precision).device.type != "cpu" or threads == 1:
        return 1
    runs = plan_runs(cfg.datasets, {n: cfg.labels for n in cfg.datasets},
                     {n: 0 for n in cfg.datasets}, cfg.seeds, cfg.arms,
                     cfg.pretraining_seeds(), cfg.tune > 0, tuple(cfg.samplings()))
    return max(1, min(threads + 1, len(runs)))


def _cmd_compare(args) -> int:
    from .experiment import compare
    from .report import format_table
    from .sharing import shared_notice, times_lowered

    started = time.perf_counter()
    cfg = compare_config(args)
    workers = _workers(args.workers, cfg)
    check_positive("--save-every", args.save_every, integer=True)
    out = Path(args.out) if args.out else Path("runs") / time.strftime(
        f"%Y%m%d-%H%M%S-{'+'.join(cfg.datasets)}-{cfg.preset}{'-quick' if cfg.quick else ''}")
    common = {"data_dir": args.data_dir, "pretrained": args.pretrained,
              "tensorboard": args.tensorboard, "save_every": args.save_every}
    try:
        if args.shard is not None:  # a worker of a parallel comparison
            from .parallel import parse_shard

            compare(cfg, out, shard=parse_shard(args.shard), **common)
            return 0
        if workers > 1:
            from .outputs import run_folder_lock
            from .parallel import run_workers

            lowered = times_lowered()  # the pretraining pass's times count in results.json
            compare(cfg, out, pretrain_only=True, **common)
            with run_folder_lock(out):  # held while the workers write, then to the end
                run_workers(args.argv, out, workers)
                results = compare(cfg, out, started=started, lowered_before=lowered,
                                  workers=workers, **common)
        else:
            results = compare(cfg, out, **common)
    except KeyboardInterrupt:
        from .results import RunLog

        if (out / "config.json").exists():
            kept = len(RunLog(out).done)
            encoders = sorted(p.name for p in out.glob("*.encoder"))
            print(f"fewlabels: interrupted; kept in {out}: {kept} finished runs"
                  + (f" and {', '.join(encoders)}" if encoders else "")
                  + "; run the same command (with --out) to resume", file=sys.stderr)
        raise
    print()
    print(format_table(results))
    print(f"\npretraining {sum(results['pretrain_seconds'].values()):.1f} s, "
          f"wall {results['wall_seconds']:.1f} s; report: {out / 'report.md'}")
    notice = shared_notice(results["environment"].get("threads_lowered", 0))
    if notice:
        print(notice)
    return 0


def _cmd_report(args) -> int:
    from .report import write_report
    from .results import check_runs

    folder = Path(args.run_dir)
    if not (folder / "results.json").is_file():
        raise UsageError(f"{folder} holds no results.json file: pass a run folder written by "
                         "`fewlabels compare`")
    try:
        results = parse_json((folder / "results.json").read_text())
    except ValueError as e:
        raise UsageError(f"{folder / 'results.json'} is not valid JSON ({e}); "
                         "it cannot be reported") from None
    check_runs(results, str(folder / "results.json"))
    try:
        written = write_report(folder, results)
    except UsageError:  # one that names its own file (metrics.jsonl)
        raise
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise UsageError(f"{folder / 'results.json'} does not hold what a report needs "
                         f"({type(e).__name__}: {str(e)[:80]}): it was changed or written by "
                         "another version; run the comparison again") from None
    print(f"wrote {written} and {folder / 'report.html'}")
    return 0


def _cmd_evaluate(args) -> int:
    from .data import DATASETS, load_dataset
    from .predictor import Model

    model = Model.load(args.checkpoint, args.device)
    name = (model.meta.get("data") or {}).get("dataset")
    if name not in DATASETS:
        raise UsageError(f"{args.checkpoint!r} was trained on {name!r}, not on one of "
                         f"{', '.join(DATASETS)}: evaluate reads their test splits; for your "
                         "own test images use `fewlabels predict`")
    ds = load_dataset(name, args.data_dir)
    if list(ds.image_shape) != list(model.image_shape):
        raise UsageError(f"{args.checkpoint!r} takes images of shape {list(model.image_shape)}"
                         f", but {name} has {list(ds.image_shape)}")
    print(json.dumps({"checkpoint": str(args.checkpoint), "dataset": name,
                      "labels": model.meta.get("labeled_images", len(model.meta.get(
                          "labeled", []))),
                      "test_accuracy": model.accuracy(ds.test_images, ds.test_labels)}))
    return 0


def _cmd_methods(args) -> int:
    from .methods import METHODS

    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<20} {doc}")
    return 0


def _cmd_pretrain(args) -> int:
    from .config import apply, load_preset, parse_set
    from .data import draw_labels, load_dataset
    from .pretrain import PretrainConfig, pretrain, save_encoder
    from .runtime import resolve

    cfg = load_preset(args.preset).pretrain if args.preset else PretrainConfig()
    if args.method:
        cfg.method = args.method
    sets = parse_set(args.set or [])
    apply(cfg, {**sets.pop("pretrain", {}), **sets}, "pretrain.")
    for key in ("epochs", "batch", "lr"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.width is not None:
        if cfg.encoder != "conv":
            raise UsageError(f"--width sets the conv encoder's width, but this recipe uses the "
                             f"{cfg.encoder} encoder: use --set encoder_options.latent_size=N")
        cfg.encoder_options = {**cfg.encoder_options, "width": args.width}
    cfg.validate()
    out = Path(args.out or f"{args.preset or cfg.method}.encoder")
    state = out.with_name(f"{out.name}.state")
    check_output_file(out, "--out", args.force, "model.encoder")  # before the pretraining
    check_output_file(state, "--out's state", force=True)  # there when resuming
    rt = resolve(args.device, args.precision)
    ds = load_dataset(args.dataset, args.data_dir)
    monitor = draw_labels(ds.train_labels, 600, 0)
    if state.exists():
        print(f"resuming the interrupted pretraining saved in {state}", file=sys.stderr)
    try:
        encoder, _, history = pretrain(ds, cfg, rt, monitor_labels=monitor, state_path=state,
                                       save_every=args.save_every)
    except KeyboardInterrupt:
        if state.exists():
            print(f"fewlabels: pretraining stopped; its state is saved in {state}: run the "
                  "same command to resume", file=sys.stderr)
        raise
    from . import distributed

    if not distributed.is_main():
        return 0  # rank 0 writes the encoder
    save_encoder(out, encoder, cfg, ds, history)
    knn = history.series("knn")[1]
    print(f"saved {out}: {cfg.name()} on {ds.name}, {history.seconds:.1f} s, "
          f"kNN on the labeled validation split {knn[-1]:.4f}" if knn else f"saved {out}")
    return 0


def _cmd_probe(args) -> int:
    import statistics

    from .augment import AugmentConfig
    from .classifiers import ProbeConfig, linear_probe, predict
    from .data import check_draws_differ, draw_labels, load_dataset, parse_label_budget
    from .development import check_reported_draws
    from .pretrain import load_encoder
    from .runtime import resolve

    check_reported_draws(args.seeds)  # the options first, before any file is read
    check_unique("--seeds", args.seeds)
    cfg = ProbeConfig(augment=args.augment)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    cfg.validate("probe --")
    encoder, meta = load_encoder(args.encoder)
    rt = resolve(args.device, args.precision)
    encoder.to(rt.device)
    ds = load_dataset(args.dataset or meta["dataset"], args.data_dir,
                      download=args.dataset is not None)  # metadata never downloads
    count = parse_label_budget(args.labels, len(ds.train_labels))
    check_draws_differ(count, len(ds.train_labels), args.seeds, ds.name)
    if list(meta.get("image_shape", [])) != list(ds.image_shape):
        raise UsageError(f"--encoder {args.encoder!r} was pretrained on images of shape "
                         f"{meta.get('image_shape')}, but {ds.name} has "
                         f"{list(ds.image_shape)}: probe it on its own dataset")
    aug = AugmentConfig(**meta["pretrain"]["augment"])
    accs = []
    for seed in args.seeds:
        labeled = draw_labels(ds.train_labels, count, seed)
        r = linear_probe(encoder, ds.train_images[labeled], ds.train_labels[labeled], cfg, rt,
                         aug, seed, num_classes=ds.num_classes)
        accuracy = (predict(encoder, r["head"], ds.test_images, rt) == ds.test_labels
                    ).float().mean().item()
        accs.append(accuracy)
        print(f"seed {seed}: {count} labels, probe test accuracy {accuracy:.4f} "
              f"(weight decay {r['weight_decay']} chosen on the labeled validation split)")
    if len(accs) > 1:
        print(f"mean {statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}")
    return 0


def _cmd_fit(args) -> int:
    from .config import parse_set
    from .fitting import fit

    fit(args.data, args.out, arms=args.arms, image_size=args.image_size, preset=args.preset,
        overrides=parse_set(args.set or []), quick_run=args.quick,
        val_fraction=args.val_fraction, seed=args.seed, device=args.device,
        precision=args.precision, force=args.force, save_every=args.save_every,
        refit=args.refit)
    return 0


def _write_predictions(pred, fmt: str, k: int) -> None:
    import csv

    rows = pred.rows(k)
    if fmt == "json":
        print(json.dumps(rows, indent=1))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["file", "class", "probability"]
                   + [f"top{i}_{x}" for i in range(1, k + 1) for x in ("class", "probability")]
                   if k > 1 else ["file", "class", "probability"])
        for row in rows:
            top = [v for t in row.get("top", []) for v in (t["class"], t["probability"])]
            w.writerow([row["file"], row["class"], row["probability"], *top])
    else:
        names = [one_line(r["file"]) for r in rows]  # one line a file, whatever its name
        width = max([len(n) for n in names] + [4])
        for name, row in zip(names, rows, strict=True):
            others = "  ".join(f"{one_line(t['class'])} {t['probability']:.3f}"
                               for t in row.get("top", [])[1:])
            print(f"{name:<{width}}  {one_line(row['class'])}  {row['probability']:.3f}"
                  + (f"   ({others})" if others else ""))


def _cmd_predict(args) -> int:
    from .predictor import Model

    check_positive("--batch", args.batch, integer=True)  # named as the option, not the API's
    model = Model.load(args.model, args.device)
    check_top_k(args.top_k, len(model.classes))
    pred = model.predict(args.paths, progress=True, batch=args.batch)
    if pred.files is not None and not pred.files and not pred.errors:
        raise UsageError(f"no image found in {' '.join(args.paths)}: give files, folders, "
                         "globs or - (paths on stdin)")
    _write_predictions(pred, args.format, args.top_k)
    _say_unreadable(pred.errors)
    return 1 if pred.errors else 0


def _say_unreadable(errors: dict[str, str]) -> None:
    """One line on stderr for each file that could not be read, and why."""
    for path, why in errors.items():
        print(f"fewlabels: {one_line(path)}: {why}", file=sys.stderr)


def check_top_k(k: int, classes: int) -> None:
    if not 1 <= k <= classes:
        raise UsageError(f"--top-k {k} is out of range: use 1..{classes} (the model's classes)")


def _cmd_embed(args) -> int:

    from .checkpoint import atomic_save_npy, atomic_write_bytes
    from .predictor import load_for_embedding

    check_positive("--batch", args.batch, integer=True)
    out = Path(args.out)
    check_output_file(out, "--out", True, "features.npy")  # before the images are read
    listing = out.with_suffix(".files.txt")
    check_output_file(listing, "--out's file list", force=True)
    source = load_for_embedding(args.model, args.device)
    feats, files, errors = source.embed(args.paths, progress=True, batch=args.batch)
    listed = [i for i, f in enumerate(files) if "\n" not in f and "\r" not in f]
    for i in sorted(set(range(len(files))) - set(listed)):  # one path a line cannot hold them
        errors[files[i]] = ("its name holds a line break, which the listing (one path a "
                            "line) cannot hold: rename the file")
    feats, files = feats[listed], [files[i] for i in listed]
    _say_unreadable(errors)
    if not files:
        raise UsageError(f"no image could be read from {' '.join(args.paths)}, so nothing "
                         f"was written to {args.out}: give files, folders, globs or -")
    atomic_save_npy(out, feats)
    atomic_write_bytes(listing, "".join(f"{f}\n" for f in files).encode())
    print(f"saved {out} ({feats.shape[0]} × {feats.shape[1]} float32) and {listing}")
    return 1 if errors else 0


def _cmd_export(args) -> int:
    from .predictor import Model

    check_output_file(args.onnx, "--onnx", True, "model.onnx")  # replaced, as embed's --out
    model = Model.load(args.model)
    check = None
    if args.check:
        check, _, errors = model.decode(args.check)
        _say_unreadable(errors)
        if not len(check):
            raise UsageError(f"no readable image in {' '.join(args.check)} to check the "
                             "export on: give image files or folders")
    r = model.export_onnx(args.onnx, check)
    print(f"saved {args.onnx}: onnxruntime matches PyTorch on {r['images']} real images "
          f"(same classes, max probability difference {r['max_abs_difference']:.1e}); input "
          f"'images' float32 (batch, {', '.join(map(str, model.image_shape))}) in [0, 1], "
          "output 'probabilities'")
    return 0


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="fetch or describe a dataset")
    p.add_argument("action", choices=("fetch", "info"))
    p.add_argument("dataset", help="mnist, fashion-mnist or mnist-hard")
    p.add_argument("--data-dir", type=_path,
                   help="folder holding the IDX files (default: the cache)")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=_cmd_data)


def _compare_parser(sub) -> None:
    from .catalog import ARM_ABOUT

    p = sub.add_parser("compare", help="pretrain, train every arm on the same label draws, "
                                       "write results.json and a report")
    p.add_argument("--preset", default="default", help="seed | default (default: default)")
    p.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", action=Several,
                   help="mnist fashion-mnist mnist-hard (default: mnist); each is pretrained "
                        "once")
    p.add_argument("--labels", nargs="+", action=Several,
                   help="label budgets, e.g. 100 600 1000 6000 all (also 1%%, 0.01)")
    p.add_argument("--seeds", nargs="+", action=Several, type=int,
                   help="one label draw per seed (default 0 1 2)")
    p.add_argument("--pretrain-seeds", nargs="+", action=Several, type=int,
                   help="one pretraining run per seed (default: one run, seed 0); every label "
                        "draw is evaluated on each, and the intervals cover both")
    p.add_argument("--arms", nargs="+", action=Several,
                   help="which arms to run (default: all but the ceiling, which is asked "
                        "for by name): " + "; ".join(f"{name}: {about}"
                                                     for name, about in ARM_ABOUT.items()))
    p.add_argument("--label-sampling", nargs="+", action=Several,
                   help="balanced (the same count a class: an oracle, it "
                   "reads labels no user has; default) | random | typical | coverage (chosen "
                   "in the run's pretrained embedding, without labels); several: each a "
                   "column of the comparison, paired with the first over draws")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--precision", help="auto | bf16 | fp16 | fp32 (default: auto)")
    p.add_argument("--epochs", type=int,
                   help="epochs of the supervised and probe arms (the ceiling keeps its own)")
    p.add_argument("--pretrain-epochs", type=float,
                   help="epochs of pretraining's first stage (a fraction is part of one)")
    p.add_argument("--latent-size", type=int,
                   help="code width of the MLP encoder (preset seed; refused for the conv "
                        "encoder, whose width is set with --set pretrain.encoder_options."
                        "width=N)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set probe.lr=0.1 (repeatable)")
    p.add_argument("--pretrained", type=_path, metavar="PATH", help="reuse a saved .encoder (from "
                   "`fewlabels pretrain` or a run folder) or .autoencoder (from the Python "
                   "API) instead of pretraining")
    p.add_argument("--data-dir", type=_path,
                   help="folder holding the IDX files (default: the cache)")
    p.add_argument("--tune", type=int, metavar="N",
                   help="Optuna trials per tunable arm, label budget and seed, each scored on a "
                        "validation split of the labels (default 0: the preset's values)")
    p.add_argument("--workers", default="auto",
                   help="independent runs in this many processes (at most one more than "
                        "the CPUs), each with its share of the threads; one results.json "
                        "(default auto: on a CPU, one-thread workers, one more than the "
                        "run's threads, at most one a run; 1 on a GPU or with one thread)")
    p.add_argument("--shard", help=argparse.SUPPRESS)  # I/N: set by --workers for a worker
    p.add_argument("--save-every", type=int, default=200,
                   help="steps between saves of the pretraining state (default 200); an "
                        "interrupted run resumes from the last one")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the curves, feature embeddings and reconstructions to "
                        "RUN_DIR/tensorboard (needs the tensorboard package)")
    p.add_argument("--quick", action="store_true",
                   help="the same protocol on reduced epochs: a first look in minutes")
    p.add_argument("--out", type=_path,
                   help="run folder (default: runs/<time>-<datasets>-<preset>)")
    p.set_defaults(func=_cmd_compare)


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="rebuild report.md / report.html of a run folder from "
                                      "its results.json, without training")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)


def _methods_parser(sub) -> None:
    p = sub.add_parser("methods", help="list the pretraining methods")
    p.set_defaults(func=_cmd_methods)


def _pretrain_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining; saves the encoder")
    p.add_argument("--preset", help="start from a preset's pretraining recipe (default: "
                   "SimCLR, then SCAN rounds; seed: the notebook's "
                   "autoencoder); the options below change it")
    p.add_argument("--method", help="see `fewlabels methods` (default: vicreg, or the "
                   "preset's)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=float, help="epochs of the first stage (a fraction is "
                   "part of one)")
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--width", type=int, help="conv encoder width")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any pretraining field, e.g. --set augment.elastic=0.03 (a leading "
                        "'pretrain.' may be written or left out)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--data-dir", type=_path)
    p.add_argument("--out", type=_path,
                   help="where to write the encoder (default: PRESET.encoder or "
                   "METHOD.encoder); the training state is kept beside it (OUT.state) "
                   "until it ends, and the same command resumes from it")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--save-every", type=int, default=200,
                   help="steps between saves of the training state (default 200)")
    p.set_defaults(func=_cmd_pretrain)


def _probe_parser(sub) -> None:
    p = sub.add_parser("probe", help="frozen linear probe of a saved encoder")
    p.add_argument("--encoder", type=_path,
                   required=True, help="a file written by `fewlabels pretrain`")
    p.add_argument("--labels", default="600")
    p.add_argument("--seeds", nargs="+", action=Several, type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int)
    p.add_argument("--augment", action="store_true",
                   help="train the linear layer on augmented views (default: clean images, "
                        "as compare does)")
    p.add_argument("--dataset", help="default: the encoder's pretraining dataset")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--data-dir", type=_path)
    p.set_defaults(func=_cmd_probe)


def _fit_parser(sub) -> None:
    p = sub.add_parser("fit", help="train the best classifier your labels allow on an image "
                       "folder or an .npz; save one model file")
    p.add_argument("data", help="DIR with labeled/<class>/*, optional unlabeled/ and test/<class>/"
                   "; or an .npz with x_train, y_train (-1 = unlabeled), optional x_test, "
                   "y_test, classes")
    p.add_argument("--out", type=_path,
                   required=True, help="the model file to write, e.g. digits.model "
                   "(checked before training starts)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--arms", nargs="+", action=Several,
                   default=["probe", "finetune", "semisupervised", "supervised"],
                   help="candidate arms, chosen on a validation split of the labels (default: "
                        "probe finetune semisupervised supervised)")
    p.add_argument("--image-size", type=int, help="side the images are brought to (default: "
                   "the median longer side, capped at 64; aspect kept by padding)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of each class's labels held out to choose the arm")
    p.add_argument("--refit", action="store_true",
                   help="train the chosen arm again on every label, the held-out ones too "
                        "(its time again; default: keep the candidate that was scored)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config field, e.g. --set pretrain.epochs=2 (repeatable)")
    p.add_argument("--quick", action="store_true", help="reduced epochs for a first look")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--save-every", type=int, default=200,
                   help="steps between saves of the pretraining state, kept beside --out "
                        "(default 200); fit run again after an interruption resumes from it")
    p.set_defaults(func=_cmd_fit)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="classes and probabilities of images from a model")
    p.add_argument("model", help="a file written by `fewlabels fit`")
    p.add_argument("paths", nargs="+", help="files, folders, globs, or - for paths on stdin")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--top-k", type=int, default=1, help="classes shown per image")
    p.add_argument("--batch", type=int, default=1024, help="images decoded and classified "
                   "at a time")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (float32 always)")
    p.set_defaults(func=_cmd_predict)


def _embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="features of images from a model or an encoder")
    p.add_argument("model", help="a .model from `fit` or an .encoder")
    p.add_argument("paths", nargs="+", help="files, folders, globs, or - for paths on stdin")
    p.add_argument("--out", type=_path,
                   required=True, help="features.npy; the file list goes beside it "
                   "(features.files.txt)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (float32 always)")
    p.set_defaults(func=_cmd_embed)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a model as ONNX, checked with onnxruntime")
    p.add_argument("model", help="a file written by `fewlabels fit`")
    p.add_argument("--onnx", type=_path, required=True, help="the .onnx file to write")
    p.add_argument("--check", nargs="+", action=Several,
                   help="images to compare onnxruntime with PyTorch on (default: the 16 "
                        "training images kept in the model file)")
    p.set_defaults(func=_cmd_export)


def _suggest_parser(sub) -> None:
    from .catalog import STRATEGIES

    p = sub.add_parser("suggest", help="which images of a folder to label next, chosen in an "
                       "encoder's embedding without any label")
    p.add_argument("folder", help="DIR: images to choose from in DIR/unlabeled/ (or anywhere "
                   "outside DIR/labeled/); DIR/labeled/<class>/ count as chosen already")
    p.add_argument("--budget", type=int, required=True, help="how many images to suggest")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--encoder", type=_path, help="an .encoder from `pretrain` or `compare`")
    which.add_argument("--model", type=_path, help="a .model from `fit`")
    p.add_argument("--strategy", default="typical", choices=STRATEGIES,
                   help="typical (TypiClust, default), coverage (ProbCover) or random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, help="classes to expect (coverage's radius; "
                   "default: DIR/labeled's class folders; coverage needs one or the other)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--links", type=_path,
                   help="also write a folder of links to the suggested images, "
                   "numbered in order (a new or empty folder)")
    p.set_defaults(func=_cmd_suggest)


def _cmd_suggest(args) -> int:
    import csv

    from .errors import check_seed
    from .suggesting import check_links, suggest, write_links

    check_seed("--seed", args.seed)
    if args.links:
        check_links(args.links)  # before the images are read
    r = suggest(args.folder, args.budget, args.encoder or args.model, strategy=args.strategy,
                seed=args.seed, classes=args.classes, progress=True)
    _say_unreadable(r["unreadable"])
    if args.format == "json":
        print(json.dumps(r["files"], indent=1))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["order", "file"])
        w.writerows(enumerate(r["files"], 1))
    else:
        for n, f in enumerate(r["files"], 1):
            print(f"{n:>5}  {one_line(f)}")
    print(f"fewlabels: {len(r['files'])} of {r['candidates']} images suggested by "
          f"{args.strategy} ({r['labeled']} labeled already) in {r['seconds']:.1f} s"
          + (f"; links in {write_links(args.folder, r['files'], args.links)}"
             if args.links else ""), file=sys.stderr)
    return 0


def _label_parser(sub) -> None:
    from .catalog import STRATEGIES

    p = sub.add_parser("label", help="a labeling page in the browser: answers go at once into "
                       "DIR/labeled/<class>/ (copies; the originals are never changed)")
    p.add_argument("folder", help="DIR: the images to label (DIR/unlabeled/ or anywhere "
                   "outside DIR/labeled/)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--encoder", type=_path,
                       help="an .encoder: show the images `suggest` chooses, in "
                       "its order (default: every image, in name order)")
    which.add_argument("--model", type=_path, help="a .model from `fit`, to suggest with")
    p.add_argument("--budget", type=int, default=100, help="images to suggest (default 100)")
    p.add_argument("--strategy", default="typical", choices=STRATEGIES)
    p.add_argument("--classes", type=int, help="classes to expect (coverage's radius; "
                   "default: DIR/labeled's class folders)")
    p.add_argument("--port", type=int, default=0, help="default: a free one")
    p.add_argument("--no-browser", action="store_true", help="print the address only")
    p.set_defaults(func=_cmd_label)


def _cmd_label(args) -> int:
    import webbrowser

    from .labeling import serve
    from .suggesting import suggest

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range: use 0..65535 (0: a free one)")
    queue = None
    if args.encoder or args.model:
        queue = suggest(args.folder, args.budget, args.encoder or args.model,
                        strategy=args.strategy, classes=args.classes, progress=True)["files"]

    def ready(url: str) -> None:
        print(f"fewlabels: labeling {args.folder} at {url} — Ctrl-C to stop (every answer is "
              "saved as it is given)", file=sys.stderr, flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    try:
        serve(args.folder, queue, args.port, ready)
    except KeyboardInterrupt:
        print(f"fewlabels: stopped; the answers are in {Path(args.folder, 'labeled')}/: run "
              "the same command to go on", file=sys.stderr)
    return 0


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a model file (`fit`'s .model or "
                       "the notebook's .classifier) on its dataset's test split")
    p.add_argument("checkpoint", help="a model trained on a built-in dataset")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=_path)
    p.set_defaults(func=_cmd_evaluate)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, as every other refusal here (the usage is one
    ``-h`` away); the subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"fewlabels: error: {message} (`{self.prog} -h` lists the options)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but words no option takes send to the subcommand's ``-h`` (where
        its options are), not to the program's, which lists only the subcommands."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self.prog = f"{self.prog} {command}" if command else self.prog
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _path(value: str) -> str:
    """A path option's value: refused when empty (an unset shell variable, say), which
    would otherwise read as the current folder or as the option left out."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is an empty path: give a file or "
                                         "folder name")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fewlabels", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--threads", type=int, help="torch threads (default: $FEWLABELS_THREADS, "
                   "else the CPUs this process may use: its affinity and cgroup quota)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_data_parser, _compare_parser, _report_parser, _methods_parser, _pretrain_parser,
                _probe_parser, _fit_parser, _predict_parser, _embed_parser, _export_parser,
                _evaluate_parser, _suggest_parser, _label_parser):
        add(sub)
    return p


def _terminate(signum, frame):
    """SIGTERM stops the program as SIGINT does: between two writes (every file is written
    atomically or appended a line at a time; training saves its state after the step)."""
    raise Terminated()


def out_of_memory(error: BaseException) -> str | None:
    """None unless ``error`` is a failed allocation; else what it asked for (" (asked 670.6
    GiB)"), or "" when the error does not say."""
    import re

    text = str(error)
    if not (isinstance(error, MemoryError) or "can't allocate memory" in text
            or type(error).__name__ == "OutOfMemoryError"):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    return f" (asked {int(asked[1]) / 2**30:,.1f} GiB)" if asked else ""


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the command line itself: its work in a session of its own
        from .session import own_session_wanted, run_in_own_session

        try:
            wanted = own_session_wanted()
        except UsageError as e:
            if args.debug:
                raise
            print(f"fewlabels: error: {e}", file=sys.stderr)
            return 2
        if wanted:
            try:
                return run_in_own_session([sys.executable, "-m", "fewlabels", *args.argv])
            except OSError:  # no process could be started (memory, a process limit):
                pass  # the work runs here, in the caller's session, as before the session
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from . import distributed
        from .runtime import set_threads
        from .sharing import sharing_enabled

        set_threads(args.threads, where="--threads")
        sharing_enabled()  # a bad $FEWLABELS_SHARE is refused now, not in the first step
        if distributed.setup() > 1 and args.command != "pretrain":
            raise UsageError(f"under torchrun only `fewlabels pretrain` runs data-parallel, "
                             f"not {args.command!r}: pretrain there, then pass the encoder "
                             "to compare --pretrained (and use compare --workers N to run "
                             "its arms in parallel)")
        return args.func(args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"fewlabels: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("fewlabels: " + ("terminated" if isinstance(e, Terminated) else "interrupted"),
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (MemoryError, RuntimeError) as e:  # an allocation past the memory there is
        need = out_of_memory(e)
        if args.debug or need is None:
            raise
        print(f"fewlabels: error: out of memory{need}: lower the batch, the encoder's width "
              "or --image-size, or free memory; finished work is kept", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or forbidden path: no traceback
        if args.debug:
            raise
        where = f" {e.filename!r}" if e.filename else ""
        print(f"fewlabels: error: {e.strerror or e}{where}: free some space, fix the "
              "permissions or choose another path; finished work is kept (files are written "
              "whole or not at all)", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        from . import distributed

        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
