import json
import subprocess
import sys

import pytest
import torch

from fewlabels.cli import main
from terminal import as_from_a_terminal

TINY = ["--pretrain-epochs", "0.05", "--epochs", "2", "--set", "feature_map=60",
        "--set", "ceiling.max_epochs=1", "--set", "ceiling.lrs=0.003",
        "--set", "ceiling.at_least_semisupervised=false", "--set", "pretrain.pool=2000"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, message", [
    (["--labels", "0"], "label budget '0' is out of range"),
    (["--labels", "60001"], "label budget '60001' is out of range"),
    (["--labels", "lots"], "label budget 'lots' is not a number"),
    # before the data is loaded the range is not known: no stand-in count is named
    (["--labels", "nan"], "label budget 'nan' is not a number: use a count from 1, a "
     "fraction in (0, 1]"),
    (["--set", "probe.lr=0"], "probe.lr=0.0 is not allowed: it must be a positive number"),
    (["--set", "supervised.lrs=-0.1"], "supervised.lrs=-0.1 is not allowed"),
    (["--set", "pretrain.lr=-1"], "pretrain.lr=-1.0 is not allowed"),
    (["--epochs", "0"], "epochs=0 is not allowed: it must be a positive integer"),
    (["--epochs", "-5"], "epochs=-5 is not allowed"),
    (["--preset", "seed", "--latent-size", "0"],
     "pretrain.encoder_options.latent_size=0 is not allowed: it must be a positive integer"),
    (["--latent-size", "16"], "--latent-size sets the MLP encoder's code width"),
    (["--dataset", "cifar10"],
     "unknown dataset 'cifar10': choose one of fashion-mnist, mnist, mnist-hard"),
    (["--preset", "best"], "unknown preset 'best': choose one of default, seed"),
    (["--arms", "probe", "forest"], "unknown arm 'forest': choose one of"),
    (["--set", "probe.momentum=0.9"], "unknown setting 'probe.momentum'"),
    (["--pretrained", "missing.encoder"], "checkpoint 'missing.encoder' does not exist"),
    (["--labels", "100", "100"], "labels gives '100' twice: give each once"),
    # every label is one draw, whatever the seed: its n=3 interval [x, x] was over nothing
    (["--labels", "all", "--arms", "pixels-knn"], "label budget 60000 is every training label "
     "of mnist: each of the 3 seeds would draw the same labels"),
    (["--arms", "pixels-knn", "pixels-knn"], "arms gives 'pixels-knn' twice"),
    (["--seeds", "99999999999999999999999"], "seeds=99999999999999999999999 is out of range"),
    (["--seeds", "-1"], "seeds=-1 is out of range: use an integer from 0"),
    (["--arms", "pixels-knn", "--labels", "600", "100", "--set", "pixels_knn.k=101"],
     "pixels_knn.k=101 is out of range at 100 labels: use 1..100"),
    (["--arms", "pixels-labelspreading", "--set", "pixels_labelspreading.k=99999999"],
     "pixels_labelspreading.k=99999999 is out of range for mnist: use 1..59999"),
    (["--arms", "pixels-labelspreading", "--set", "pixels_labelspreading.components=785"],
     "pixels_labelspreading.components=785 is out of range for mnist: use 1..784"),
    # one labeled image left to train on standardised to NaN: "lr=0.01 is too high" it said
    (["--labels", "10", "--arms", "probe", "--set", "probe.val_fraction=0.99"],
     "probe.val_fraction=0.99 splits 10 labeled images into 1 to train on and 9 to choose"),
    (["--labels", "10", "--arms", "supervised", "--set", "supervised.lrs=[0.001,0.003]",
      "--set", "supervised.val_fraction=0.01"],
     "supervised.val_fraction=0.01 splits 10 labeled images into 10 to train on and 0"),
    (["--set", "probe.weight_decays=[]"],
     "give a list of at least one value, e.g. --set probe.weight_decays=[0.001,0.003]"),
    (["--tune", "99999999999999999999"], "tune=99999999999999999999 is out of range: use "
     "0..10,000 trials"),
    (["--set", "probe.batch=nan"], "probe.batch=nan is not allowed"),
    (["--set", "supervised.batch=inf"], "supervised.batch=inf is not allowed"),
    (["--pretrain-epochs", "inf"], "pretrain.epochs=inf is not allowed"),
    # --quick reduces what was asked only once it is valid: inf used to become 1 epoch
    (["--pretrain-epochs", "inf", "--quick"], "pretrain.epochs=inf is not allowed"),
    (["--set", "semisupervised.epochs=nan", "--quick"], "semisupervised.epochs=nan"),
    # a layer of 720 GB was asked of the allocator; 100,000 clusters trained at 4 s a step
    (["--set", "pretrain.encoder_options.width=100000"],
     "pretrain.encoder_options.width=100000 is out of range: use 1..1024"),
    (["--set", "pretrain.refine_options.clusters=100000"],
     "pretrain.refine_options.clusters=100000 is out of range: use 2..1000"),
])
def test_bad_compare_input_exits_2_with_one_clear_line(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, "compare", "--out", str(tmp_path / "run"), *TINY, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("fewlabels: error: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists(), "a refused run leaves no folder"


@pytest.mark.parametrize("argv, message", [
    (["compare", "--quick", "--out", ""], "argument --out: '' is an empty path"),
    (["pretrain", "--out", " "], "argument --out: ' ' is an empty path"),
    (["fit", "digits", "--out", ""], "argument --out: '' is an empty path"),
    (["embed", "m.model", "a.png", "--out", ""], "argument --out: '' is an empty path"),
    (["export", "m.model", "--onnx", ""], "argument --onnx: '' is an empty path"),
    # a word no option takes sends to the subcommand's options, not the program's
    (["compare", "--quick", "--bogus"], "unrecognized arguments: --bogus (`fewlabels compare "
     "-h` lists the options)"),
    (["evaluate", "m.model", "digits"], "unrecognized arguments: digits (`fewlabels evaluate "
     "-h` lists the options)"),
    (["--threads", "abc", "compare"], "argument --threads: invalid int value: 'abc'"),
    (["embed", "m.model", "a.png", "--out", "."], "--out '.' is a folder"),
    (["predict", "m.model", "a.png", "--batch", "0"],
     "--batch=0 is not allowed: it must be a positive integer (> 0)"),
    (["embed", "m.model", "a.png", "--out", "f.npy", "--batch", "-3"],
     "--batch=-3 is not allowed: it must be a positive integer (> 0)"),
    (["embed", "m.model", "a.png", "--out", "f.npy", "--batch", "x"],
     "argument --batch: invalid int value: 'x'"),
    # every file output alike: a missing folder is refused (embed used to create it)
    (["embed", "m.model", "a.png", "--out", "nodir/f.npy"], "its folder 'nodir' does not "
     "exist"),
    (["export", "m.model", "--onnx", "nodir/m.onnx"], "its folder 'nodir' does not exist"),
    (["pretrain", "--out", "nodir/m.encoder"], "its folder 'nodir' does not exist"),
])
def test_parse_errors_and_empty_paths_are_one_line_not_a_default(capsys, tmp_path, monkeypatch,
                                                                  argv, message):
    """An empty path (an unset shell variable) is refused, not read as the current folder
    or as the option left out; argparse's own errors are one line too."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits from parse_args
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.startswith("fewlabels: error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_cuda_without_a_gpu_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(capsys, "compare", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and "device 'cuda' was asked for, but no CUDA GPU is available" in err


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("folder", "is a folder: give the path of a file"),
    (b"\x00" * 64, "is corrupt or not a safetensors file"),
    (b"garbage that is not a checkpoint", "is corrupt or not a safetensors file"),
])
def test_missing_or_corrupt_checkpoint_exits_2(capsys, tmp_path, content, message):
    path = tmp_path / "m.classifier"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    code, _, err = run_cli(capsys, "evaluate", str(path))
    assert code == 2 and message in err and str(path) in err
    if isinstance(content, bytes):
        assert path.read_bytes() == content, "a bad checkpoint is reported, never overwritten"


def test_foreign_safetensors_file_is_refused(capsys, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.classifier"
    save_file({"w": torch.zeros(2)}, str(path))
    code, _, err = run_cli(capsys, "evaluate", str(path))
    assert code == 2 and "is not a fewlabels checkpoint" in err


def test_unknown_dataset_for_data_fetch(capsys):
    code, _, err = run_cli(capsys, "data", "fetch", "svhn")
    assert code == 2 and "unknown dataset 'svhn'" in err


def test_console_script_prints_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fewlabels.cli", "compare", "--labels", "0",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "label budget '0'" in out.stderr


def test_data_info_describes_mnist(capsys, mnist):
    code, out, _ = run_cli(capsys, "data", "info", "mnist")
    info = json.loads(out)
    assert code == 0 and info["train"] == [60000, 1, 28, 28]
    assert info["train_class_counts"][1] == 6742 and info["source"]


def test_data_info_of_a_dataset_not_fetched_says_so_and_fetches_nothing(capsys, tmp_path,
                                                                         monkeypatch):
    from fewlabels import data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FEWLABELS_DATA", raising=False)
    monkeypatch.setattr(data, "fetch", lambda *a, **k: pytest.fail("info fetched"))
    code, out, err = run_cli(capsys, "data", "info", "fashion-mnist")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "'fashion-mnist' is not in the cache" in err
    assert "run `fewlabels data fetch fashion-mnist`" in err


def test_compare_writes_the_results_contract(capsys, tmp_path, mnist):
    out = tmp_path / "run"
    code, printed, _ = run_cli(capsys, "compare", "--preset", "seed", "--labels", "100",
                               "--seeds", "0", "1", "--tensorboard", "--out", str(out), *TINY)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "seed" and results["datasets"] == ["mnist"]
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {
        (a, s) for a in ("supervised", "probe", "pixels-logreg", "pixels-knn")
        for s in (0, 1)} | {("ceiling", 0)}
    for r in results["runs"]:
        assert r["train_seconds"] > 0
        assert r["labels"] == (60000 if r["arm"] == "ceiling" else 100)
        assert len(r["per_class"]) == 10 and sum(map(sum, r["confusion"])) == 10000
        assert r["test_accuracy"] == pytest.approx(
            sum(r["confusion"][k][k] for k in range(10)) / 10000)
    assert {(s["arm"], s["n"]) for s in results["summary"]} == {
        ("supervised", 2), ("probe", 2), ("pixels-logreg", 2), ("pixels-knn", 2),
        ("ceiling", 1)}
    assert len(results["paired"]) == 6  # every pair of the four arms that saw the draws
    pre = results["pretrain_seconds"]["mnist"]
    assert pre > 0 and results["wall_seconds"] >= pre
    assert results["environment"]["torch"] == torch.__version__
    assert results["config"]["preset"] == "seed" and results["config"]["seeds"] == [0, 1]
    for name in ("report.md", "report.html", "config.json", "metrics.jsonl",
                 "accuracy_vs_labels.png", "gains.png", "confusion-mnist.png",
                 "features-mnist.png", "reconstructions-mnist.png", "mnist.encoder",
                 "labels/mnist-100-seed0.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    curves = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {m["stage"] for m in curves} == {"pretrain", "arm"}
    drawn = json.loads((out / "labels" / "mnist-100-seed1.json").read_text())
    assert len(drawn) == 100
    probe = [r for r in results["runs"] if r["arm"] == "probe" and r["seed"] == 0][0]
    assert f"{probe['test_accuracy']:.4f}" in printed
    report = (out / "report.md").read_text()
    assert f"{probe['test_accuracy']:.4f}" in report
    # every number of the table is the one in results.json
    from fewlabels.report import table_rows

    for row in table_rows(results):
        assert "| " + " | ".join(row) + " |" in report
    assert "Does pretraining pay off more on harder data?" in report

    # the report is rebuilt from results.json alone, to the same text
    (out / "report.md").unlink()
    code, printed, _ = run_cli(capsys, "report", str(out))
    assert code == 0 and (out / "report.md").read_text() == report

    # a finished run is never overwritten
    code, _, err = run_cli(capsys, "compare", "--out", str(out), *TINY)
    assert code == 2 and "already holds a finished run" in err
    assert json.loads((out / "results.json").read_text()) == results

    # a saved encoder can be reused instead of pretraining again
    code, _, _ = run_cli(capsys, "compare", "--preset", "seed", "--arms", "probe", "--labels", "50",
                         "--seeds", "0",
                         "--pretrained", str(out / "mnist.encoder"),
                         "--out", str(tmp_path / "reuse"), *TINY)
    assert code == 0
    reuse = json.loads((tmp_path / "reuse" / "results.json").read_text())
    assert reuse["pretrain_seconds"] == {"mnist": 0}


def test_methods_lists_the_registry(capsys):
    from fewlabels.methods import METHODS

    code, out, _ = run_cli(capsys, "methods")
    assert code == 0 and all(name in out for name in METHODS)


def test_pretrain_rejects_an_unknown_method(capsys, tmp_path):
    code, _, err = run_cli(capsys, "pretrain", "--method", "byol", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown pretrain.method 'byol': choose one of" in err


def test_pretrain_starts_from_a_preset_recipe_and_options_change_it(capsys, tmp_path, mnist):
    out = tmp_path / "d.encoder"
    code, printed, _ = run_cli(
        capsys, "pretrain", "--preset", "default", "--epochs", "1", "--width", "4",
        "--set", "pool=1024", "--set", "batch=512", "--set", "refine_rounds=1",
        "--set", "refine_epochs=1", "--set", "self_label_epochs=1", "--out", str(out))
    assert code == 0 and f"saved {out}: simclr+scan+self-label on mnist" in printed
    from fewlabels.pretrain import load_encoder

    encoder, meta = load_encoder(out)
    recipe = meta["pretrain"]
    assert (recipe["method"], recipe["refine"], recipe["refine_options"]) == (
        "simclr", "scan", {"clusters": 10})  # the preset's, where no option changed them
    assert (recipe["epochs"], recipe["pool"], recipe["self_label_epochs"]) == (1, 1024, 1)
    assert encoder.num_features == 16

    code, _, err = run_cli(capsys, "pretrain", "--preset", "seed", "--width", "8",
                           "--out", str(out))
    assert code == 2 and "--width sets the conv encoder's width" in err
    assert load_encoder(out)[1] == meta  # the refused call left the saved encoder alone
    # an existing encoder, a folder or a path under a file: refused before pretraining
    before = out.read_bytes()
    (tmp_path / "a-file").write_text("x")
    for where, says in ((out, "exists: pass --force to replace it"),
                        (tmp_path, "is a folder: give a file name, e.g."),
                        (tmp_path / "a-file" / "x.encoder", "cannot be a file")):
        code, printed, err = run_cli(capsys, "pretrain", "--preset", "seed", "--epochs",
                                     "0.05", "--out", str(where))
        assert code == 2 and says in err and "saved" not in printed
        assert "pretrain" not in err.split("error:")[0]  # no progress bar: no work done
    assert out.read_bytes() == before

    # the notebook's recipe is a preset like any other: an MLP autoencoder
    seed_out = tmp_path / "seed.encoder"
    code, printed, _ = run_cli(capsys, "pretrain", "--preset", "seed", "--epochs", "0.05",
                               "--out", str(seed_out))
    assert code == 0 and f"saved {seed_out}: autoencoder on mnist" in printed
    encoder, meta = load_encoder(seed_out)
    assert meta["encoder"] == "mlp" and encoder.num_features == 10


def test_ssl_protocol_compare_and_probe_command(capsys, tmp_path, mnist):
    out = tmp_path / "ssl"
    code, _, _ = run_cli(
        capsys, "compare", "--preset", "default", "--labels", "100", "--seeds", "0",
        "--arms", "probe", "supervised", "--set", "pretrain.epochs=1",
        "--set", "pretrain.refine_rounds=1", "--set", "pretrain.refine_epochs=1",
        "--set", "pretrain.batch=2000", "--set", "pretrain.encoder_options.width=4",
        "--set", "pretrain.self_label_epochs=1", "--set", "pretrain.pool=6000",
        "--set", "feature_map=60", "--set", "probe.epochs=5", "--set", "supervised.epochs=2",
        "--out", str(out))
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    probe = [r for r in results["runs"] if r["arm"] == "probe"][0]
    assert probe["method"] == "simclr+scan+self-label"
    # (a width-4 encoder after one tiny SCAN round may have collapsed: no floor on it)
    assert probe["test_accuracy"] == pytest.approx(
        sum(probe["confusion"][k][k] for k in range(10)) / 10000)
    assert "weight_decay" in probe["chosen"]
    assert results["pretrain_seconds"]["mnist"] > 0
    assert (out / "pretraining-mnist.png").is_file()
    code, printed, _ = run_cli(capsys, "probe", "--encoder", str(out / "mnist.encoder"),
                               "--labels", "100", "--seeds", "0", "--epochs", "5")
    assert code == 0 and "seed 0: 100 labels, probe test accuracy" in printed


# Every compare flag, under both presets: it changes what it names, or is refused.
FLAGS = [
    (["--dataset", "fashion-mnist"], lambda c: c.datasets == ["fashion-mnist"]),
    (["--labels", "100", "1%"], lambda c: c.labels == ["100", "1%"]),
    (["--seeds", "4", "5"], lambda c: c.seeds == [4, 5]),
    (["--pretrain-seeds", "0", "1"], lambda c: c.pretraining_seeds() == [0, 1]),
    (["--arms", "probe", "ceiling"], lambda c: c.arms == ["probe", "ceiling"]),
    (["--label-sampling", "random"], lambda c: c.label_sampling == "random"),
    (["--device", "cpu"], lambda c: c.device == "cpu"),
    (["--precision", "fp32"], lambda c: c.precision == "fp32"),
    (["--epochs", "7"], lambda c: c.supervised.epochs == 7 and c.probe.epochs == 7),
    (["--pretrain-epochs", "0.5"], lambda c: c.pretrain.epochs == 0.5),
    (["--set", "probe.lr=0.2"], lambda c: c.probe.lr == 0.2),
    (["--tune", "3"], lambda c: c.tune == 3),
    (["--quick"], lambda c: c.quick and c.probe.epochs <= 50 and c.pretrain.epochs <= 12
                   and c.supervised.cycles == c.finetune.cycles == 1 and c.shifts == 0),
]


def test_quick_predicts_plainly_unless_the_shifts_were_given():
    from fewlabels.cli import build_parser, compare_config

    def shifts(*flags):
        return compare_config(build_parser().parse_args(["compare", *flags])).shifts

    assert shifts() == "auto" and shifts("--quick") == 0
    assert shifts("--quick", "--set", "shifts=1") == 1


@pytest.mark.parametrize("preset", ["seed", "default"])
@pytest.mark.parametrize("flag, holds", FLAGS, ids=[f[0][0] for f in FLAGS])
def test_every_config_flag_acts_under_every_preset(preset, flag, holds):
    from fewlabels.cli import build_parser, compare_config
    from fewlabels.config import load_preset

    cfg = compare_config(build_parser().parse_args(["compare", "--preset", preset, *flag]))
    assert holds(cfg) and not holds(load_preset(preset))


def test_a_list_option_given_twice_adds_up_and_replaces_its_default():
    """argparse keeps the last of a repeated option silently: ``--labels 100 --labels 600``
    ran only 600. Every list option adds up instead; its default is replaced, not extended."""
    from fewlabels.cli import build_parser, compare_config

    parse = build_parser().parse_args
    cfg = compare_config(parse(["compare", "--labels", "100", "--labels", "600", "--arms",
                                "probe", "--arms", "supervised", "--seeds", "3"]))
    assert cfg.labels == ["100", "600"]
    assert cfg.arms == ["probe", "supervised"] and cfg.seeds == [3]
    assert parse(["probe", "--encoder", "e.encoder", "--seeds", "5", "--seeds", "6"]
                 ).seeds == [5, 6]
    assert parse(["probe", "--encoder", "e.encoder"]).seeds == [0, 1, 2]
    assert parse(["fit", "d", "--out", "m.model", "--arms", "probe"]).arms == ["probe"]
    assert parse(["export", "m.model", "--onnx", "m.onnx", "--check", "a.png", "--check",
                  "b.png"]).check == ["a.png", "b.png"]


def test_latent_size_sets_the_mlp_code_and_is_refused_for_the_conv_encoder(capsys, tmp_path):
    from fewlabels.cli import build_parser, compare_config

    cfg = compare_config(build_parser().parse_args(
        ["compare", "--preset", "seed", "--latent-size", "16"]))
    assert cfg.pretrain.encoder_options["latent_size"] == 16
    code, _, err = run_cli(capsys, "compare", "--preset", "default", "--latent-size", "16",
                           "--out", str(tmp_path / "run"))
    assert code == 2 and "use --set pretrain.encoder_options.width=N" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_run_flags_act_under_every_preset(capsys, tmp_path, mnist, preset):
    """--data-dir, --tensorboard, --out and --pretrained, on a tiny run of each preset."""
    from fewlabels.data import cache_dir

    tiny = ["--preset", preset, "--quick", "--labels", "100", "--seeds", "0", "--arms",
            "probe", "supervised", *TINY]
    if preset == "default":  # a narrow conv encoder: 70,000 images' features in seconds
        tiny += ["--set", "pretrain.encoder_options.width=8"]
    first = tmp_path / "first"
    code, _, _ = run_cli(capsys, "compare", *tiny, "--data-dir", str(cache_dir() / "mnist"),
                         "--tensorboard", "--out", str(first))
    assert code == 0
    results = json.loads((first / "results.json").read_text())
    assert results["data"]["mnist"]["source"].startswith("data dir ")
    assert list((first / "tensorboard").glob("events.out.tfevents.*"))
    assert results["pretrain_seconds"]["mnist"] > 0
    code, _, _ = run_cli(capsys, "compare", *tiny, "--pretrained", str(first / "mnist.encoder"),
                         "--out", str(tmp_path / "again"))
    assert code == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["pretrain_seconds"] == {"mnist": 0}


@pytest.mark.usefixtures("mnist")
@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_pretraining_stops_cleanly_and_says_how_to_resume(tmp_path, signame,
                                                                          code):
    import os
    import signal
    import time

    out = tmp_path / "run"
    err = tmp_path / "stderr"
    with err.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "fewlabels", "compare", "--quick",
                                 "--arms", "probe", "--seeds", "0", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=fh,
                                env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=as_from_a_terminal)
        deadline = time.time() + 120
        while "pretrain simclr" not in err.read_text() and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(timeout=120) == code
    text = err.read_text()
    assert "interrupted; kept in" in text and "run the same command (with --out) to resume" in text
    assert "Traceback" not in text
    assert not (out / "results.json").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


@pytest.mark.usefixtures("mnist")
@pytest.mark.parametrize("labels, message", [
    ("5", "label budget 5 is below mnist's 10 classes, so some class would have no label: "
          "use at least 10"),
    ("59000", "a balanced draw of 59000 labels needs 5900 images of class"),
])
def test_budgets_that_cannot_be_drawn_are_refused_before_the_run_folder(capsys, tmp_path,
                                                                         labels, message):
    code, _, err = run_cli(capsys, "compare", "--labels", "10", labels, "--arms", "pixels-knn",
                           "--out", str(tmp_path / "run"))
    assert code == 2 and message in err and not (tmp_path / "run").exists()


@pytest.mark.usefixtures("mnist")
def test_too_many_frozen_layers_are_refused_before_the_run_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compare", "--arms", "semisupervised", "--set",
                           "semisupervised.frozen_layers=9", "--out", str(tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists()
    assert ("semisupervised.frozen_layers=9 is out of range: this encoder has 4 weight "
            "layers; freeze at most 4") in err


ONE_RUN = ('{"runs": [{"dataset": "mnist", "arm": "probe", "labels": 600, "seed": 0, '
           '"test_accuracy": 0.98}]}')


@pytest.mark.parametrize("content, message", [
    ('{"runs": []}', "holds no runs"), ('{"summary": 3}', "holds no runs"),
    ("[]", "holds no runs"), (ONE_RUN, "does not hold what a report needs")])
def test_report_on_a_results_file_missing_keys_is_one_line(capsys, tmp_path, content,
                                                           message):
    (tmp_path / "results.json").write_text(content)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_report_on_a_results_json_that_is_a_folder_or_nested_too_deep_is_one_line(
        capsys, tmp_path):
    (tmp_path / "a" / "results.json").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    for run, message in (("a", "holds no results.json file"),
                         ("b", "is not valid JSON (nested too deeply to read)")):
        code, _, err = run_cli(capsys, "report", str(tmp_path / run))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("record", [
    '{"dataset": "mnist", "stage": "pretrain", "loss": 1}', "[1, 2]",
    '{"dataset": "mnist", "stage": "pretrain", "step": 1, "loss": "a"}'])
@pytest.mark.usefixtures("mnist")
def test_report_names_metrics_jsonl_when_its_records_were_changed(capsys, tmp_path, record):
    """A changed curve record is blamed on metrics.jsonl, not on results.json."""
    run = tmp_path / "run"
    assert run_cli(capsys, "--threads", "1", "compare", "--arms", "pixels-knn", "--labels",
                   "100", "--seeds", "0", "--out", str(run))[0] == 0
    (run / "metrics.jsonl").write_text(record + "\n")
    code, _, err = run_cli(capsys, "report", str(run))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "metrics.jsonl does not hold what the report's curves need" in err


@pytest.mark.usefixtures("mnist")
def test_a_run_that_gave_way_to_other_processes_says_so(capsys, tmp_path, monkeypatch):
    """A run whose threads went down for other processes may not reproduce a run alone
    (a pretrained encoder least of all): results.json and the last lines say so."""
    import dataclasses

    from fewlabels import sharing
    from fewlabels.arms import ARMS

    knn = ARMS["pixels-knn"]

    def gives_way_three_times(ctx, settings):
        sharing._last["lowered"] += 3  # as ThreadShare counts it, during the run
        return knn.run(ctx, settings)

    monkeypatch.setitem(sharing._last, "lowered", 5)  # an earlier run's, in this process
    monkeypatch.setitem(ARMS, "pixels-knn", dataclasses.replace(knn, run=gives_way_three_times))
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "--threads", "1", "compare", "--arms", "pixels-knn",
                           "--labels", "100", "--seeds", "0", "--out", str(run))
    assert code == 0 and "went down to one thread 3 time(s)" in out  # its own, not 8
    assert "FEWLABELS_SHARE=0" in out
    results = json.loads((run / "results.json").read_text())
    assert results["environment"]["threads_lowered"] == 3


@pytest.mark.usefixtures("mnist")
def test_with_workers_the_pretraining_pass_gives_way_counts_too(capsys, tmp_path, monkeypatch):
    """Under --workers the command's first pass (pretraining) and its last (gathering) are
    two calls: times the first gave way count in results.json, an earlier run's do not."""
    from fewlabels import experiment, sharing

    real = experiment.compare

    def first_pass_gives_way(*args, pretrain_only=False, **kwargs):
        if pretrain_only:
            sharing._last["lowered"] += 2  # as ThreadShare counts it while pretraining
        return real(*args, pretrain_only=pretrain_only, **kwargs)

    monkeypatch.setitem(sharing._last, "lowered", 5)  # an earlier run's, in this process
    monkeypatch.setattr(experiment, "compare", first_pass_gives_way)
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "compare", "--arms", "pixels-knn", "--labels", "100",
                           "--seeds", "0", "1", "--workers", "2", "--out", str(run))
    assert code == 0 and "went down to one thread 2 time(s)" in out
    assert json.loads((run / "results.json").read_text())["environment"]["threads_lowered"] == 2


def test_probe_refuses_zero_epochs_before_any_work(capsys, tiny_encoder):
    code, _, err = run_cli(capsys, "probe", "--encoder", str(tiny_encoder), "--epochs", "0")
    assert code == 2 and "probe --epochs=0 is not allowed" in err
    code, _, err = run_cli(capsys, "probe", "--encoder", str(tiny_encoder),
                           "--dataset", "mnist-hard")
    assert code == 2 and "was pretrained on images of shape [1, 28, 28]" in err


def test_workers_give_the_results_of_one_process(capsys, tmp_path, tiny_encoder):
    """compare --workers 2 (one thread each) against one process with one thread: the
    same runs, the same numbers; the pretrained encoder is shared, not trained twice."""
    common = ["compare", "--arms", "probe", "pixels-knn", "--labels", "100", "--seeds", "0",
              "1", "2", "--pretrained", str(tiny_encoder), "--epochs", "5",
              "--set", "feature_map=0", "--precision", "fp32"]
    code, _, _ = run_cli(capsys, "--threads", "1", *common, "--out", str(tmp_path / "one"))
    assert code == 0
    import time

    started, began = time.perf_counter(), time.time()
    code, out, _ = run_cli(capsys, *common, "--workers", "2", "--out", str(tmp_path / "two"))
    took = time.perf_counter() - started
    assert code == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "train_seconds"} for r in one["runs"]]
    assert [{k: v for k, v in r.items() if k != "train_seconds"} for r in two["runs"]] == strip
    assert len(strip) == 6
    # each run ran once, in whichever worker claimed it first
    parts = sorted((tmp_path / "two").glob("runs-*-of-2.jsonl"))
    assert {p.name for p in parts} <= {"runs-0-of-2.jsonl", "runs-1-of-2.jsonl"}
    assert sum(len(p.read_text().splitlines()) for p in parts) == 6
    assert len(list((tmp_path / "two" / "claims").iterdir())) == 6
    assert not list((tmp_path / "two").glob("metrics-*"))
    # the wall clock of the whole command (workers included), not of its last step: up to
    # when results.json was written (the report after it takes a slow host seconds more)
    written = (tmp_path / "two" / "results.json").stat().st_mtime - began
    assert 0.9 * written <= two["wall_seconds"] <= took
    assert two["environment"]["workers"] == 2 and one["environment"]["workers"] == 1
    # gathering the workers' runs is not a resumed run: the folder is described once
    assert "resuming" not in out and out.count("using the pretrained encoder") == 1


