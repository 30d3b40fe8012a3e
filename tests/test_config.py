import pytest

from fewlabels.config import load_preset, parse_set, presets
from fewlabels.errors import UsageError


def test_seed_preset_is_the_notebook_protocol():
    cfg = load_preset("seed")
    ae = cfg.autoencoder
    assert (ae.train_size, ae.latent_size, ae.lr, ae.steps, ae.batch) == (0.8, 10, 0.003, 2000,
                                                                         0.05)
    assert (cfg.supervised.lr, cfg.supervised.epochs, cfg.supervised.batch) == (0.002, 700, 0.4)
    assert (cfg.probe.lr, cfg.probe.epochs, cfg.probe.batch) == (0.05, 700, 0.5)
    assert cfg.labels == ["600"] and cfg.datasets == ["mnist"]


def test_every_preset_loads():
    assert {"seed", "default"} <= set(presets())
    for name in presets():
        assert load_preset(name).preset == name


def test_overrides_are_typed():
    cfg = load_preset("seed", parse_set(["probe.lr=0.1", "autoencoder.hidden=64,32",
                                         "supervised.epochs=5"]))
    assert cfg.probe.lr == 0.1 and cfg.autoencoder.hidden == [64, 32]
    assert cfg.supervised.epochs == 5


def test_method_options_from_the_command_line_are_read_as_yaml_scalars():
    cfg = load_preset("default", parse_set([
        "pretrain.refine_options.clusters=12", "pretrain.options.temperature=0.5",
        "pretrain.options.name=abc"]))
    assert cfg.pretrain.refine_options == {"clusters": 12}
    assert cfg.pretrain.options == {"temperature": 0.5, "name": "abc"}


@pytest.mark.parametrize("items, message", [
    (["probe.lr"], "is not KEY=VALUE"), (["probe.epochs=2.5"], "not a whole number"),
    (["probe.lr=fast"], "not a number"), (["nope=1"], "unknown setting 'nope'")])
def test_bad_overrides(items, message):
    with pytest.raises(UsageError, match=message):
        load_preset("seed", parse_set(items))
