"""Model files: what a damaged one is refused for, and what predict and embed say when
inputs cannot be read."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from fewlabels import checkpoint
from fewlabels.cli import main
from fewlabels.encoders import ClassifierNet, build_encoder
from fewlabels.errors import UsageError
from fewlabels.predictor import KIND, Model, model_meta


def _model_file(path, *, nan=False, shape=(1, 28, 28), classes=None):
    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 28, 28), width=4), 3)
    tensors = dict(net.state_dict())
    if nan:
        tensors["head.bias"] = torch.full_like(tensors["head.bias"], float("nan"))
    meta = {**model_meta(classes or ["a", "b", "c"], (1, 28, 28), "probe", "conv",
                         {"width": 4}), "image_shape": list(shape)}
    return checkpoint.save(path, tensors, KIND, meta)


@pytest.mark.parametrize("kwargs, message", [
    ({"nan": True}, "holds non-finite weights (head.bias)"),
    ({"shape": (1, -5, -5)}, "says its images have shape [1, -5, -5]"),
    ({"shape": (1, 0, 0)}, "says its images have shape [1, 0, 0]"),
    ({"classes": ["a", "a", "b"]}, "lists classes ['a', 'a', 'b']: expected distinct names"),
    ({"classes": ["a", "b"]}, "names 2 classes but its network has 3 outputs"),
])
def test_a_damaged_model_file_is_refused_with_one_line(tmp_path, kwargs, message):
    path = _model_file(tmp_path / "m.model", **kwargs)
    with pytest.raises(UsageError, match=re.escape(message)):
        Model.load(path)


def test_a_glob_that_matches_nothing_and_an_unreadable_input_are_said(tmp_path, capsys):
    path = _model_file(tmp_path / "m.model")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "zero.png")
    code = main(["predict", str(path), str(tmp_path / "zero.png"), str(tmp_path / "*.jpeg"),
                 "--format", "json"])
    out = capsys.readouterr()
    assert code == 1 and len(json.loads(out.out)) == 1
    assert "*.jpeg" in out.err  # named, not skipped without a word


def test_embed_writes_nothing_when_no_input_can_be_read(tmp_path, capsys):
    path = _model_file(tmp_path / "m.model")
    (tmp_path / "notes.png").write_text("not an image")
    code = main(["embed", str(path), str(tmp_path / "notes.png"), "--out",
                 str(tmp_path / "f.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "no image could be read" in err and "notes.png" in err
    assert not (tmp_path / "f.npy").exists() and not (tmp_path / "f.files.txt").exists()


def test_embed_refuses_an_output_that_is_a_folder_before_reading_the_images(tmp_path, capsys):
    path = _model_file(tmp_path / "m.model")
    code = main(["embed", str(path), str(tmp_path / "*.png"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder: give a file name, e.g." in err and "features.npy" in err
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_folders_other_files_are_named_and_a_line_break_in_a_name_is_not_listed(tmp_path,
                                                                                  capsys):
    path = _model_file(tmp_path / "m.model")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png", "new\nline.png"):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("a note")
    assert main(["predict", str(path), str(folder), "--format", "json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 3
    assert "skipped 1 file(s)" in out.err and "notes.txt" in out.err  # not skipped silently
    assert main(["predict", str(path), str(folder)]) == 0  # the table: one line a file
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and any(repr(str(folder / "new\nline.png")) in x for x in lines)
    code = main(["embed", str(path), str(folder), "--out", str(tmp_path / "f.npy")])
    err = capsys.readouterr().err
    listing = (tmp_path / "f.files.txt").read_text().splitlines()
    assert code == 1 and listing == [str(folder / "a.png"), str(folder / "b.png")]
    assert np.load(tmp_path / "f.npy").shape[0] == 2  # a row for each listed file, no more
    assert "line break" in err and "'" + str(folder / "new\\nline.png") + "'" in err
    assert all("line break" in line or "new" not in line for line in err.splitlines())


def test_an_export_onto_a_full_disk_leaves_the_previous_file_and_no_part(tmp_path,
                                                                       monkeypatch):
    pytest.importorskip("onnxruntime")
    import errno

    _model_file(tmp_path / "m.model")
    model = Model.load(tmp_path / "m.model")
    samples = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier export")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.os, "fsync", full)
        with pytest.raises(OSError, match="No space"):
            model.export_onnx(out, samples)
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model", "m.onnx"]
    result = model.export_onnx(out, samples)  # with room, the whole file replaces it
    assert result["same_classes"] and out.read_bytes()[:2] != b"an"
