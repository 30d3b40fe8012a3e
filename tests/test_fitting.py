"""`fewlabels fit` then `predict`, `embed` and `export` from the command line, on an image
folder of real handwritten digits (scikit-learn's bundled 8×8 set) with broken files mixed in."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from digits_folder import add_broken_files, digits_arrays, write_digits_folder

from fewlabels.fitting import fit, stratified_split
from fewlabels.predictor import Model

# short pretraining and arms, for the test's time; the floor is what they reach with margin
FAST = ["--set", "pretrain.epochs=0.25", "--set", "pretrain.refine_rounds=1",
        "--set", "pretrain.self_label_epochs=0", "--set", "finetune.epochs=10",
        "--set", "finetune.lrs=3e-3"]
FLOOR = 0.80  # test accuracy of the chosen arm on 300 held-out digits, from 100 labels


def cli(*args, cache, check=True, stdin=None):
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "fewlabels", *map(str, args)], env=env,
                       capture_output=True, text=True, input=stdin, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr[-2000:]}")
    return r


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    counts = write_digits_folder(root)
    broken = add_broken_files(root)
    cache = tmp_path_factory.mktemp("cache")
    model = root.parent / "digits.model"
    r = cli("fit", root, "--out", model, "--quick", "--arms", "probe", "finetune", *FAST,
            cache=cache)
    return {"root": root, "counts": counts, "broken": broken, "cache": cache, "model": model,
            "fit": r}


def test_fit_skips_the_broken_files_and_uses_the_others(fitted):
    err = fitted["fit"].stderr
    for name, readable in fitted["broken"].items():
        assert (name in err) is not readable, name
    assert "skipped 3 file(s)" in err
    model = Model.load(fitted["model"])
    # 100 labeled digits plus the RGBA and the 16-bit one
    assert model.meta["labeled_images"] == fitted["counts"]["labeled"] + 2
    assert model.meta["unlabeled_images"] == fitted["counts"]["unlabeled"]
    assert model.image_shape == (1, 8, 8)  # grey, as most of the images are
    assert model.shifts == 0  # the default's auto: 8×8 views move under a pixel


def test_fit_then_predict_from_the_cli_beats_the_floor(fitted):
    model = Model.load(fitted["model"])
    assert model.meta["arm"] in ("probe", "finetune")
    assert set(model.meta["validation_accuracy"]) == {"probe", "finetune"}
    r = cli("predict", fitted["model"], fitted["root"] / "test", "--format", "json",
            cache=fitted["cache"])
    rows = json.loads(r.stdout)
    assert len(rows) == fitted["counts"]["test"]
    accuracy = np.mean([Path(row["file"]).parent.name == row["class"] for row in rows])
    assert accuracy >= FLOOR
    assert accuracy == pytest.approx(model.meta["test_accuracy"], abs=1e-6)
    assert f"test accuracy {accuracy:.4f}" in fitted["fit"].stdout


def test_predict_reports_each_unreadable_file_and_exits_1(fitted):
    folder = fitted["root"] / "labeled" / "3"
    r = cli("predict", fitted["model"], folder / "empty.png", folder / "rgba.png",
            folder / "missing.png", "--format", "csv", "--top-k", "2", cache=fitted["cache"],
            check=False)
    assert r.returncode == 1
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "file,class,probability,top1_class,top1_probability,top2_class," \
                       "top2_probability"
    assert len(lines) == 2 and lines[1].startswith(str(folder / "rgba.png"))
    assert "empty.png: empty file" in r.stderr and "missing.png: cannot open" in r.stderr


def test_predict_reads_paths_from_stdin_and_refuses_a_bad_top_k(fitted):
    files = sorted((fitted["root"] / "test" / "7").glob("*.png"))[:3]
    r = cli("predict", fitted["model"], "-", cache=fitted["cache"],
            stdin="".join(f"{f}\n" for f in files))
    assert [line.split()[0] for line in r.stdout.splitlines()] == [str(f) for f in files]
    r = cli("predict", fitted["model"], files[0], "--top-k", "11", cache=fitted["cache"],
            check=False)
    assert r.returncode == 2 and "--top-k 11 is out of range: use 1..10" in r.stderr


def test_embed_writes_features_in_input_order_with_the_file_list(fitted, tmp_path):
    files = sorted((fitted["root"] / "test" / "1").glob("*.png"))[:5]
    out = tmp_path / "features.npy"
    cli("embed", fitted["model"], *reversed(files), "--out", out, cache=fitted["cache"])
    feats = np.load(out)
    listed = (tmp_path / "features.files.txt").read_text().split()
    assert listed == [str(f) for f in reversed(files)]
    model = Model.load(fitted["model"])
    direct, _, _ = model.embed([str(f) for f in reversed(files)])
    assert feats.shape == (5, model.net.encoder.num_features)
    np.testing.assert_allclose(feats, direct, rtol=0, atol=1e-6)


def test_export_onnx_matches_pytorch(fitted, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    out = tmp_path / "digits.onnx"
    folders = [fitted["root"] / "test", fitted["root"] / "unlabeled"]  # 1,697 real digits
    r = cli("export", fitted["model"], "--onnx", out, "--check", *folders,
            cache=fitted["cache"])
    assert "matches PyTorch on 1697 real images" in r.stdout
    model = Model.load(fitted["model"])
    x, files, _ = model.decode(folders)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.float().div(255).numpy()})[0]
    expected = model.predict(x).probabilities
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert np.abs(got - expected).max() < 1e-4


def test_export_onto_a_folder_is_refused_before_any_work(fitted, tmp_path):
    r = cli("export", fitted["model"], "--onnx", tmp_path, cache=fitted["cache"], check=False)
    assert r.returncode == 2 and "is a folder: give a file name" in r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


def few_labeled_digits(path) -> None:
    """The digits as an .npz without a test split, 6 labels a class, the rest unlabeled."""
    images, labels = digits_arrays()
    y = np.full(len(labels), -1)
    for c in range(10):
        y[np.flatnonzero(labels == c)[:6]] = c
    np.savez(path, x_train=images[..., None], y_train=y)


def test_fit_from_arrays_without_a_test_split_claims_no_test_accuracy(tmp_path):
    few_labeled_digits(tmp_path / "digits.npz")
    lines = []
    model = fit(tmp_path / "digits.npz", tmp_path / "d.model", arms=["supervised"],
                quick_run=True, overrides={"supervised": {"epochs": 5}}, log=lines.append,
                progress=False)
    assert model.meta["test_accuracy"] is None
    assert any("no test accuracy is claimed" in line for line in lines)
    assert Model.load(tmp_path / "d.model").classes == [str(c) for c in range(10)]
    assert not any("the CPU was shared" in line for line in lines)


def test_a_fit_that_gave_way_to_other_processes_says_so(tmp_path, monkeypatch):
    """As compare does: its figures may differ from a run alone. Only this fit's times
    count (the count is the process's: an earlier run in it does not)."""
    from fewlabels import fitting

    few_labeled_digits(tmp_path / "digits.npz")
    counts = iter([5, 7])  # 5 before this fit (an earlier run), 7 after
    monkeypatch.setattr(fitting, "times_lowered", lambda: next(counts))
    lines = []
    fit(tmp_path / "digits.npz", arms=["supervised"], quick_run=True,
        overrides={"supervised": {"epochs": 2}}, log=lines.append, progress=False)
    assert lines[-1].startswith("the CPU was shared: this run went down to one thread 2 "
                                "time(s) for other processes")


@pytest.mark.parametrize("refit", [False, True])
def test_the_test_split_is_not_read_before_the_final_model(tmp_path, monkeypatch, refit):
    """Every arm gets the data with its test split withheld (any read raises); the model
    kept is the candidate scored, or with ``refit`` its arm trained again on every label."""
    from fewlabels import fitting as fit_module
    from fewlabels.data import Withheld

    seen = []
    real = fit_module.ARMS

    class Spy(dict):
        def __getitem__(self, name):
            arm = real[name]

            class Wrapped:
                pretrained = arm.pretrained
                section = arm.section

                @staticmethod
                def run(ctx, settings):
                    seen.append((isinstance(ctx.data.test_images, Withheld),
                                 len(ctx.data.train_images), len(ctx.labeled)))
                    return arm.run(ctx, settings)

            return Wrapped

    monkeypatch.setattr(fit_module, "ARMS", Spy())
    images, labels = digits_arrays()
    y = np.where(np.arange(len(labels)) % 10 == 0, labels, -1)
    np.savez(tmp_path / "d.npz", x_train=images[:1500], y_train=y[:1500],
             x_test=images[1500:], y_test=labels[1500:])
    model = fit(tmp_path / "d.npz", arms=["supervised"], quick_run=True,
                overrides={"supervised": {"epochs": 3}}, log=lambda m: None, progress=False,
                refit=refit)
    # the candidate trains on the labels less the held-out ones, in a pool without them;
    # with refit, the chosen arm again on all of them in the whole pool
    y_train = torch.as_tensor(y[:1500])
    labeled = (y_train >= 0).nonzero().flatten()
    train, val = stratified_split(y_train, labeled, 0.2, 0)
    assert len(val) > 20
    candidate = [(True, 1500 - len(val), len(train))]
    assert seen == candidate + ([(True, 1500, len(labeled))] if refit else [])
    assert model.meta["training_labels"] == (len(labeled) if refit else len(train))
    assert model.meta["refit"] is refit
    assert model.meta["test_accuracy"] is not None


def test_without_images_drops_the_held_out_images_and_renumbers_the_rest():
    from fewlabels.data import Dataset
    from fewlabels.fitting import without_images

    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)
    ds = Dataset("toy", images, torch.tensor([0, -1, 1, -1, 0, 1, -1, 0]), images[:0],
                 torch.zeros(0, dtype=torch.long), ["a", "b"])
    smaller, train = without_images(ds, torch.tensor([2, 4]), torch.tensor([0, 5, 7]))
    assert smaller.train_images.flatten().tolist() == [0, 1, 3, 5, 6, 7]
    assert smaller.train_labels.tolist() == [0, -1, -1, 1, -1, 0]
    assert smaller.train_images[train].flatten().tolist() == [0, 5, 7]