def test_workers_auto_is_one_more_than_the_threads_and_at_most_one_a_run(capsys, monkeypatch,
                                                                         tmp_path):
    import torch

    from fewlabels import runtime
    from fewlabels.cli import _workers
    from fewlabels.config import CompareConfig

    threads = torch.get_num_threads()
    monkeypatch.setattr(runtime, "available_cpus", lambda: 4)
    try:
        torch.set_num_threads(2)
        assert _workers("auto", CompareConfig(arms=["probe"], seeds=[0], device="cpu")) == 1
        assert _workers("auto", CompareConfig(arms=["probe"], seeds=[0, 1],
                                              device="cpu")) == 2
        assert _workers("auto", CompareConfig(arms=["probe"], seeds=[0, 1, 2, 3],
                                              device="cpu")) == 3
        assert _workers("5", CompareConfig()) == 5
        torch.set_num_threads(1)  # one thread in all: one process
        assert _workers("auto", CompareConfig(arms=["probe"], seeds=[0, 1, 2, 3],
                                              device="cpu")) == 1
    finally:
        torch.set_num_threads(threads)
    code, _, err = run_cli(capsys, "compare", "--workers", "two")
    assert code == 2 and "--workers='two' is not allowed" in err
    code, _, err = run_cli(capsys, "compare", "--workers", "0")
    assert code == 2 and "--workers=0 is not allowed" in err
    # more than one worker above the CPUs (each a process with torch and the data) is
    # refused before any folder is made
    code, _, err = run_cli(capsys, "compare", "--workers", "6", "--out",
                           str(tmp_path / "never-made"))
    assert code == 2 and "--workers=6 is out of range: 1..5" in err
    assert not (tmp_path / "never-made").exists()


