"""Fuzzing the parsers with arbitrary bytes and strings: only our own clean errors (one
line a user can act on), never a crash, a traceback or a hang."""

import argparse
import contextlib
import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as nps

from fewlabels import checkpoint
from fewlabels.cli import build_parser, compare_config
from fewlabels.config import load_preset, parse_set
from fewlabels.data import parse_idx, parse_label_budget
from fewlabels.errors import DataError, UsageError

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.binary(max_size=64))
def test_idx_parser(data):
    try:
        parse_idx(data)
    except DataError as e:
        assert "\n" not in str(e)


@FAST
@given(st.binary(max_size=64))
def test_idx_parser_with_a_valid_header_prefix(tail):
    try:
        parse_idx(b"\x00\x00\x08\x02" + tail)
    except DataError:
        pass


@FAST
@given(data=st.binary(max_size=512))
def test_checkpoint_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ckpt") / "x.model"
    path.write_bytes(data)
    with pytest.raises(UsageError):
        checkpoint.load(path, "model")


@FAST
@given(st.text(max_size=20) | st.integers() | st.floats(allow_nan=True))
def test_label_budget_parser(value):
    try:
        count = parse_label_budget(value, 60000)
    except UsageError:
        return
    assert isinstance(count, int) and 1 <= count <= 60000


@FAST
@given(st.lists(st.text(max_size=30), max_size=3))
def test_set_parser_and_every_setting(items):
    try:
        load_preset("default", parse_set(items))
    except UsageError:
        pass


OPTIONS = ["--preset", "--dataset", "--labels", "--seeds", "--pretrain-seeds", "--arms",
           "--label-sampling", "--device", "--precision", "--epochs", "--pretrain-epochs",
           "--latent-size", "--set", "--tune"]


@FAST
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), st.text(max_size=12)), max_size=3))
def test_compare_options(pairs):
    argv = ["compare"] + [x for option, value in pairs for x in (option, value)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse's own one-line usage error
        assert e.code == 2
        return
    assert isinstance(args, argparse.Namespace)
    try:
        compare_config(args)
    except UsageError as e:
        assert str(e)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=8)
META_KEYS = ("classes", "image_shape", "channels", "image_size", "arm", "encoder",
             "encoder_options")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(META_KEYS), value=JSON)
def test_model_metadata(tmp_path_factory, key, value):
    """A model file whose metadata says anything (written with a valid checksum, as a
    tampering user would): it loads and predicts, or it is refused with a UsageError."""
    from fewlabels.encoders import ClassifierNet, build_encoder
    from fewlabels.predictor import KIND, Model, model_meta

    torch.manual_seed(0)
    net = ClassifierNet(build_encoder("conv", (1, 28, 28), width=2), 2)
    meta = {**model_meta(["a", "b"], (1, 28, 28), "probe", "conv", {"width": 2}), key: value}
    path = checkpoint.save(tmp_path_factory.mktemp("meta") / "m.model", net.state_dict(),
                           KIND, meta)
    try:
        model = Model.load(path)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    p = model.predict(torch.zeros((1, *model.image_shape), dtype=torch.uint8)).probabilities
    assert p.shape == (1, len(model.classes)) and np.isfinite(p).all()


ARRAYS = st.one_of(
    nps.arrays(st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_]),
               nps.array_shapes(min_dims=1, max_dims=5, max_side=6)),
    nps.arrays(np.float32, st.tuples(st.integers(0, 6), st.just(6), st.just(6)),
               elements=st.floats(-2, 300, width=32) | st.just(np.nan)))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=ARRAYS, y=nps.arrays(np.int64, nps.array_shapes(max_dims=2, max_side=8),
                              elements=st.integers(-3, 12)),
       extra=st.dictionaries(st.sampled_from(["x_test", "y_test", "classes"]), ARRAYS,
                             max_size=2))
