"""The CUDA paths: skipped on a machine without a GPU (benchmarks/cuda_check.sh runs the
whole comparison there)."""

import dataclasses

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_auto_picks_the_gpu_with_bf16_where_it_is_fast():
    from fewlabels.runtime import resolve

    rt = resolve("auto", "auto")
    assert rt.device.type == "cuda"
    assert rt.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_pretraining_and_every_network_arm_run_on_the_gpu(mnist):
    from fewlabels.arms import ARMS
    from fewlabels.config import load_preset, quick
    from fewlabels.data import draw_labels
    from fewlabels.pretrain import pretrain
    from fewlabels.runtime import resolve

    small = dataclasses.replace(mnist.subset(train=2000, test=200), name="mnist")
    cfg = quick(load_preset("default", {"device": "cuda"}))
    rt = resolve("cuda", "auto")
    encoder, _, history = pretrain(small, cfg.pretrain, rt, progress=False)
    assert next(encoder.parameters()).is_cuda
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history.records if "loss" in r)
    labeled = draw_labels(small.train_labels, 100, 0)
    for name in ("probe", "finetune", "semisupervised", "supervised"):
        outcome = ARMS[name].run(cfg.context(small.without_test(), labeled, 0, encoder, rt),
                                 cfg.settings(name))
        accuracy = (outcome.predict(small.test_images) == small.test_labels).float().mean()
        assert accuracy > 0.1, name


def test_a_model_predicts_the_same_on_the_gpu_and_the_cpu():
    from fewlabels.encoders import ClassifierNet, build_encoder
    from fewlabels.predictor import Model

    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 28, 28), width=8), 10)
    meta = {"classes": [str(c) for c in range(10)], "image_shape": [1, 28, 28]}
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    cpu = Model(net, meta).predict(x).probabilities
    gpu = Model(net, meta, device="cuda").predict(x).probabilities
    assert abs(cpu - gpu).max() < 1e-4
