"""Typed configuration. Defaults live here, in code; a preset (presets/*.yaml) holds only
the values it overrides; the resolved config is written into every run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources

import yaml

from .arms import ARMS, Context, KNNConfig, LabelSpreadingConfig, LogRegConfig, network_maker
from .ceiling import CeilingConfig
from .classifiers import FinetuneConfig, ProbeConfig, SupervisedConfig
from .encoders import build_encoder, check_frozen_layers
from .errors import UsageError, check_choice, check_non_negative, check_seed, check_unique
from .pretrain import PretrainConfig
from .runtime import DEVICES, PRECISIONS, Runtime, resolve
from .semisupervised import SemiSupervisedConfig, check_reduced_side
from .shifts import check_shifts, resolve_shifts

SAMPLINGS = ("balanced", "random", "typical", "coverage")
SELECTED = ("typical", "coverage")  # samplings that need the pretrained encoder
MOST_TRIALS = 10_000  # --tune: Optuna trials of one arm, budget and draw


@dataclass
class CompareConfig:
    """Everything a comparison depends on. One section per arm, named as the arm is in
    ``arms.ARMS`` (``pixels-knn`` → ``pixels_knn``), and one for pretraining. The code's
    defaults are a starting point: every run starts from a preset, ``presets/default.yaml``
    (the default protocol: its pretraining recipe differs from ``PretrainConfig``'s) or
    ``presets/seed.yaml`` (the notebook's)."""

    preset: str = "default"  # name of the preset this config came from
    datasets: list[str] = field(default_factory=lambda: ["mnist"])  # pretrained once each
    labels: list[str] = field(default_factory=lambda: ["600"])  # label budgets
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one label draw per seed
    # every arm that learns from a label draw; the ceiling (every label, to its plateau:
    # longer than all of them together) is asked for by name, once per dataset
    arms: list[str] = field(default_factory=lambda: [a for a, arm in ARMS.items()
                                                     if not arm.every_label])
    # which images of a draw are labeled: balanced (the same count a class: an oracle, it
    # reads labels no user has), random (uniform), or typical / coverage (chosen in the
    # run's pretrained embedding without labels: fewlabels.selection)
    # several: each a column of the same comparison (runs on the second and later are named
    # ``<arm>@<sampling>``), paired with the first over draws
    label_sampling: str | list[str] = "balanced"
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    # pretraining runs per dataset, one per seed: every label draw is evaluated on each
    # (empty: one run, with pretrain.seed)
    pretrain_seeds: list[int] = field(default_factory=list)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    semisupervised: SemiSupervisedConfig = field(default_factory=SemiSupervisedConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    pixels_logreg: LogRegConfig = field(default_factory=LogRegConfig)
    pixels_knn: KNNConfig = field(default_factory=KNNConfig)
    pixels_labelspreading: LabelSpreadingConfig = field(default_factory=LabelSpreadingConfig)
    # the fully supervised ceiling: the supervised arm's network on every training label
    # but a validation split, to its plateau, once per dataset (``ceiling``)
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)
    tune: int = 0  # Optuna trials per arm, label budget and seed (0: the preset's values)
    feature_map: int = 2000  # test images in the report's t-SNE map of features (0: none)
    quick: bool = False  # reduced epochs for a first look (see `quick`)
    # every network's prediction (each arm's, the ceiling's, a saved model's) averaged over
    # the image and four copies moved this many pixels (``shifts``; 0: the plain prediction;
    # auto: 1 where the training views shift images a whole pixel, ``resolve_shifts``)
    shifts: int | str = 0

    def settings(self, arm: str):
        """The config section of ``arm``: all its runner is handed of this config."""
        return getattr(self, ARMS[arm].section)

    def context(self, data, labeled, seed: int, encoder=None,
                runtime: Runtime | None = None, shared=None) -> Context:
        """An arm runner's context for one labeled draw of ``data`` (the dataset without
        its test split): the runtime, the pretraining policy's views, the supervised
        network's maker, the encoder and its recipe, the ceiling's least steps (the
        most the semi-supervised arm can take on this pool), and the folder the runs of
        a comparison share (``memo``)."""
        p = self.pretrain
        return Context(data, labeled, seed, runtime or resolve(self.device, self.precision),
                       p.augment, network_maker(p.encoder, p.encoder_options, data.image_shape,
                                                data.num_classes, seed),
                       encoder, p.name(),
                       self.semisupervised.most_steps(len(data.train_images))
                       if self.ceiling.at_least_semisupervised else 0, shared,
                       self.shifts_for(data.image_shape))

    def shifts_for(self, image_shape) -> int:
        """The pixels every network's prediction on images of ``image_shape`` averages
        copies moved by (``shifts``, ``auto`` resolved)."""
        return resolve_shifts(self.shifts, self.pretrain.augment.translate, image_shape)

    def check_data(self, image_shape) -> None:
        """The settings whose range the data sets, checked before any work:
        ``semisupervised.frozen_layers`` against the encoder built for ``image_shape``, and
        ``semisupervised.reduced_side`` against its height and width."""
        p = self.pretrain
        check_reduced_side(self.semisupervised, image_shape)
        check_shifts("shifts", self.shifts_for(image_shape), image_shape, auto=True)
        if self.semisupervised.frozen_layers:
            check_frozen_layers(build_encoder(p.encoder, image_shape, **p.encoder_options),
                                self.semisupervised.frozen_layers, "semisupervised.")

    def samplings(self) -> list[str]:
        """The label samplings, the first the comparison's own (its runs unsuffixed)."""
        s = self.label_sampling
        return [s] if isinstance(s, str) else list(s)

    def needs_encoder(self) -> bool:
        """Whether a dataset is pretrained: an arm trains on the encoder, or the labeled
        images are chosen in its embedding."""
        return (any(ARMS[a].pretrained for a in self.arms)
                or any(s in SELECTED for s in self.samplings()))

    def pretraining_seeds(self) -> list[int]:
        """The seed of each pretraining run of a dataset."""
        return list(self.pretrain_seeds) or [self.pretrain.seed]

    def validate(self) -> CompareConfig:
        """Check every value before anything is written; raise UsageError naming the key."""
        from .data import DATASETS, parse_label_budget
        from .development import check_reported_draws

        if not self.datasets:
            raise UsageError("no dataset given: pass at least one, e.g. --dataset mnist")
        for name in self.datasets:
            check_choice("dataset", name, DATASETS)
        if not self.labels:
            raise UsageError("no label budget given: pass at least one, e.g. --labels 600")
        for budget in self.labels:  # the syntax here; the range once the data is loaded
            parse_label_budget(budget, None)
        if not self.seeds:
            raise UsageError("no seeds given: pass at least one, e.g. --seeds 0 1 2")
        for name in ("seeds", "pretrain_seeds", "datasets", "labels", "arms"):
            check_unique(name, getattr(self, name))
        for p in self.pretrain_seeds:
            check_seed("pretrain_seeds", p)
        check_reported_draws(self.seeds)
        if not self.arms:
            raise UsageError("no arm given: pass at least one, e.g. --arms probe supervised")
        for arm in self.arms:
            check_choice("arm", arm, ARMS)
        for s in self.samplings():
            check_choice("label_sampling", s, SAMPLINGS)
        check_unique("label_sampling", self.samplings())
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_shifts("shifts", self.shifts, auto=True)
        check_non_negative("tune", self.tune, integer=True, hint=": a number of trials")
        if self.tune > MOST_TRIALS:  # 10^20 trials were accepted and ran for ever
            raise UsageError(f"tune={self.tune} is out of range: use 0..{MOST_TRIALS:,} trials "
                             "a tunable arm, budget and draw (each trains the arm once)")
        check_non_negative("feature_map", self.feature_map, integer=True,
                           hint=": a number of test images, or 0 for no map")
        self.pretrain.validate()
        for arm in ARMS.values():
            getattr(self, arm.section).validate(f"{arm.section}.")
        return self


def quick(cfg: CompareConfig) -> CompareConfig:
    """The same protocol on reduced epochs, for a look in a minute or two: shorter
    pretraining, fewer epochs per arm, one learning rate where a list is given, a smaller
    feature map, and plain predictions where ``shifts`` is ``auto`` (averaging over shifted
    copies passes the test images five times a network's run: 0.695x the two-dataset look's
    wall without it, its networks unchanged; a number given is kept). What was asked is
    checked first: a value out of range is refused, not reduced into range
    (``--pretrain-epochs inf`` became 1 epoch)."""
    cfg.validate()
    p = cfg.pretrain
    p.epochs = min(p.epochs, max(1, p.epochs // 8))
    p.refine_rounds = min(p.refine_rounds, 1)
    p.refine_epochs = min(p.refine_epochs, 1)
    p.self_label_epochs = 0
    p.pool = min(p.pool or 10_000, 10_000)
    cfg.supervised.epochs = min(cfg.supervised.epochs, 40)
    cfg.supervised.lrs = cfg.supervised.lrs[-1:]
    cfg.supervised.cycles = cfg.finetune.cycles = 1  # a first look: no cycle after the first
    cfg.probe.epochs = min(cfg.probe.epochs, 50)
    cfg.finetune.epochs = min(cfg.finetune.epochs, 20)
    cfg.finetune.lrs = cfg.finetune.lrs[-1:]
    cfg.semisupervised.epochs = min(cfg.semisupervised.epochs, 0.5)
    cfg.semisupervised.hard_pool_epochs = min(cfg.semisupervised.hard_pool_epochs, 0.5)
    cfg.ceiling.max_epochs = 1
    cfg.ceiling.lrs = cfg.ceiling.lrs[-1:]
    cfg.ceiling.augments = cfg.ceiling.augments[:1]
    cfg.feature_map = min(cfg.feature_map, 500)
    if cfg.shifts == "auto":
        cfg.shifts = 0
    cfg.quick = True
    return cfg


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fewlabels.presets").iterdir()
                  if p.name.endswith(".yaml"))


def _coerce(value, like):
    """Turn a YAML or command-line value into the type of the default it replaces."""
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text not in ("1", "true", "yes", "0", "false", "no"):
            raise UsageError(f"{value!r} is not a boolean: use true or false")
        return text in ("1", "true", "yes")
    if isinstance(like, (int, float)) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{value!r} is not a number") from None
        if isinstance(like, int):
            if not number.is_integer():
                raise UsageError(f"{value!r} is not a whole number")
            try:  # exactly as written where it is an integer: a float rounds past 2**53
                return int(value.strip())
            except ValueError:  # "1e3", "7.0"
                return int(number)
        return number
    if isinstance(like, dict) and isinstance(value, dict):
        # a key the default lacks (a method's options) has no type to follow: read a
        # command-line string as YAML does, so clusters=10 is 10, not "10"
        return {**like, **{k: _coerce(v, like[k]) if k in like else
                           yaml.safe_load(v) if isinstance(v, str) else v
                           for k, v in value.items()}}
    if isinstance(like, dict):
        raise UsageError(f"{value!r} is not a mapping: set its keys one at a time, e.g. "
                         "KEY.width=32")
    if isinstance(like, list) and isinstance(value, str):  # a,b or [a, b]
        items = [v.strip() for v in value.strip().removeprefix("[").removesuffix("]")
                 .split(",") if v.strip()]
        return [_coerce(v, like[0]) if like else v for v in items]
    if isinstance(like, tuple):  # a fixed number of values, e.g. erase_area=0.05,0.2
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or len(items) != len(like):
            raise UsageError(f"{value!r} is not {len(like)} comma-separated values")
        return tuple(_coerce(v, w) for v, w in zip(items, like, strict=True))
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
        if names[key].type == "float" and type(current) is int:
            current = float(current)  # a float field whose value happens to be whole
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UsageError(f"setting {where + key!r} needs a mapping of its fields")
            apply(current, value, f"{where}{key}.")
        else:
            try:
                if names[key].type == "int | str" and isinstance(value, str):
                    current = value if not value.strip().lstrip("-").isdigit() else 0
                setattr(obj, key, _coerce(value, current))
            except UsageError as e:
                raise UsageError(f"setting {where + key!r}: {e}") from None


def load_preset(name: str, overrides: dict | None = None, validate: bool = True
                ) -> CompareConfig:
    """The config of preset ``name`` with ``overrides`` (nested dict) applied, validated
    unless ``validate`` is False (the caller changes it further, then validates)."""
    check_choice("preset", name, presets())
    text = resources.files("fewlabels.presets").joinpath(f"{name}.yaml").read_text()
    cfg = CompareConfig(preset=name)
    overrides = overrides or {}
    apply(cfg, _without_replaced_options(yaml.safe_load(text) or {}, overrides))
    apply(cfg, overrides)
    return cfg.validate() if validate else cfg


# a pretraining choice and the section of its own keyword arguments
OPTIONS_OF = {"method": "options", "encoder": "encoder_options", "refine": "refine_options"}


def _without_replaced_options(preset: dict, overrides: dict) -> dict:
    """``preset`` without the options of a pretraining choice that ``overrides`` replace:
    the preset's belong to its own choice (the conv encoder's width), so ``--set
    pretrain.encoder=mlp`` starts from the MLP's defaults, and options given beside it,
    instead of refusing a width it was never given."""
    asked, given = overrides.get("pretrain"), preset.get("pretrain")
    if not isinstance(asked, dict) or not isinstance(given, dict):
        return preset
    dropped = [options for choice, options in OPTIONS_OF.items()
               if choice in asked and asked[choice] != given.get(choice)]
    return {**preset, "pretrain": {k: v for k, v in given.items() if k not in dropped}}


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
