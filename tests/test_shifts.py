"""A prediction averaged over shifted copies: the copies, the average, its range, and the
same figure from an arm's predictor, a saved model and its ONNX export."""

import re

import numpy as np
import pytest
import torch

from fewlabels import checkpoint
from fewlabels.arms import network_outcome
from fewlabels.classifiers import predict_and_plain
from fewlabels.cli import main
from fewlabels.config import load_preset
from fewlabels.encoders import ClassifierNet, build_encoder
from fewlabels.errors import UsageError
from fewlabels.predictor import KIND, Model, model_meta
from fewlabels.runtime import resolve
from fewlabels.shifts import check_shifts, mean_softmax, resolve_shifts, shifted_copies


def test_the_copies_move_the_image_and_fill_zeros_in_as_the_training_views_do():
    x = torch.full((1, 1, 5, 5), 0.5)
    x[0, 0, 2, 2] = 1.0  # one bright pixel in the middle of a grey background
    copies = shifted_copies(x, 1)
    assert len(copies) == 5 and copies[0] is x
    places = sorted((c[0, 0] == 1.0).nonzero().flatten().tolist() for c in copies[1:])
    assert places == [[1, 2], [2, 1], [2, 3], [3, 2]]  # each of the four neighbours once
    for c in copies[1:]:  # one row or column uncovered, zero; the rest the background
        assert c.shape == x.shape and (c == 0).sum() == 5 and (c == 0.5).sum() == 19
    for c in shifted_copies(x, 1, "replicate")[1:]:  # or the edge copied in
        assert (c == 0.5).sum() == 24
    assert shifted_copies(x, 0) == [x]


def test_the_average_is_the_mean_of_the_copies_softmax():
    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 12, 12), width=4), 3).eval()
    x = torch.rand(6, 1, 12, 12)
    with torch.no_grad():
        got = mean_softmax(net, shifted_copies(x, 2))
        expected = torch.stack([net(c).softmax(1) for c in shifted_copies(x, 2)]).mean(0)
        plain = mean_softmax(net, shifted_copies(x, 0))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(plain, net(x).softmax(1))
    torch.testing.assert_close(got.sum(1), torch.ones(6))
    assert not torch.allclose(got, plain)  # the copies are seen


@pytest.mark.parametrize("value, shape, message", [
    (5, None, "shifts=5 is out of range: a whole number of pixels from 0 (the plain "
              "prediction) to 4, or auto (1 where the training views shift images a whole "
              "pixel); e.g. shifts=1"),
    (-1, None, "shifts=-1 is out of range"),
    (1.5, None, "shifts=1.5 is out of range"),
    (True, None, "shifts=True is out of range"),
    ("1", None, "shifts='1' is out of range"),
    (4, (1, 8, 8), "shifts=4 is out of range: a whole number of pixels from 0 (the plain "
                   "prediction) to 3 for images of side 8"),
])
def test_a_shift_out_of_range_is_refused_with_one_line(value, shape, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        check_shifts("shifts", value, shape, auto=True)
    check_shifts("shifts", 3, (1, 8, 8))  # the largest the side allows is taken
    # a setting may be auto (resolved for the images, ``resolve_shifts``); a number is not
    check_shifts("shifts", "auto", (1, 8, 8), auto=True)
    with pytest.raises(UsageError, match=re.escape("shifts='auto' is out of range: a whole "
                                                   "number of pixels from 0 (the plain "
                                                   "prediction) to 3 for images of side 8; "
                                                   "e.g. shifts=1")):
        check_shifts("shifts", "auto", (1, 8, 8))


def test_compare_refuses_a_shift_out_of_range_before_any_work(tmp_path, capsys):
    code = main(["compare", "--dataset", "mnist", "--set", "shifts=7", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "shifts=7 is out of range" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_arms_predictor_gives_the_averaged_class():
    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 12, 12), width=4), 3).eval()
    images = torch.randint(0, 256, (40, 1, 12, 12), dtype=torch.uint8)
    rt = resolve("cpu", "fp32")
    with torch.no_grad():
        expected = mean_softmax(net, shifted_copies(images.float() / 255, 1)).argmax(1)
    assert torch.equal(network_outcome(net, rt, 1).predict(images), expected)
    plain = network_outcome(net, rt).predict(images)
    assert torch.equal(plain, net(images.float() / 255).argmax(1))
    config = load_preset("default", {"shifts": 1})
    assert config.validate().shifts == 1
    # the comparison's score and its plain one come from the same passes (the unshifted
    # copy is one of the averaged views), over more than one chunk
    many = torch.randint(0, 256, (2500, 1, 12, 12), dtype=torch.uint8)
    with torch.no_grad():
        net.head.bias.zero_()  # no class wins every image, so the two predictions differ
    averaged, alone = predict_and_plain(net.encoder, net.head, many, rt, 1)
    assert torch.equal(averaged, network_outcome(net, rt, 1).predict(many))
    assert torch.equal(alone, network_outcome(net, rt).predict(many))
    assert not torch.equal(averaged, alone)
    # the arm's Outcome carries both (what ``compare`` scores), a plain predictor neither
    both = network_outcome(net, rt, 1).predict_and_plain(many)
    assert torch.equal(both[0], averaged) and torch.equal(both[1], alone)
    assert network_outcome(net, rt).predict_and_plain is None


def _saved(tmp_path, shifts: int) -> Model:
    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 28, 28), width=4), 3)
    meta = model_meta(["a", "b", "c"], (1, 28, 28), "probe", "conv", {"width": 4}, shifts)
    checkpoint.save(tmp_path / f"m{shifts}.model", dict(net.state_dict()), KIND, meta)
    return Model.load(tmp_path / f"m{shifts}.model")


def test_a_saved_model_and_its_onnx_export_average_the_same_copies(tmp_path):
    averaged, plain = _saved(tmp_path, 2), _saved(tmp_path, 0)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    x = images.float() / 255
    with torch.no_grad():
        expected = mean_softmax(averaged.net, shifted_copies(x, 2)).numpy()
    np.testing.assert_allclose(averaged.predict(images).probabilities, expected, atol=1e-6)
    assert np.abs(plain.predict(images).probabilities - expected).max() > 1e-5  # not plain
    pytest.importorskip("onnxruntime")
    import onnxruntime

    averaged.export_onnx(tmp_path / "m.onnx", images)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("shifts", [40, "auto"])  # a model file holds the number fit resolved
def test_a_model_file_with_a_bad_shift_is_refused(tmp_path, shifts):
    net = ClassifierNet(build_encoder("conv", (1, 28, 28), width=4), 3)
    meta = {**model_meta(["a", "b", "c"], (1, 28, 28), "probe", "conv", {"width": 4}),
            "shifts": shifts}
    checkpoint.save(tmp_path / "m.model", dict(net.state_dict()), KIND, meta)
    with pytest.raises(UsageError, match=re.escape(f"shifts={shifts!r} is out of range")):
        Model.load(tmp_path / "m.model")


def test_auto_is_one_pixel_where_the_views_shift_a_whole_pixel():
    assert resolve_shifts("auto", 0.08, (1, 28, 28)) == 1  # views move up to 2.24 pixels
    assert resolve_shifts("auto", 0.08, (1, 8, 8)) == 0  # up to 0.64 pixel
    assert resolve_shifts("auto", 0.0, (3, 64, 64)) == 0  # no shifted views at all
    assert resolve_shifts("auto", 0.5, (1, 2, 2)) == 0  # a pixel is half the side
    assert resolve_shifts(2, 0.0, (1, 8, 8)) == 2  # a number is what was asked
