import pytest

from fewlabels.arms import ARMS
from fewlabels.config import load_preset
from fewlabels.data import draw_labels
from fewlabels.encoders import ConvEncoder
from fewlabels.tuning import tune, with_trial


@pytest.mark.parametrize("arm", sorted(name for name, a in ARMS.items() if a.space))
def test_tuning_never_reads_the_test_set_and_resumes(mnist, tmp_path, arm):
    ds = mnist.subset(train=3000).without_test()  # any read of the test split raises
    cfg = load_preset("default", {"device": "cpu", "precision": "fp32",
                                  "pretrain": {"encoder_options": {"width": 4}},
                                  "supervised": {"epochs": 2},
                                  "finetune": {"epochs": 2},
                                  "semisupervised": {"epochs": 1, "hard_pool_epochs": 1},
                                  "probe": {"epochs": 5}})
    labeled = draw_labels(ds.train_labels, 100, 0)
    encoder = ConvEncoder(width=4).eval()
    db = tmp_path / "tuning.db"
    chosen, info = tune(arm, ds, labeled, 0, cfg, encoder, 2, db, f"t-{arm}")
    assert info["trials"] == 2 and info["params"]
    # the best trial's score is a share of the 20 held-out labels (a multiple of 1/20)
    assert info["val_accuracy"] * 20 == pytest.approx(round(info["val_accuracy"] * 20))
    # the arm's own section comes back, a copy: the config it came from is untouched
    assert type(chosen) is type(cfg.settings(arm)) and chosen is not cfg.settings(arm)
    # a second call with a larger budget resumes the stored study: one more trial
    _, again = tune(arm, ds, labeled, 0, cfg, encoder, 3, db, f"t-{arm}")
    assert again["trials"] == 3 and again["val_accuracy"] >= info["val_accuracy"]


def test_chosen_values_land_in_a_copy_of_the_section():
    import optuna

    cfg = load_preset("default")
    probe = with_trial("probe", optuna.trial.FixedTrial({"lr": 0.02, "weight_decay": 1e-3,
                                                         "epochs": 200}), cfg.probe)
    assert probe.lr == 0.02 and probe.weight_decays == [1e-3] and probe.epochs == 200
    assert cfg.probe != probe  # the preset's section stays as it was
