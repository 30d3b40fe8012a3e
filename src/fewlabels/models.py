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

import contextlib
import copy
import platform
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint, plots
from .data import Dataset, as_float, draw_labels, load_dataset, parse_label_budget, split_indices
from .encoders import ClassifierNet, MLPDecoder, MLPEncoder
from .errors import UsageError, check_positive
from .evaluate import features
from .runtime import resolve
from .train import History, batch_size, fit, shuffled_batches, steps_per_epoch

DEFAULT_HIDDEN = (512, 128)


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _dataset(dataset: str | Dataset, data_dir) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)


def _meta(obj, config: dict) -> dict:
    ds = obj.dataset
    return {"config": config, "dataset": ds.name, "data_sha256": ds.sha256,
            "image_shape": list(ds.image_shape), "history": obj.history.records,
            "versions": {"torch": torch.__version__, "python": platform.python_version()}}


def _checkpoint_path(name: str | Path, kind: str) -> Path:
    path = Path(name)
    return path if path.suffix == f".{kind}" else path.with_name(f"{path.name}.{kind}")


class AutoEncoder:
    """An MLP autoencoder pretrained on the unlabeled pool (all training images).

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
        self.runtime = resolve(device, precision)
        self.dataset = _dataset(dataset, data_dir)
        self.config = {"train_size": train_size, "latent_size": int(latent_size), "lr": lr,
                       "hidden": [int(h) for h in hidden], "seed": int(seed)}
        pool = torch.arange(len(self.dataset.train_images))
        self.train_indices, self.val_indices = split_indices(pool, train_size, seed)
        shape = self.dataset.image_shape
        with seeded(seed):
            self.encoder = MLPEncoder(shape, hidden, latent_size).to(self.runtime.device)
            self.decoder = MLPDecoder(shape, hidden, latent_size).to(self.runtime.device)
        self.history = History()
        self._images = None

    @property
    def device(self) -> str:
        return self.runtime.device.type

    def _pool(self) -> torch.Tensor:
        if self._images is None:  # the whole pool as one float tensor on the device
            self._images = as_float(self.dataset.train_images.to(self.runtime.device))
        return self._images

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or [0, 1] float images → reconstructions, float in [0, 1]."""
        x = images.to(self.runtime.device)
        x = as_float(x) if x.dtype == torch.uint8 else x.float()
        self.encoder.eval()
        self.decoder.eval()
        with torch.no_grad(), self.runtime.autocast():
            return self.decoder(self.encoder(x)).float().clamp(0, 1)

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
        pool = self._pool()
        size = batch_size(batch, len(self.train_indices))
        gen = torch.Generator().manual_seed(self.config["seed"])
        batches = shuffled_batches(self.train_indices, size, gen)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.encoder.train()
        self.decoder.train()

        def loss_fn(idx):
            x = pool[idx.to(pool.device)]
            return F.mse_loss(self.decoder(self.encoder(x)), x), {}

        val = self.val_indices[:10000].to(pool.device)

        def evaluate():
            if len(val) == 0:
                return {}
            x = pool[val]
            return {"val_loss": F.mse_loss(self.reconstruct(x), x).item()}

        self.history = fit(params, loss_fn, batches, steps=steps, lr=self.config["lr"],
                           runtime=self.runtime, log_every=max(1, steps // 200),
                           evaluate=evaluate, eval_every=max(1, steps // 20),
                           desc="autoencoder")
        if plot_stats:
            self.plot_stats()
        return self.history

    def plot_stats(self, path: str | Path | None = None):
        """Training and validation reconstruction loss against the step."""
        series = {k: self.history.series(k) for k in ("loss", "val_loss")}
        series = {k: v for k, v in series.items() if v[0]}
        if not series:
            raise UsageError("no statistics to plot yet: call train() first")
        return plots.show(plots.curves(series, "autoencoder"), path)

    def plot_predictions(self, n: int = 10, path: str | Path | None = None):
        """The first ``n`` test images beside their reconstructions."""
        x = as_float(self.dataset.test_images[:n])
        fig = plots.reconstructions(x, self.reconstruct(x).cpu(), "autoencoder reconstructions")
        return plots.show(fig, path)

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
        """Write ``<name>.autoencoder`` (safetensors + JSON metadata); returns the path."""
        return checkpoint.save(_checkpoint_path(name, self.KIND), self.state_dict(), self.KIND,
                               _meta(self, self.config))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, dataset: str | Dataset | None = None,
             data_dir: str | Path | None = None, precision: str = "auto") -> AutoEncoder:
        """Load a checkpoint written by ``save``; the dataset defaults to the one it was
        trained on."""
        tensors, meta = checkpoint.load(path, cls.KIND)
        cfg = meta["config"]
        model = cls(cfg["train_size"], device, cfg["latent_size"], cfg["lr"],
                    hidden=cfg["hidden"], dataset=dataset or meta["dataset"],
                    data_dir=data_dir, seed=cfg["seed"], precision=precision)
        model.encoder.load_state_dict({k[8:]: v for k, v in tensors.items()
                                       if k.startswith("encoder.")})
        model.decoder.load_state_dict({k[8:]: v for k, v in tensors.items()
                                       if k.startswith("decoder.")})
        model.history = History(meta.get("history", []))
        return model


class Classifier:
    """An encoder plus one linear layer, trained on a few labels.

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
        with seeded(seed):
            encoder = encoder or MLPEncoder(self.dataset.image_shape, hidden, latent_size)
            self.net = ClassifierNet(encoder, self.dataset.num_classes).to(self.runtime.device)
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
        check_positive("epochs", epochs, integer=True)
        rt = self.runtime
        n = len(self.labeled)
        size = batch_size(batch, n)
        per_epoch = steps_per_epoch(n, size)
        y = self.dataset.train_labels[self.labeled].to(rt.device)
        images = self.dataset.train_images[self.labeled]
        encoder = self.net.encoder
        if optimize_encoder:
            encoder.requires_grad_(True)
            self.net.train()
            x = as_float(images.to(rt.device))
            params = list(self.net.parameters())

            def forward(idx):
                return self.net(x[idx])
        else:
            encoder.requires_grad_(False)
            before = {k: v.clone() for k, v in encoder.state_dict().items()}
            feats = features(encoder, images, rt)  # eval mode, no grad: computed once
            encoder.eval()
            self.net.head.train()
            params = list(self.net.head.parameters())

            def forward(idx):
                return self.net.forward_head(feats[idx])

        def loss_fn(idx):
            idx = idx.to(rt.device)
            logits = forward(idx).float()
            acc = (logits.argmax(1) == y[idx]).float().mean().item()
            return F.cross_entropy(logits, y[idx]), {"accuracy": acc}

        gen = torch.Generator().manual_seed(self.config["seed"])
        history = fit(params, loss_fn, shuffled_batches(torch.arange(n), size, gen),
                      steps=epochs * per_epoch, lr=self.config["lr"], runtime=rt,
                      log_every=per_epoch, desc="probe" if not optimize_encoder else "classifier",
                      progress=progress)
        for r in history.records:
            r["epoch"] = r["step"] / per_epoch
        self.history = history
        if not optimize_encoder:
            after = encoder.state_dict()
            changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
            if changed:
                raise RuntimeError(f"the frozen encoder changed during probe training: {changed}")
            self.encoder_frozen = True
        self.test_accuracy = self.evaluate()
        if progress:
            tqdm.write(f"test accuracy: {self.test_accuracy:.4f}")
        if plot_stats:
            self.plot_stats()
        return history

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
        series = {k: self.history.series(k, x="epoch") for k in ("loss", "accuracy")}
        return plots.show(plots.curves(series, "classifier", xlabel="epoch"), path)

    def plot_predictions(self, n: int = 20, path: str | Path | None = None):
        """The first ``n`` test images with predicted and true labels (errors in red)."""
        images = self.dataset.test_images[:n]
        fig = plots.predictions(as_float(images), self.predict(images).tolist(),
                                self.dataset.test_labels[:n].tolist(), self.dataset.classes,
                                "classifier predictions")
        return plots.show(fig, path)

    def save(self, name: str | Path) -> Path:
        """Write ``<name>.classifier`` (safetensors + JSON metadata); returns the path."""
        meta = _meta(self, self.config)
        meta.update(labeled=self.labeled.tolist(), encoder_frozen=self.encoder_frozen,
                    test_accuracy=self.test_accuracy)
        return checkpoint.save(_checkpoint_path(name, self.KIND), self.net.state_dict(),
                               self.KIND, meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, dataset: str | Dataset | None = None,
             data_dir: str | Path | None = None, precision: str = "auto") -> Classifier:
        """Load a checkpoint written by ``save``, with its label draw."""
        tensors, meta = checkpoint.load(path, cls.KIND)
        cfg = meta["config"]
        model = cls(cfg["train_size"], device, cfg["latent_size"], cfg["lr"],
                    hidden=cfg["hidden"], dataset=dataset or meta["dataset"], data_dir=data_dir,
                    seed=cfg["seed"], label_sampling=cfg["label_sampling"],
                    labeled=torch.tensor(meta["labeled"]), precision=precision)
        model.net.load_state_dict(tensors)
        model.history = History(meta.get("history", []))
        model.encoder_frozen = meta.get("encoder_frozen", False)
        model.test_accuracy = meta.get("test_accuracy")
        return model