def test_npz_reader(tmp_path_factory, x, y, extra):
    """Any arrays under the names the reader looks for: a dataset, or one clear error."""
    from fewlabels.userdata import load_user_data

    path = tmp_path_factory.mktemp("npz") / "data.npz"
    np.savez(path, x_train=x, y_train=y, **extra)
    try:
        ds, _ = load_user_data(path, progress=False, warn=lambda message: None)
    except (DataError, UsageError) as e:
        assert "\n" not in str(e)
        return
    assert len(ds.train_images) == len(ds.train_labels) and ds.train_images.dtype == torch.uint8


@FAST
@given(st.text(max_size=40) | st.text(alphabet="x/.", min_size=200, max_size=320))
def test_output_paths(tmp_path_factory, name):
    """Any name given as --out: a path to write later, or a UsageError; nothing created."""
    from fewlabels.outputs import check_output_file

    folder = tmp_path_factory.mktemp("out")
    before = sorted(folder.iterdir())
    with contextlib.chdir(folder):
        try:
            check_output_file(name, "--out")
        except UsageError as e:
            assert "\n" not in str(e).replace(repr(name), "")
    assert sorted(folder.iterdir()) == before


def _png(side: int, mode: str, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "16-bit": 1}[mode]
    shape = (side, side + seed % 3) + ((channels,) if channels > 1 else ())
    if mode == "16-bit":
        image = Image.fromarray(rng.integers(0, 65535, shape).astype(np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, shape).astype(np.uint8), mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


FILE = st.tuples(
    st.sampled_from(["labeled/a", "labeled/b", "labeled/.hidden", "labeled", "unlabeled",
                     "unlabeled/deep/er", "test/a", "test/c", "test/.x", "", "other"]),
    st.text(alphabet="ab .-_é\n", min_size=1, max_size=6),
    st.sampled_from([".png", ".PNG", ".jpg", ".txt", ".gif", ""]),
    st.one_of(st.binary(max_size=40).map(lambda b: ("bytes", b)),
              st.tuples(st.integers(1, 12), st.sampled_from(["L", "RGB", "RGBA", "16-bit"]),
                        st.integers(0, 5), st.booleans()).map(lambda t: ("png", t))))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(FILE, max_size=12), size=st.none() | st.integers(4, 16))
@example(files=[("labeled", "\n", ".png", ("bytes", b""))], size=None)  # found by it
@example(files=[("labeled/a", "\n", ".png", ("bytes", b""))], size=None)
def test_image_folder_reader(tmp_path_factory, files, size):
    """Any folder of files under the names the reader looks for (real PNGs of any mode and
    size, truncated ones, random bytes, odd names, hidden folders): a dataset whose images,
    labels and classes agree, or one clear error; and the same dataset read a second time
    (from the cache)."""
    from fewlabels.userdata import UNLABELED, load_user_data

    root = tmp_path_factory.mktemp("folder")
    for place, stem, ext, (kind, content) in files:
        folder = root / place
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "png":
            side, mode, seed, truncate = content
            data = _png(side, mode, seed)
            content = data[: len(data) // 2] if truncate else data
        target = folder / (stem + ext)
        if not target.is_dir():
            target.write_bytes(content)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        try:
            ds, _ = load_user_data(root, size, progress=False, warn=lambda message: None)
        except (DataError, UsageError) as e:
            assert "\n" not in str(e)
            return
        again, _ = load_user_data(root, size, progress=False, warn=lambda message: None)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.ndim == 4
    assert len(ds.train_images) == len(ds.train_labels)
    labels = ds.train_labels[ds.train_labels != UNLABELED]
    assert len(labels) > 0 and 0 <= labels.min() and labels.max() < ds.num_classes
    assert not any(c.startswith(".") for c in ds.classes)
    if size is not None:
        assert ds.image_shape[1:] == (size, size)
    assert torch.equal(again.train_images, ds.train_images)
    assert torch.equal(again.train_labels, ds.train_labels)