@pytest.mark.usefixtures("mnist")
def test_sigterm_during_the_arms_keeps_the_finished_runs(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "run"
    log = tmp_path / "stdout"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "fewlabels", "compare", "--arms",
                                 "pixels-knn", "pixels-labelspreading", "--seeds", "0", "1",
                                 "--out", str(out)], stdout=fh, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 120
        while "test accuracy" not in log.read_text() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # label spreading is running now
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "kept in" in err and "1 finished runs" in err and "Traceback" not in err, err
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["arm"] == "pixels-knn"
    assert not (out / "results.json").exists()


def test_probe_refuses_a_repeated_seed(capsys, tiny_encoder):
    code, _, err = run_cli(capsys, "probe", "--encoder", str(tiny_encoder), "--seeds", "0", "0")
    assert code == 2 and "--seeds gives 0 twice: give each once" in err
    code, _, err = run_cli(capsys, "probe", "--encoder", str(tiny_encoder), "--labels", "all",
                           "--seeds", "0", "1")
    assert code == 2 and "each of the 2 seeds would draw the same labels" in err


def test_probe_checks_its_options_before_reading_the_encoder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "probe", "--encoder", str(tmp_path / "no.encoder"),
                           "--seeds", "0", "0")
    assert code == 2 and "--seeds gives 0 twice" in err


