"""The notebook's API: ``AutoEncoder`` and ``Classifier``.

The seed notebook's cells run unchanged against these classes (only its import line
changes to ``from fewlabels import AutoEncoder, Classifier``)::

    auto_encoder = AutoEncoder(train_size=0.8, device="cpu", latent_size=10, lr=0.003)
    auto_encoder.train(2000, batch=0.05, plot_stats=True)
    auto_encoder.save("model")                      # writes model.autoencoder
    classifier = Classifier(train_size=0.01, device="cpu", latent_size=10, lr=0.002)
    classifier.train(epochs=700, batch=0.4, plot_stats=True, optimize_encoder=True)
    tuned = auto_encoder.to_classifier(train_size=0.01, lr=0.05)
    tuned.train(epochs=700, batch=.5, plot_stats=True, optimize_encoder=False)
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .classifiers import (
    ProbeConfig,
    SupervisedConfig,
    features,
    linear_probe,
    new_classifier,
    train_classifier,
)
from .data import Dataset, as_float, draw_labels, load_dataset, parse_label_budget
from .encoders import build_encoder
from .errors import UsageError, check_epochs, check_positive
from .predictor import KIND as MODEL_KIND
from .predictor import model_meta
from .pretrain import PretrainConfig, build_method, encoder_meta, pretrain
from .runtime import resolve
from .train import History, batch_size, steps_per_epoch

DEFAULT_HIDDEN = (512, 128)


def _dataset(dataset: str | Dataset, data_dir) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)


def _saved_dataset(meta: dict, dataset, data_dir) -> str | Dataset:
    """The dataset a checkpoint was trained on, from the cache or ``data_dir`` only: its
    metadata never starts a download or a generation (``dataset`` overrides it)."""
    if dataset is not None:
        return dataset
    return load_dataset(meta["dataset"], data_dir, download=False)


def _show(fig, path):
    from . import plots

    return plots.show(fig, path)


def _checkpoint_path(name: str | Path, kind: str) -> Path:
    path = Path(name)
    return path if path.suffix == f".{kind}" else path.with_name(f"{path.name}.{kind}")


class AutoEncoder:
    """An MLP autoencoder pretrained on the unlabeled pool (all training images): the
    library's ``mlp`` encoder and ``autoencoder`` method, trained by ``pretrain``.

    Args:
        train_size: fraction of the unlabeled pool used for training, in (0, 1]; the rest
            is a validation split whose reconstruction loss is logged (``val_loss``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        latent_size: width of the code layer (the encoder's ``num_features``).
        lr: Adam learning rate.
        hidden: widths of the hidden layers, encoder side (the decoder mirrors them).
        dataset: a dataset name (``"mnist"``, ``"fashion-mnist"``) or a loaded ``Dataset``.
        data_dir: a folder holding the dataset's IDX files (else the cache is used).
        seed: seeds the weights, the validation split and the batch order.
        precision: ``"auto"`` (bf16 where fast), ``"bf16"``, ``"fp16"`` (CUDA) or ``"fp32"``.
    """

    KIND = "autoencoder"

    def __init__(self, train_size: float = 0.8, device: str = "cpu", latent_size: int = 10,
                 lr: float = 0.003, *, hidden: Sequence[int] = DEFAULT_HIDDEN,
                 dataset: str | Dataset = "mnist", data_dir: str | Path | None = None,
                 seed: int = 0, precision: str = "auto"):
        check_positive("lr", lr)
        check_positive("latent_size", latent_size, integer=True)
        if not 0 < train_size <= 1:
            raise UsageError(f"train_size={train_size!r} is out of range: use a fraction "
                             "in (0, 1]")
        self.runtime = resolve(device, precision)
        self.dataset = _dataset(dataset, data_dir)
        self.config = {"train_size": train_size, "latent_size": int(latent_size), "lr": lr,
                       "hidden": [int(h) for h in hidden], "seed": int(seed)}
        self.recipe = PretrainConfig(
            method="autoencoder", encoder="mlp",
            encoder_options={"hidden": self.config["hidden"], "latent_size": int(latent_size)},
            val_fraction=1 - train_size, lr=lr, weight_decay=0.0, schedule="constant",
            seed=int(seed)).validate()
        self.encoder, self.method = build_method(self.recipe, self.dataset.image_shape,
                                                 self.runtime.device)
        self.history = History()

    @property
    def decoder(self) -> torch.nn.Module:
        return self.method.decoder

    @property
    def device(self) -> str:
        return self.runtime.device.type

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or [0, 1] float images → reconstructions, float in [0, 1]."""
        x = images.to(self.runtime.device)
        x = as_float(x) if x.dtype == torch.uint8 else x.float()
        self.method.eval()
        with torch.no_grad(), self.runtime.autocast():
            return self.decoder(self.encoder(x)).float().view_as(x).clamp(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images → (N, latent_size) float32 features."""
        return features(self.encoder, images, self.runtime)

    def train(self, steps: int = 2000, batch: int | float = 0.05, plot_stats: bool = False,
              progress: bool = True) -> History:
        """Train for ``steps`` Adam steps on batches of ``batch`` images.

        ``batch``: an int is a batch size, a float in (0, 1] a fraction of the training
        split (the notebook's 0.05 of 48,000 images = 2,400). Minimises the mean squared
        reconstruction error. Returns the logged history (also in ``self.history``).
        """
        check_positive("steps", steps, integer=True)
        n = len(self.dataset.train_images)
        n_train = n - round(self.recipe.val_fraction * n)
        self.recipe.batch = batch_size(batch, n_train)
        self.recipe.epochs = steps / steps_per_epoch(n_train, self.recipe.batch)
        _, _, self.history = pretrain(self.dataset, self.recipe, self.runtime,
                                      progress=progress, method=self.method)
        if plot_stats:
            self.plot_stats()
        return self.history

    def plot_stats(self, path: str | Path | None = None):
        """Training and validation reconstruction loss against the step."""
        from . import plots

        series = {k: self.history.series(k) for k in ("loss", "val_loss")}
        series = {k: v for k, v in series.items() if v[0]}
        if not series:
            raise UsageError("no statistics to plot yet: call train() first")
        return _show(plots.curves(series, "autoencoder"), path)

    def plot_predictions(self, n: int = 10, path: str | Path | None = None):
        """The first ``n`` test images beside their reconstructions."""
        from . import plots

        x = as_float(self.dataset.test_images[:n])
        fig = plots.reconstructions(x, self.reconstruct(x).cpu(), "autoencoder reconstructions")
        return _show(fig, path)

    def to_classifier(self, train_size: float | int | str = 0.01, lr: float = 0.05,
                      **kwargs) -> Classifier:
        """A ``Classifier`` made of a copy of this encoder plus one new linear layer.

        Train it with ``optimize_encoder=False`` for a frozen linear probe. Other keyword
        arguments (``seed``, ``labeled``, ``label_sampling``, ``dataset``) go to Classifier.
        """
        kwargs.setdefault("dataset", self.dataset)
        kwargs.setdefault("precision", self.runtime.precision)
        return Classifier(train_size=train_size, device=self.device,
                          latent_size=self.config["latent_size"], lr=lr,
                          hidden=self.config["hidden"], encoder=copy.deepcopy(self.encoder),
                          **kwargs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"encoder.{k}": v for k, v in self.encoder.state_dict().items()},
                **{f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}}

    def save(self, name: str | Path) -> Path:
        """Write ``<name>.autoencoder`` (safetensors + JSON metadata); returns the path.
        ``fewlabels compare --pretrained`` and ``probe --encoder`` read its encoder too."""
        meta = {**encoder_meta(self.recipe, self.dataset, self.history),
                "config": self.config, "versions": _versions()}
        return checkpoint.save(_checkpoint_path(name, self.KIND), self.state_dict(), self.KIND,
                               meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, dataset: str | Dataset | None = None,
             data_dir: str | Path | None = None, precision: str = "auto") -> AutoEncoder:
        """Load a checkpoint written by ``save``; the dataset defaults to the one it was
        trained on."""
        tensors, meta = checkpoint.load(path, cls.KIND)
        with checkpoint.rebuilding(path):
            cfg = meta["config"]
            model = cls(cfg["train_size"], device, cfg["latent_size"], cfg["lr"],
                        hidden=cfg["hidden"], dataset=_saved_dataset(meta, dataset, data_dir),
                        data_dir=data_dir, seed=cfg["seed"], precision=precision)
            model.encoder.load_state_dict({k[8:]: v for k, v in tensors.items()
                                           if k.startswith("encoder.")})
            model.decoder.load_state_dict({k[8:]: v for k, v in tensors.items()
                                           if k.startswith("decoder.")})
            model.history = History(meta.get("history", []))
        return model


def _versions() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version()}


class Classifier:
    """An encoder plus one linear layer, trained on a few labels: the library's
    from-scratch training (``optimize_encoder=True``) or its frozen linear probe.

    Args:
        train_size: the label budget: a fraction of the training set (0.01 = 600 MNIST
            labels), a count (600) or a percentage string ("1%").
        device, latent_size, lr, hidden, dataset, data_dir, seed, precision: as for
            ``AutoEncoder``; ``seed`` also picks the label draw.
        label_sampling: ``"balanced"`` (same count per class) or ``"random"``.
        labeled: explicit indices of the labeled training images (overrides the draw).
        encoder: an encoder to start from (``AutoEncoder.to_classifier`` passes its own).
    """

    KIND = "classifier"

    def __init__(self, train_size: float | int | str = 0.01, device: str = "cpu",
                 latent_size: int = 10, lr: float = 0.002, *,
                 hidden: Sequence[int] = DEFAULT_HIDDEN, dataset: str | Dataset = "mnist",
                 data_dir: str | Path | None = None, seed: int = 0,
                 label_sampling: str = "balanced", labeled: torch.Tensor | None = None,
                 encoder: torch.nn.Module | None = None, precision: str = "auto"):
        check_positive("lr", lr)
        check_positive("latent_size", latent_size, integer=True)
        self.runtime = resolve(device, precision)
        self.dataset = _dataset(dataset, data_dir)
        n = len(self.dataset.train_labels)
        if labeled is None:
            labeled = draw_labels(self.dataset.train_labels, parse_label_budget(train_size, n),
                                  seed, label_sampling)
        self.labeled = torch.as_tensor(labeled, dtype=torch.long)
        self.config = {"train_size": train_size, "latent_size": int(latent_size), "lr": lr,
                       "hidden": [int(h) for h in hidden], "seed": int(seed),
                       "label_sampling": label_sampling}
        shape = self.dataset.image_shape
        self.net = new_classifier(
            lambda: encoder or build_encoder("mlp", shape, hidden=self.config["hidden"],
                                             latent_size=int(latent_size)),
            self.dataset.num_classes, seed).to(self.runtime.device)
        self.history = History()
        self.encoder_frozen = False
        self.test_accuracy: float | None = None

    @property
    def device(self) -> str:
        return self.runtime.device.type

    @property
    def encoder(self) -> torch.nn.Module:
        return self.net.encoder

    def train(self, epochs: int = 700, batch: int | float = 0.4, plot_stats: bool = False,
              optimize_encoder: bool = True, progress: bool = True) -> History:
        """Train on the labeled subset for ``epochs`` passes with batches of ``batch``.

        ``optimize_encoder=False`` is a frozen linear probe: the encoder stays in eval
        mode with no gradient, only the linear layer learns, and afterwards its weights
        are checked to be unchanged. The test set is read once, after training, for
        ``self.test_accuracy``; nothing during training looks at it.
        """
        check_epochs("epochs", epochs, integer=True)
        images = self.dataset.train_images[self.labeled]
        labels = self.dataset.train_labels[self.labeled]
        seed, lr = self.config["seed"], self.config["lr"]
        if optimize_encoder:  # the supervised arm's training, on the notebook's settings
            cfg = SupervisedConfig(epochs=epochs, batch=batch, lrs=[lr], weight_decay=0.0,
                                   schedule="constant", augment=False, label_smoothing=0.0,
                                   cycles=1)  # exactly ``epochs``
            self.history = train_classifier(self.net, images, labels, cfg, lr, self.runtime,
                                            None, seed, progress)
        else:  # the probe arm's, with the notebook's minibatches on raw features
            cfg = ProbeConfig(epochs=epochs, lr=lr, batch=batch, weight_decays=[0.0],
                              standardize=False)
            r = linear_probe(self.net.encoder, images, labels, cfg, self.runtime, seed=seed,
                             head=self.net.head, progress=progress)
            self.net.head.load_state_dict(r["head"].state_dict())
            self.history = r["history"]
            self.encoder_frozen = True
        self.test_accuracy = self.evaluate()
        if progress:
            tqdm.write(f"test accuracy: {self.test_accuracy:.4f}")
        if plot_stats:
            self.plot_stats()
        return self.history

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or [0, 1] float images → (N,) predicted class indices."""
        feats = features(self.net.encoder, images, self.runtime)
        with torch.no_grad():
            return self.net.forward_head(feats).argmax(1).cpu()

    def evaluate(self) -> float:
        """Accuracy on the test set, a fraction in [0, 1]."""
        pred = self.predict(self.dataset.test_images)
        return (pred == self.dataset.test_labels).float().mean().item()

    def plot_stats(self, path: str | Path | None = None):
        """Training loss and accuracy on the labeled subset against the epoch."""
        if not self.history.records:
            raise UsageError("no statistics to plot yet: call train() first")
        from . import plots

        series = {k: self.history.series(k, x="epoch") for k in ("loss", "accuracy")}
        return _show(plots.curves(series, "classifier", xlabel="epoch"), path)

    def plot_predictions(self, n: int = 20, path: str | Path | None = None):
        """The first ``n`` test images with predicted and true labels (errors in red)."""
        from . import plots

        images = self.dataset.test_images[:n]
        fig = plots.predictions(as_float(images), self.predict(images).tolist(),
                                self.dataset.test_labels[:n].tolist(), self.dataset.classes,
                                "classifier predictions")
        return _show(fig, path)

    def save(self, name: str | Path) -> Path:
        """Write ``<name>.classifier``: a model file, the format ``fit`` writes (so
        ``fewlabels evaluate``, ``predict``, ``embed`` and ``export`` all take it), that also
        keeps the notebook's settings, label draw and curve; returns the path."""
        c = self.config
        meta = {**model_meta(self.dataset.classes, self.dataset.image_shape, "notebook", "mlp",
                             {"hidden": c["hidden"], "latent_size": c["latent_size"]}),
                "config": c, **self.dataset.provenance(), "data": self.dataset.provenance(),
                "history": self.history.records, "versions": _versions(),
                "labeled": self.labeled.tolist(),
                "encoder_frozen": self.encoder_frozen, "test_accuracy": self.test_accuracy}
        return checkpoint.save(_checkpoint_path(name, self.KIND), self.net.state_dict(),
                               MODEL_KIND, meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, dataset: str | Dataset | None = None,
             data_dir: str | Path | None = None, precision: str = "auto") -> Classifier:
        """Load a file written by ``save``, with its label draw."""
        tensors, meta = checkpoint.load(path, MODEL_KIND)
        if "config" not in meta or "labeled" not in meta:
            raise UsageError(f"{str(path)!r} is a model written by `fewlabels fit`, not by "
                             "Classifier.save: load it with fewlabels.Model.load")
        with checkpoint.rebuilding(path):
            cfg = meta["config"]
            model = cls(cfg["train_size"], device, cfg["latent_size"], cfg["lr"],
                        hidden=cfg["hidden"], dataset=_saved_dataset(meta, dataset, data_dir),
                        data_dir=data_dir, seed=cfg["seed"], label_sampling=cfg["label_sampling"],
                        labeled=torch.tensor(meta["labeled"]), precision=precision)
            model.net.load_state_dict(tensors)
            model.history = History(meta.get("history", []))
            model.encoder_frozen = meta.get("encoder_frozen", False)
            model.test_accuracy = meta.get("test_accuracy")
        return model