def test_stratified_split_holds_out_a_fraction_of_each_class():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1 + [-1] * 4)
    labeled = (labels >= 0).nonzero().flatten()
    train, val = stratified_split(labels, labeled, 0.2, seed=0)
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    assert sorted(train.tolist() + val.tolist()) == labeled.tolist()
    again = stratified_split(labels, labeled, 0.2, seed=0)
    assert torch.equal(again[1], val)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": 2**70}, "--seed=1180591620717411303424 is out of range"),
    ({"seed": -3}, "--seed=-3 is out of range"),
    ({"arms": ["probe", "probe"]}, "--arms gives 'probe' twice"),
])
def test_fit_refuses_a_bad_seed_or_a_repeated_arm_before_reading_data(tmp_path, kwargs,
                                                                      message):
    from fewlabels.errors import UsageError

    with pytest.raises(UsageError, match=message):
        fit(tmp_path / "never-read", **kwargs)


def test_an_interrupted_fit_resumes_its_pretraining(tmp_path, monkeypatch):
    import signal

    import fewlabels.pretrain as pre

    images, labels = digits_arrays()
    y = np.where(np.arange(len(labels)) % 10 == 0, labels, -1)
    np.savez(tmp_path / "d.npz", x_train=images[:600], y_train=y[:600])
    out = tmp_path / "d.model"
    options = dict(arms=["probe"], quick_run=True, progress=False,
                   overrides={"pretrain": {"epochs": 0.2, "refine_epochs": 0,
                                           "self_label_epochs": 0}})
    real, steps = pre.loop, {"n": 0}

    def interrupted(params, loss_fn, batches, **kw):
        def loss(idx):
            steps["n"] += 1
            if steps["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # saved after this step, then stops
            return loss_fn(idx)
        return real(params, loss, batches, **kw)

    monkeypatch.setattr(pre, "loop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "d.npz", out, log=lambda m: None, **options)
    state = tmp_path / "d.model.pretraining-state"
    assert state.exists() and not out.exists()
    monkeypatch.setattr(pre, "loop", real)
    said = []
    fit(tmp_path / "d.npz", out, log=said.append, **options)
    assert any("resuming the interrupted pretraining" in line for line in said)
    assert out.exists() and not state.exists()



def test_fit_killed_during_pretraining_ends_with_the_same_model(tmp_path):
    import signal
    import time

    images, labels = digits_arrays()
    y = np.where(np.arange(len(labels)) % 10 == 0, labels, -1)
    np.savez(tmp_path / "d.npz", x_train=images[:600], y_train=y[:600])
    sets = ["--set", "pretrain.epochs=0.3", "--set", "pretrain.refine_epochs=0",
            "--set", "pretrain.self_label_epochs=0", "--set", "pretrain.encoder_options.width=8"]

    def command(out):
        return [sys.executable, "-m", "fewlabels", "fit", str(tmp_path / "d.npz"), "--out",
                str(out), "--arms", "probe", "--quick", "--save-every", "2", "--device", "cpu",
                "--precision", "fp32", *sets]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = tmp_path / "whole" / "d.model"  # the same name: a model records its own
    subprocess.run(command(whole), env=env, check=True, capture_output=True, timeout=300)
    cut = tmp_path / "cut" / "d.model"
    state = tmp_path / "cut" / "d.model.pretraining-state"
    proc = subprocess.Popen(command(cut), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no clean-up runs: the last save stands
    proc.wait(timeout=60)
    assert state.exists() and not cut.exists(), "killed during pretraining, its state on disk"
    r = subprocess.run(command(cut), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "resuming the interrupted pretraining" in r.stdout + r.stderr
    assert not state.exists()
    assert cut.read_bytes() == whole.read_bytes()


def test_an_arm_the_held_out_labels_cannot_separate_is_decided_by_validation_loss():
    from fewlabels.fitting import choose_arm

    every = torch.ones(20, dtype=torch.bool)
    losses = {"probe": 0.30, "finetune": 0.12, "semisupervised": 0.05, "supervised": 0.40}
    best, why = choose_arm({a: every for a in losses}, losses)
    assert best == "semisupervised"  # a four-way tie at 1.0 goes to the lowest loss
    assert "cannot be told apart on 20 held-out images" in why and "0.0500" in why
    # one wrong image out of 20 does not separate an arm either
    one_wrong = every.clone()
    one_wrong[3] = False
    best, _ = choose_arm({"probe": every, "semisupervised": one_wrong},
                         {"probe": 0.3, "semisupervised": 0.05})
    assert best == "semisupervised"


def test_an_arm_on_the_labels_alone_wins_a_tie_only_without_an_arm_that_learns_from_the_pool():
    from fewlabels.fitting import choose_arm

    every = torch.ones(20, dtype=torch.bool)
    losses = {"probe": 0.30, "semisupervised": 0.20, "supervised": 0.10}
    best, why = choose_arm({a: every for a in losses}, losses,
                           unlabeled_arms=["probe", "semisupervised"])
    assert best == "semisupervised"
    assert "lowest validation loss among the arms that learn from the unlabeled" in why
    best, _ = choose_arm({"supervised": every, "probe": every},
                         {"supervised": 0.1, "probe": 0.3}, unlabeled_arms=[])
    assert best == "supervised"  # nothing to prefer: the loss decides


def test_an_arm_the_held_out_labels_separate_wins_whatever_its_loss():
    from fewlabels.fitting import choose_arm

    probe = torch.arange(200) < 190  # 0.95
    supervised = torch.arange(200) < 150  # 0.75: 40 images where only the probe is right
    best, why = choose_arm({"supervised": supervised, "probe": probe},
                           {"supervised": 0.01, "probe": 0.5})
    assert best == "probe" and "separable on the 200 held-out images" in why
    # one arm given: nothing to separate it from, and the reason says so
    best, why = choose_arm({"probe": probe}, {"probe": 0.5})
    assert best == "probe" and why.startswith("the only arm given") and "separable" not in why


@pytest.mark.parametrize("pool, scale", [(60_000, 1.0), (20_000, 3.0), (1_500, 16.0)])
def test_a_small_pool_gets_more_epochs_up_to_the_cap(pool, scale):
    from fewlabels.config import load_preset
    from fewlabels.data import Dataset
    from fewlabels.fitting import adapt

    images = torch.zeros(pool, 1, 8, 8, dtype=torch.uint8)
    ds = Dataset("toy", images, torch.full((pool,), -1), images[:0],
                 torch.zeros(0, dtype=torch.long), ["a", "b", "c"])
    recipe = load_preset("default").pretrain
    cfg = adapt(load_preset("default"), ds)
    assert cfg.pretrain.epochs == pytest.approx(recipe.epochs * scale)
    assert cfg.pretrain.refine_epochs == round(recipe.refine_epochs * scale)
    assert cfg.pretrain.refine_options["clusters"] == 3
    assert cfg.shifts == 0  # auto, resolved: 8×8 views move under a pixel (``shifts``)


def test_shifts_auto_is_resolved_for_the_images_size():
    from fewlabels.config import load_preset
    from fewlabels.data import Dataset
    from fewlabels.fitting import adapt

    for side, shifts in ((8, 0), (28, 1)):
        images = torch.zeros(100, 1, side, side, dtype=torch.uint8)
        ds = Dataset("toy", images, torch.full((100,), -1), images[:0],
                     torch.zeros(0, dtype=torch.long), ["a", "b"])
        assert adapt(load_preset("default"), ds).shifts == shifts


def test_a_second_fit_onto_the_same_model_file_is_refused_before_any_work(tmp_path):
    """Two fits onto one --out would share one pretraining state and replace each other's
    model: the second is refused, naming the process that writes it, before reading data."""
    from fewlabels.errors import UsageError
    from lock_holder import start_holder

    model = tmp_path / "m.model"
    other = start_holder(model, tmp_path / "never", kind="file")
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=f"'{model}' is being written by process "
                                             f"{other.pid}"):
            fit(tmp_path / "no-such-folder", model)
    finally:
        other.kill()
        other.wait()
    assert not model.exists()