def test_compare_never_writes_into_a_foreign_or_busy_folder(capsys, tmp_path):
    from lock_holder import lock_held

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "report.md").write_text("someone's notes")
    code, _, err = run_cli(capsys, "compare", "--out", str(foreign), *TINY)
    assert code == 2 and "holds files but no fewlabels run" in err
    assert (foreign / "report.md").read_text() == "someone's notes"
    busy = tmp_path / "busy"
    busy.mkdir()
    with lock_held(busy) as pid:
        code, _, err = run_cli(capsys, "compare", "--out", str(busy), *TINY)
    assert code == 2 and f"is being written by process {pid}" in err
    assert sorted(p.name for p in busy.iterdir()) == [".lock"]


def test_fit_refuses_an_existing_model_before_reading_anything(capsys, tmp_path):
    model = tmp_path / "kept.model"
    model.write_bytes(b"a model trained yesterday")
    code, _, err = run_cli(capsys, "fit", str(tmp_path / "no-such-folder"), "--out", str(model))
    assert code == 2 and "exists: pass --force to replace it" in err
    assert model.read_bytes() == b"a model trained yesterday"


def test_an_allocation_past_the_memory_is_one_line_naming_what_was_asked(capsys, monkeypatch):
    """torch's allocator raises a RuntimeError (a conv layer of 100,000 channels asked 720
    GB); a MemoryError is Python's. Either is one line and exit 2, not a traceback."""
    from fewlabels import cli

    def asks_too_much(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 720000000000 bytes.")

    monkeypatch.setattr(cli, "_cmd_methods", asks_too_much)
    code, _, err = run_cli(capsys, "methods")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("fewlabels: error: out of memory (asked 670.6 GiB): lower the batch")
    assert cli.out_of_memory(MemoryError()) == ""
    assert cli.out_of_memory(RuntimeError("shapes do not match")) is None  # not ours to hide
