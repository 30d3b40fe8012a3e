import hashlib

import numpy as np

from fewlabels.data import DataFile, DatasetSpec, derived_source, fetch, idx_bytes, parse_idx
from fewlabels.mnist_hard import CANVAS, MIN_CONTRAST, make_mnist_hard


def test_generation_is_byte_identical_for_the_same_seed(mnist):
    digits = mnist.train_images[:300].numpy()
    a = make_mnist_hard(digits, stream=0, seed=0, chunk=128)
    b = make_mnist_hard(digits, stream=0, seed=0, chunk=300)  # chunking changes nothing
    assert a.shape == (300, 3, CANVAS, CANVAS) and a.dtype == np.uint8
    assert hashlib.sha256(a.tobytes()).digest() == hashlib.sha256(b.tobytes()).digest()
    assert not np.array_equal(a, make_mnist_hard(digits, stream=0, seed=1))
    assert not np.array_equal(a, make_mnist_hard(digits, stream=1, seed=0))


def test_digits_stay_legible_coloured_and_moved(mnist):
    digits = mnist.train_images[:200].numpy()
    hard = make_mnist_hard(digits, stream=0).astype(float)
    luma = np.tensordot(hard, [0.299, 0.587, 0.114], axes=([1], [0]))  # (N, H, W)
    corners = luma[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # background, never ink
    spread = np.abs(luma - corners.mean(1)[:, None, None]).max((1, 2))
    assert (spread >= 0.8 * MIN_CONTRAST).all()  # the digit stands out from its background
    colours = hard[:, :, 0, 0]
    assert len(np.unique(colours, axis=0)) > 150  # backgrounds vary from image to image
    ink = np.abs(luma - corners.mean(1)[:, None, None]) > MIN_CONTRAST / 2
    rows = np.array([np.nonzero(m.any(1))[0].mean() for m in ink])
    assert rows.std() > 1.0  # digits sit at different heights


def test_derived_source_writes_verifiable_idx_files(mnist, tmp_path):
    def make(images, stream):
        return images[:10, :, :4, :4] + stream

    made = {k: make(v.numpy(), s) for k, v, s in (("train", mnist.train_images, 0),
                                                  ("test", mnist.test_images, 1))}
    labels = {"train": mnist.train_labels.numpy().astype(np.uint8),
              "test": mnist.test_labels.numpy().astype(np.uint8)}

    def h(a):
        return hashlib.sha256(idx_bytes(a)).hexdigest()

    files = {"train-images": DataFile("tr-img", h(made["train"])),
             "train-labels": DataFile("tr-lab", h(labels["train"])),
             "test-images": DataFile("te-img", h(made["test"])),
             "test-labels": DataFile("te-lab", h(labels["test"]))}
    spec = DatasetSpec("tiny-derived", files, tuple("0123456789"),
                       (("generated", derived_source("mnist", make)),))
    from fewlabels import data

    data.DATASETS["tiny-derived"] = spec
    try:
        folder = fetch("tiny-derived", cache=tmp_path)
    finally:
        del data.DATASETS["tiny-derived"]
    np.testing.assert_array_equal(parse_idx((folder / "te-img").read_bytes()), made["test"])
