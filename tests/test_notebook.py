"""The notebook's classes (``fewlabels.notebook``), and the seed notebook's cells run
against them with only the import line changed."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fewlabels import AutoEncoder, Classifier
from fewlabels.data import to_uint8
from fewlabels.errors import UsageError

NOTEBOOK = Path(__file__).parent.parent / "examples" / "seed_notebook.py"


def test_the_import_line_is_the_only_change():
    text = NOTEBOOK.read_text()
    assert "from fewlabels import AutoEncoder, Classifier" in text
    for call in ("AutoEncoder(", "auto_encoder.train(2000, batch=0.05, plot_stats=True)",
                 'auto_encoder.save("model")', 'AutoEncoder.load("model.autoencoder")',
                 'Classifier.load("model.classifier")',
                 "auto_encoder.to_classifier(train_size=0.01, lr=0.05)",
                 "optimize_encoder=False", "tuned_classifier.plot_predictions()"):
        assert call in text


@pytest.mark.parametrize("load_existing", [False, True])
def test_notebook_cells_run(tmp_path, monkeypatch, mnist, load_existing):
    # Real MNIST, with the notebook's epoch counts cut so the test takes seconds.
    code = NOTEBOOK.read_text()
    code = re.sub(r"\.train\(2000,", ".train(5,", code)
    code = code.replace("epochs=700", "epochs=3")
    monkeypatch.chdir(tmp_path)
    if load_existing:
        exec(compile(code, str(NOTEBOOK), "exec"), {"__name__": "__main__"})
        code = code.replace("load_existing = False", "load_existing = True")
    scope = {"__name__": "__main__"}
    exec(compile(code, str(NOTEBOOK), "exec"), scope)
    for name in ("model.autoencoder", "model.classifier", "pretrained.classifier"):
        assert (tmp_path / name).is_file()
    assert scope["tuned_classifier"].encoder_frozen
    assert scope["classifier"].test_accuracy > 0.2  # 600 labels: far above chance (0.1)
    assert len(scope["classifier"].labeled) == 600


def test_saturated_inputs_never_wrap_in_reconstructions(mnist_slice):
    ae = AutoEncoder(dataset=mnist_slice, precision="fp32")
    with torch.no_grad():  # push the decoder's pre-activations far past both ends
        last = ae.decoder.net[-1]
        last.bias.copy_(torch.linspace(-1e4, 1e4, last.bias.numel()))
    white = torch.full((4, 1, 28, 28), 255, dtype=torch.uint8)
    black = torch.zeros((4, 1, 28, 28), dtype=torch.uint8)
    for x in (white, black):
        r = ae.reconstruct(x)
        assert r.min() >= 0 and r.max() <= 1
        pix = to_uint8(r)
        # the first pixels sit at -1e4 (→ 0) and the last at +1e4 (→ 255): no wrap-around
        assert pix.reshape(4, -1)[:, 0].max() == 0 and pix.reshape(4, -1)[:, -1].min() == 255


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5, 1.0 + 1e-7])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]
    assert to_uint8(x).dtype == np.uint8


def test_autoencoder_training_lowers_validation_loss(mnist_slice):
    ae = AutoEncoder(dataset=mnist_slice, lr=0.003, precision="fp32")
    history = ae.train(60, batch=0.1, progress=False)
    _, val = history.series("val_loss")
    assert val[-1] < 0.75 * val[0]


def test_frozen_probe_leaves_the_encoder_unchanged(mnist_slice):
    ae = AutoEncoder(dataset=mnist_slice, precision="fp32")
    ae.train(20, batch=0.1, progress=False)
    before = {k: v.clone() for k, v in ae.encoder.state_dict().items()}
    clf = ae.to_classifier(train_size=200, lr=0.05)
    clf.train(epochs=5, batch=0.5, optimize_encoder=False, progress=False)
    assert clf.encoder_frozen
    assert not clf.encoder.training
    assert all(not p.requires_grad for p in clf.encoder.parameters())
    for k, v in clf.encoder.state_dict().items():
        assert torch.equal(v, before[k])
    # the reported accuracy is that of the trained classifier's own predictions
    truth = mnist_slice.test_labels
    assert clf.test_accuracy == pytest.approx(
        (clf.predict(mnist_slice.test_images) == truth).float().mean().item())
    # the autoencoder's own encoder is a separate copy
    assert clf.encoder is not ae.encoder


def test_supervised_classifier_learns_its_labels(mnist_slice):
    clf = Classifier(train_size=300, dataset=mnist_slice, lr=0.002, precision="fp32")
    history = clf.train(epochs=30, batch=0.4, progress=False)
    _, acc = history.series("accuracy")
    assert acc[-1] > 0.9 and acc[-1] > acc[0]
    assert clf.test_accuracy > 0.5  # 300 labels are far better than chance (0.1)


def test_classifier_uses_a_balanced_draw_of_the_budget(mnist_slice):
    clf = Classifier(train_size=0.05, dataset=mnist_slice)
    assert len(clf.labeled) == 100
    assert torch.bincount(mnist_slice.train_labels[clf.labeled]).tolist() == [10] * 10


def test_save_load_round_trip(mnist_slice, tmp_path):
    ae = AutoEncoder(dataset=mnist_slice, latent_size=6, precision="fp32")
    ae.train(3, batch=64, progress=False)
    path = ae.save(tmp_path / "m")
    assert path.name == "m.autoencoder"
    back = AutoEncoder.load(path, dataset=mnist_slice, precision="fp32")
    x = mnist_slice.test_images[:8]
    assert torch.equal(back.encode(x), ae.encode(x))
    assert back.history.records == ae.history.records

    clf = ae.to_classifier(train_size=100, lr=0.05, seed=4)
    clf.train(epochs=2, optimize_encoder=False, progress=False)
    cpath = clf.save(tmp_path / "p")
    again = Classifier.load(cpath, dataset=mnist_slice, precision="fp32")
    assert torch.equal(again.labeled, clf.labeled)
    assert torch.equal(again.predict(x), clf.predict(x))
    assert again.encoder_frozen and again.test_accuracy == clf.test_accuracy


def test_loading_the_wrong_kind_is_refused(mnist_slice, tmp_path):
    path = AutoEncoder(dataset=mnist_slice).save(tmp_path / "m")
    with pytest.raises(UsageError, match="holds a checkpoint of kind 'autoencoder', not "
                                         "'model': .fewlabels fit. writes .model files"):
        Classifier.load(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr=0"), ({"lr": -1e-3}, "lr=-0.001"), ({"latent_size": 0}, "latent_size=0"),
    ({"train_size": 0}, "label budget 0")])
def test_bad_arguments_name_the_value(mnist_slice, kwargs, message):
    with pytest.raises(UsageError, match=message):
        Classifier(dataset=mnist_slice, **kwargs)


def test_plots_are_figures(mnist_slice, tmp_path):
    ae = AutoEncoder(dataset=mnist_slice)
    with pytest.raises(UsageError, match="train"):
        ae.plot_stats()
    ae.train(5, batch=64, progress=False)
    ae.plot_stats(tmp_path / "s.png")
    ae.plot_predictions(path=tmp_path / "p.png")
    clf = Classifier(train_size=100, dataset=mnist_slice)
    clf.train(epochs=2, progress=False)
    clf.plot_stats(tmp_path / "c.png")
    clf.plot_predictions(path=tmp_path / "cp.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("s.png", "p.png", "c.png", "cp.png"))


def test_loading_never_downloads_the_dataset_its_metadata_names(mnist_slice, tmp_path,
                                                               monkeypatch):
    import dataclasses

    from fewlabels.errors import DataError

    ae = AutoEncoder(dataset=dataclasses.replace(mnist_slice, name="mnist"))
    path = ae.save(tmp_path / "m")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("FEWLABELS_DATA", raising=False)
    with pytest.raises(DataError, match="not in the cache .*fewlabels data fetch mnist"):
        AutoEncoder.load(path)
    assert not (tmp_path / "empty-cache" / "fewlabels" / "mnist").exists()


def test_a_notebook_classifier_is_a_model_file_every_command_takes(mnist, mnist_slice,
                                                                   tmp_path, capsys):
    import dataclasses
    import json

    from fewlabels import Model
    from fewlabels.cli import main

    named = dataclasses.replace(mnist_slice, name="mnist")  # evaluate reads MNIST's test set
    clf = Classifier(train_size=100, dataset=named, precision="fp32", seed=1)
    clf.train(epochs=5, progress=False)
    path = clf.save(tmp_path / "nb")
    assert path.name == "nb.classifier"
    model = Model.load(path)  # what predict, embed and export load
    x = mnist.test_images[:64]
    assert model.predict(x).probabilities.argmax(1).tolist() == clf.predict(x).tolist()
    assert main(["evaluate", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = (clf.predict(mnist.test_images) == mnist.test_labels).float().mean().item()
    assert out["dataset"] == "mnist" and out["labels"] == 100
    assert out["test_accuracy"] == pytest.approx(expected, abs=1e-4)


def test_a_fit_model_or_an_older_classifier_file_is_refused_with_the_fix(mnist_slice,
                                                                         tmp_path):
    from fewlabels import checkpoint
    from fewlabels.predictor import model_meta

    fitted = checkpoint.save(tmp_path / "f.model", {"w": torch.zeros(1)}, "model",
                             model_meta(["a", "b"], (1, 28, 28), "probe", "conv", {}))
    with pytest.raises(UsageError, match="written by `fewlabels fit`.*Model.load"):
        Classifier.load(fitted)
    old = checkpoint.save(tmp_path / "old.classifier", {"w": torch.zeros(1)}, "classifier",
                          {})
    with pytest.raises(UsageError, match="classifiers are now saved as model files"):
        Classifier.load(old)
