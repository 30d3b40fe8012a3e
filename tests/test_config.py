import pytest

from fewlabels.arms import ARMS
from fewlabels.config import CompareConfig, load_preset, parse_set, presets
from fewlabels.errors import UsageError


def test_seed_preset_is_the_notebook_protocol():
    cfg = load_preset("seed")
    p = cfg.pretrain
    assert (p.method, p.encoder, p.encoder_options) == (
        "autoencoder", "mlp", {"hidden": [512, 128], "latent_size": 10})
    # 2000 steps of 2,400 images (5% of the 48,000 kept when 20% of the pool is held out)
    assert (p.val_fraction, p.lr, p.batch, p.epochs * 48_000 / p.batch) == (0.2, 0.003, 2400,
                                                                           2000)
    assert (p.weight_decay, p.schedule) == (0, "constant")
    s = cfg.supervised
    assert (s.lrs, s.epochs, s.batch, s.weight_decay, s.schedule, s.augment) == (
        [0.002], 700, 0.4, 0, "constant", False)
    q = cfg.probe
    assert (q.lr, q.epochs, q.batch, q.weight_decays, q.standardize) == (
        0.05, 700, 0.5, [0], False)
    assert cfg.labels == ["600"] and cfg.datasets == ["mnist"]
    assert cfg.shifts == 0  # the notebook's plain prediction


def test_the_default_averages_over_one_pixel_shifts_where_the_views_shift_a_pixel():
    cfg = load_preset("default")
    assert cfg.shifts == "auto" and cfg.pretrain.augment.translate == 0.08
    # the views move an image up to 8% of its side: 0.64 pixel on 8×8, 2.24 on 28×28
    assert [cfg.shifts_for((1, s, s)) for s in (8, 12, 13, 28, 36)] == [0, 0, 1, 1, 1]
    for given, read in (("0", 0), ("2", 2), ("auto", "auto")):
        cfg = load_preset("default", parse_set([f"shifts={given}"]))
        assert cfg.shifts == read and cfg.shifts_for((1, 8, 8)) == (read if given != "auto"
                                                                    else 0)
    assert load_preset("seed", parse_set(["shifts=auto"])).shifts == "auto"


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "9", "true"])
def test_a_bad_shifts_value_is_refused_with_the_range_and_auto(value):
    with pytest.raises(UsageError, match=r"shifts=.* is out of range: .* 0 \(the plain "
                                         r"prediction\) to 4, or auto"):
        load_preset("default", parse_set([f"shifts={value}"]))


def test_every_preset_loads():
    assert {"seed", "default"} <= set(presets())
    for name in presets():
        assert load_preset(name).preset == name


def test_every_arm_has_its_own_validated_section():
    cfg = CompareConfig()
    for arm in ARMS.values():
        section = getattr(cfg, arm.section)
        assert section.validate(f"{arm.section}.") is section


def test_a_pair_is_read_from_two_comma_separated_values():
    cfg = load_preset("default", parse_set(["pretrain.augment.erase_area=0.1,0.3"]))
    assert cfg.pretrain.augment.erase_area == (0.1, 0.3)


def test_overrides_are_typed():
    cfg = load_preset("seed", parse_set(["probe.lr=0.1", "pretrain.encoder_options.hidden=64,32",
                                         "supervised.epochs=5", "pretrain.epochs=0.5"]))
    assert cfg.probe.lr == 0.1 and cfg.pretrain.encoder_options["hidden"] == [64, 32]
    assert cfg.supervised.epochs == 5 and cfg.pretrain.epochs == 0.5


def test_a_list_may_be_written_with_brackets_and_spaces():
    cfg = load_preset("default", parse_set(["supervised.lrs=[0.001, 0.003]",
                                            "ceiling.augments=[light, none]", "seeds=4,5"]))
    assert cfg.supervised.lrs == [0.001, 0.003] and cfg.ceiling.augments == ["light", "none"]
    assert cfg.seeds == [4, 5]


def test_method_options_from_the_command_line_are_read_as_yaml_scalars():
    cfg = load_preset("default", parse_set([
        "pretrain.refine_options.clusters=12", "pretrain.options.temperature=0.5"]))
    assert cfg.pretrain.refine_options == {"clusters": 12}
    assert cfg.pretrain.options == {"temperature": 0.5}


