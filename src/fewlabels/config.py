"""Typed configuration. Defaults live here, in code; a preset (presets/*.yaml) holds only
the values it overrides; the resolved config is written into every run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources

import yaml

from .errors import UsageError, check_choice, check_positive
from .evaluate import ProbeConfig, SupervisedConfig
from .pretrain import PretrainConfig

ARMS = ("supervised", "probe", "pixels-logreg", "pixels-knn", "ceiling")
PROTOCOLS = ("notebook", "ssl")


@dataclass
class AutoEncoderConfig:
    hidden: list[int] = field(default_factory=lambda: [512, 128])  # encoder hidden widths
    latent_size: int = 10  # code width = the probe's input features
    lr: float = 0.003  # Adam learning rate
    steps: int = 2000  # optimizer steps (the notebook's "2000")
    batch: float = 0.05  # fraction of the training split per step, or an int size
    train_size: float = 0.8  # fraction of the unlabeled pool trained on; rest validates


@dataclass
class ArmConfig:
    lr: float  # Adam learning rate
    epochs: int  # passes over the labeled subset
    batch: float  # fraction of the labeled subset per step, or an int size


@dataclass
class PixelsConfig:
    logreg_c: float = 1.0  # inverse regularisation strength of the logistic regression
    knn_k: int = 1  # neighbours in the k-nearest-neighbour vote


@dataclass
class CompareConfig:
    preset: str = "default"  # name of the preset this config came from
    datasets: list[str] = field(default_factory=lambda: ["mnist"])  # pretrained once each
    labels: list[str] = field(default_factory=lambda: ["600"])  # label budgets
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one label draw per seed
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    label_sampling: str = "balanced"  # balanced | random
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    # notebook: the seed notebook's MLP AutoEncoder and Classifier (sections autoencoder,
    # supervised, probe); ssl: a self-supervised method on a CNN (sections pretrain,
    # linear_probe, from_scratch)
    protocol: str = "notebook"
    autoencoder: AutoEncoderConfig = field(default_factory=AutoEncoderConfig)
    supervised: ArmConfig = field(default_factory=lambda: ArmConfig(0.002, 700, 0.4))
    probe: ArmConfig = field(default_factory=lambda: ArmConfig(0.05, 700, 0.5))
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    linear_probe: ProbeConfig = field(default_factory=ProbeConfig)
    from_scratch: SupervisedConfig = field(default_factory=SupervisedConfig)
    # the fully supervised ceiling: the supervised arm's network on every training label,
    # once per dataset, with one learning rate (nothing to choose it on but the labels)
    ceiling: SupervisedConfig = field(default_factory=lambda: SupervisedConfig(
        epochs=2, batch=256, lrs=[3e-3]))
    pixels: PixelsConfig = field(default_factory=PixelsConfig)
    tune: int = 0  # Optuna trials per arm, label budget and seed (0: the preset's values)
    feature_map: int = 2000  # test images in the report's t-SNE map of features (0: none)
    quick: bool = False  # reduced epochs for a first look (see `quick`)

    def validate(self) -> CompareConfig:
        from .data import DATASETS

        if not self.datasets:
            raise UsageError("no dataset given: pass at least one, e.g. --dataset mnist")
        for name in self.datasets:
            check_choice("dataset", name, DATASETS)
        check_choice("protocol", self.protocol, PROTOCOLS)
        self.pretrain.validate()
        for arm in self.arms:
            check_choice("arm", arm, ARMS)
        if self.tune < 0:
            raise UsageError(f"tune={self.tune} is not allowed: give a number of trials >= 0")
        check_positive("pixels.logreg_c", self.pixels.logreg_c)
        check_positive("pixels.knn_k", self.pixels.knn_k, integer=True)
        if not self.seeds:
            raise UsageError("no seeds given: pass at least one, e.g. --seeds 0 1 2")
        ae = self.autoencoder
        check_positive("autoencoder.lr", ae.lr)
        check_positive("autoencoder.steps", ae.steps, integer=True)
        check_positive("latent_size", ae.latent_size, integer=True)
        if not 0 < ae.train_size <= 1:
            raise UsageError(f"autoencoder.train_size={ae.train_size!r} is out of range: "
                             "use a fraction in (0, 1]")
        for name in ("from_scratch", "ceiling"):
            arm = getattr(self, name)
            check_positive(f"{name}.epochs", arm.epochs, integer=True)
            check_positive(f"{name}.batch", arm.batch, integer=True)
            if not arm.lrs:
                raise UsageError(f"{name}.lrs is empty: give at least one learning rate")
            for lr in arm.lrs:
                check_positive(f"{name}.lrs", lr)
        for name in ("supervised", "probe"):
            arm = getattr(self, name)
            check_positive(f"{name}.lr", arm.lr)
            check_positive(f"{name}.epochs", arm.epochs, integer=True)
            check_positive(f"{name}.batch", arm.batch)
        return self


def quick(cfg: CompareConfig) -> CompareConfig:
    """The same protocol on reduced epochs, for a look in a minute or two: shorter
    pretraining, fewer epochs per arm, one learning rate instead of a choice, a smaller
    feature map."""
    p = cfg.pretrain
    p.epochs = 1
    p.refine_rounds = min(p.refine_rounds, 1)
    p.refine_epochs = min(p.refine_epochs, 1)
    p.self_label_epochs = 0
    p.pool = min(p.pool or 10_000, 10_000)
    cfg.autoencoder.steps = min(cfg.autoencoder.steps, 300)
    for arm in (cfg.supervised, cfg.probe):
        arm.epochs = min(arm.epochs, 100)
    cfg.from_scratch.epochs = min(cfg.from_scratch.epochs, 40)
    cfg.from_scratch.lrs = cfg.from_scratch.lrs[-1:]
    cfg.ceiling.epochs = 1
    cfg.linear_probe.epochs = min(cfg.linear_probe.epochs, 50)
    cfg.feature_map = min(cfg.feature_map, 500)
    cfg.quick = True
    return cfg


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fewlabels.presets").iterdir()
                  if p.name.endswith(".yaml"))


def _coerce(value, like):
    """Turn a YAML or command-line value into the type of the default it replaces."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if isinstance(like, (int, float)) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{value!r} is not a number") from None
        if isinstance(like, int):
            if not number.is_integer():
                raise UsageError(f"{value!r} is not a whole number")
            return int(number)
        return number
    if isinstance(like, dict) and isinstance(value, dict):
        # a key the default lacks (a method's options) has no type to follow: read a
        # command-line string as YAML does, so clusters=10 is 10, not "10"
        return {**like, **{k: _coerce(v, like[k]) if k in like else
                           yaml.safe_load(v) if isinstance(v, str) else v
                           for k, v in value.items()}}
    if isinstance(like, list) and isinstance(value, str):
        return [_coerce(v, like[0]) if like else v for v in value.split(",")]
    return value


def apply(obj, overrides: dict, where: str = "") -> None:
    """Set fields of dataclass ``obj`` from a nested dict; unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in names:
            raise UsageError(f"unknown setting {where + key!r}: allowed are "
                             + ", ".join(where + n for n in names))
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UsageError(f"setting {where + key!r} needs a mapping of its fields")
            apply(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, _coerce(value, current))


def load_preset(name: str, overrides: dict | None = None) -> CompareConfig:
    """The config of preset ``name`` with ``overrides`` (nested dict) applied, validated."""
    check_choice("preset", name, presets())
    text = resources.files("fewlabels.presets").joinpath(f"{name}.yaml").read_text()
    cfg = CompareConfig(preset=name)
    apply(cfg, yaml.safe_load(text) or {})
    apply(cfg, overrides or {})
    return cfg.validate()


def parse_set(items: list[str]) -> dict:
    """``["probe.lr=0.1", "seeds=0,1"]`` → ``{"probe": {"lr": "0.1"}, "seeds": "0,1"}``."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set {item!r} is not KEY=VALUE: write e.g. --set probe.lr=0.1")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