@pytest.mark.parametrize("items, message", [
    (["probe.lr"], "is not KEY=VALUE"), (["probe.epochs=2.5"], "not a whole number"),
    (["probe.lr=fast"], "not a number"), (["nope=1"], "unknown setting 'nope'"),
    (["probe.standardize=maybe"], "'probe.standardize': 'maybe' is not a boolean"),
    (["pretrain.encoder_options=x"], "'pretrain.encoder_options': 'x' is not a mapping"),
    (["pretrain.refine_options=[1"], "is not a mapping: set its keys one at a time"),
    (["pretrain.augment=3"], "'pretrain.augment' needs a mapping of its fields"),
    (["pretrain.augment.erase_area=0.1"], "'0.1' is not 2 comma-separated values")])
def test_bad_overrides(items, message):
    with pytest.raises(UsageError, match=message):
        load_preset("seed", parse_set(items))


# one bad value per key: the error names the key (and so the fix)
BAD = [
    ("labels=0", "label budget '0' is out of range"),
    ("seeds=", "no seeds given"),
    ("label_sampling=stratified", "unknown label_sampling 'stratified'"),
    ("label_sampling=[random, typical, random]", "label_sampling"),
    ("device=tpu", "unknown device 'tpu'"),
    ("precision=fp8", "unknown precision 'fp8'"),
    ("tune=-1", "tune=-1 is not allowed"),
    ("feature_map=-5", "feature_map=-5 is not allowed"),
    ("pretrain.method=byol", "unknown pretrain.method 'byol'"),
    ("pretrain.encoder=resnet", "unknown pretrain.encoder 'resnet'"),
    ("pretrain.encoder_options.width=0", "pretrain.encoder_options.width=0 is not allowed"),
    ("pretrain.encoder_options.height=3", "unknown setting 'pretrain.encoder_options.height'"),
    ("pretrain.epochs=0", "pretrain.epochs=0.0 is not allowed"),
    ("pretrain.epochs=1e12", "pretrain.epochs=1000000000000.0 is out of range: at most 1,000,000"),
    ("pretrain.refine_epochs=2000000", "at most 1,000,000 passes"),
    ("semisupervised.epochs=1e7", "semisupervised.epochs=10000000.0 is out of range"),
    ("supervised.label_smoothing=-0.1", "supervised.label_smoothing=-0.1"),
    ("supervised.label_smoothing=1", "supervised.label_smoothing=1"),
    ("finetune.label_smoothing=nan", "finetune.label_smoothing=nan"),
    ("ceiling.max_epochs=1000001", "ceiling.max_epochs=1000001 is out of range"),
    ("pretrain.batch=0", "pretrain.batch=0 is not allowed"),
    ("pretrain.lr=0", "pretrain.lr=0.0 is not allowed"),
    ("pretrain.weight_decay=-1", "pretrain.weight_decay=-1.0 is not allowed"),
    ("pretrain.warmup_epochs=-1", "pretrain.warmup_epochs=-1.0 is not allowed"),
    ("pretrain.schedule=step", "unknown pretrain.schedule 'step'"),
    ("pretrain.pool=-1", "pretrain.pool=-1 is not allowed"),
    ("pretrain.val_fraction=1", "pretrain.val_fraction=1.0 is out of range"),
    ("pretrain.refine=byol", "unknown pretrain.refine 'byol'"),
    ("pretrain.refine_lr=0", "pretrain.refine_lr=0.0 is not allowed"),
    ("pretrain.refine_rounds=0", "pretrain.refine_rounds=0 is not allowed"),
    ("pretrain.neighbors=0", "pretrain.neighbors=0 is not allowed"),
    ("pretrain.self_label_threshold=1.5", "pretrain.self_label_threshold=1.5 is out of range"),
    ("pretrain.options.temperature=0", "pretrain.options.temperature=0 is not allowed"),
    ("pretrain.options.projection_dim=0", "pretrain.options.projection_dim=0 is not allowed"),
    ("pretrain.options.momentum=0.9", "unknown setting 'pretrain.options.momentum'"),
    ("pretrain.refine_options.clusters=1", "pretrain.refine_options.clusters=1 is not allowed"),
    ("pretrain.refine_options.entropy_weight=-1",
     "pretrain.refine_options.entropy_weight=-1 is not allowed"),
    ("pretrain.augment.rotate=-5", "pretrain.augment.rotate=-5.0 is not allowed"),
    ("pretrain.augment.scale=1.5", "pretrain.augment.scale=1.5 is out of range"),
    ("pretrain.augment.erase=2", "pretrain.augment.erase=2.0 is out of range"),
    ("pretrain.augment.elastic_grid=0", "pretrain.augment.elastic_grid=0 is not allowed"),
    ("probe.epochs=0", "probe.epochs=0 is not allowed"),
    ("probe.lr=-1", "probe.lr=-1.0 is not allowed"),
    ("probe.batch=0", "probe.batch=0.0 is not allowed"),
    ("probe.weight_decays=-0.1", "probe.weight_decays=-0.1 is not allowed"),
    ("probe.val_fraction=0", "probe.val_fraction=0.0 is out of range"),
    ("supervised.epochs=0", "supervised.epochs=0 is not allowed"),
    ("supervised.batch=1.5", "supervised.batch=1.5 is not allowed"),
    ("supervised.lrs=0", "supervised.lrs=0.0 is not allowed"),
    ("supervised.weight_decay=-1", "supervised.weight_decay=-1.0 is not allowed"),
    ("supervised.schedule=linear", "unknown supervised.schedule 'linear'"),
    ("ceiling.max_epochs=0", "ceiling.max_epochs=0 is not allowed"),
    ("finetune.encoder_lr_scale=0", "finetune.encoder_lr_scale=0.0 is not allowed"),
    ("finetune.head_epochs=0", "finetune.head_epochs=0 is not allowed"),
    ("finetune.lrs=", "finetune.lrs=[] is not allowed"),
    ("semisupervised.epochs=0", "semisupervised.epochs=0.0 is not allowed"),
    ("semisupervised.ratio=0", "semisupervised.ratio=0 is not allowed"),
    ("semisupervised.threshold=0", "semisupervised.threshold=0.0 is out of range"),
    ("semisupervised.unlabeled_weight=-1", "semisupervised.unlabeled_weight=-1.0 is not"),
    ("semisupervised.strong.ops=-1", "semisupervised.strong.ops=-1 is not allowed"),
    ("semisupervised.strong.cutout=2", "semisupervised.strong.cutout=2.0 is out of range"),
    ("pixels_labelspreading.alpha=1", "pixels_labelspreading.alpha=1.0 is out of range"),
    ("pixels_labelspreading.k=0", "pixels_labelspreading.k=0 is not allowed"),
    ("pixels_logreg.c=0", "pixels_logreg.c=0.0 is not allowed"),
    ("pixels_knn.k=0", "pixels_knn.k=0 is not allowed"),
]


@pytest.mark.parametrize("item, message", BAD, ids=[b[0] for b in BAD])
def test_every_key_is_validated(item, message):
    with pytest.raises(UsageError) as e:
        load_preset("default", parse_set([item]))
    assert message in str(e.value)


def test_self_labelling_needs_a_scan_stage():
    with pytest.raises(UsageError, match="pretrain.self_label_epochs=2 needs a SCAN refine"):
        load_preset("default", parse_set(["pretrain.refine=", "pretrain.self_label_epochs=2"]))
    # the default recipe has no self-labelling, so dropping SCAN alone is allowed
    assert load_preset("default", parse_set(["pretrain.refine="])).pretrain.refine == ""


def test_a_whole_number_is_read_exactly_as_written():
    cfg = load_preset("default", parse_set(["supervised.epochs=1e2", "supervised.cycles=2.0"]),
                      validate=False)
    assert cfg.supervised.epochs == 100 and cfg.supervised.cycles == 2
    big = "99999999999999999999999"  # through a float it would read 99999999999999991611392
    with pytest.raises(UsageError, match=f"cycles={big} is out of range: at most 100 cycles"):
        load_preset("default", parse_set([f"finetune.cycles={big}"]))


def test_a_replaced_pretraining_choice_starts_from_its_own_options():
    """``--set pretrain.encoder=mlp`` on the default preset used to be refused for the
    conv encoder's width, which the user never gave: the preset's options go with its
    choice, and options given beside the new choice are kept."""
    cfg = load_preset("default", parse_set(["pretrain.encoder=mlp"]))
    assert cfg.pretrain.encoder == "mlp" and cfg.pretrain.encoder_options == {}
    cfg = load_preset("default", parse_set(["pretrain.encoder=mlp",
                                            "pretrain.encoder_options.latent_size=16"]))
    assert cfg.pretrain.encoder_options == {"latent_size": 16}
    cfg = load_preset("default", parse_set(["pretrain.encoder=conv"]))  # the same choice
    assert cfg.pretrain.encoder_options == {"width": 32}
    cfg = load_preset("default", parse_set(["pretrain.refine=scan",
                                            "pretrain.method=vicreg"]))  # the refine kept
    assert cfg.pretrain.refine_options == {"clusters": 10}
    assert cfg.pretrain.encoder_options == {"width": 32}
    with pytest.raises(UsageError, match="'pretrain.encoder_options.width': the mlp encoder"):
        load_preset("default", parse_set(["pretrain.encoder=mlp",
                                          "pretrain.encoder_options.width=8"]))
